"""``pip-omni uninstall NAME==VERSION`` removes a bubble; plain ``NAME`` goes to pip.

Removing a bubble removes its manifest (one unlink, atomic) and its script
directory; its dists and objects stay until ``pip-omni gc``, so a process that
still imports from them is not broken underneath.
"""

from __future__ import annotations

import os
import shutil

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store, WriteLock, make_tmpdir, normalize

from .. import bubbles, environment, interpreters

__all__ = ["register", "remove_bubble"]


def register(sub) -> None:
    p = sub.add_parser("uninstall", help="remove a bubble (NAME==VERSION); plain NAME is passed to pip")
    p.add_argument("requirements", nargs="+", metavar="NAME[==VERSION]")
    p.add_argument("--python", metavar="PATH", help="interpreter whose bubble to remove (default: this one)")
    p.add_argument("--all-interpreters", action="store_true", help="remove the bubble for every interpreter")
    p.add_argument("-y", "--yes", action="store_true", help="(accepted for pip compatibility)")
    p.add_argument("-q", "--quiet", action="count", default=0)
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.set_defaults(func=run)


def remove_bubble(store: Store, name: str, version: str, key: str | None) -> list[str]:
    """Remove the bubble(s) of ``name==version``; returns the interpreter keys removed."""
    removed = []
    with WriteLock(store):
        for n, v, k, path in list(store.iter_bubbles(key)):
            if n != name or v != version:
                continue
            trash = make_tmpdir(store, "trash-")
            binpath = store.bubble_bin(n, v, k)
            os.rename(path, os.path.join(trash, "manifest.json"))  # the bubble is gone here
            if os.path.isdir(binpath):
                os.rename(binpath, os.path.join(trash, "bin"))
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(k)
        for d in (os.path.join(store.bubbles, name, version), os.path.join(store.bubbles, name)):
            try:
                os.rmdir(d)
            except OSError:
                pass
    return removed


def run(args) -> int:
    store = Store()
    plain = []
    for text in args.requirements:
        req = bubbles.parse_requirement(text)
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if not pinned:
            plain.append(text)
            continue
        name, version = normalize(req.name), pinned[0]
        interpreter = interpreters.resolve_python(store, args.python)
        removed = remove_bubble(store, name, version, None if args.all_interpreters else interpreter.key)
        if removed:
            if not args.quiet:
                print(f"Removed bubble {name} {version} ({', '.join(removed)}); "
                      "its files stay until `pip-omni gc`")
            continue
        main = environment.installed(interpreter, store).get(name)
        if main == version:
            raise OmnipkgError(
                f"{text!r} is installed in the main environment, not a bubble",
                f"to remove it from main, run `pip-omni uninstall {name}` (handed to pip)",
            )
        raise OmnipkgError(f"no bubble {text!r} for {interpreter.key}",
                           f"see what exists with `pip-omni show {name}`")
    if plain:
        from ..cli import pip_passthrough

        extra = ["-y"] if args.yes else []
        return pip_passthrough(["uninstall", *extra, *plain])
    return 0
