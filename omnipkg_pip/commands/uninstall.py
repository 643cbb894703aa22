"""``pip-omni uninstall``: as pip for the environment, and the bubbles.

- ``NAME``: pip uninstalls the environment's copy; its bubbles are removed too with
  ``--bubbles``, or when the environment does not have NAME (asking first, or ``-y``).
- ``NAME==1.0``, ``'NAME==2.*'``, ``'NAME<3'``: the bubbles whose version matches;
  the environment is never touched by a version.

Removing a bubble removes its manifest (one unlink, atomic) and its script
directory; its dists and objects stay until ``pip-omni gc``, so a process that
still imports from them is not broken underneath.
"""

from __future__ import annotations

import os
import shutil
import sys

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store, WriteLock, make_tmpdir, normalize

from .. import environment, pip
from ..pythons import interpreters
from ..text import plural
from ..writers import bubbles

__all__ = ["register", "remove_bubble"]


def register(sub) -> None:
    p = sub.add_parser("uninstall", help="remove from the environment (as pip) and bubbles",
                       description=__doc__.split("\n\n")[0],
                       epilog="Other options are pip uninstall's and go to pip with the plain names.")
    p.add_argument("requirements", nargs="*", metavar="NAME[SPEC]")
    p.add_argument("-r", "--requirement", action="append", default=[], metavar="FILE",
                   help="as pip's (for the environment; handed to pip)")
    p.add_argument("--bubbles", action="store_true", help="a plain NAME: remove its bubbles too")
    p.add_argument("--python", metavar="PATH", help="interpreter (default: the active environment)")
    p.add_argument("--all-interpreters", action="store_true", help="the bubbles of every interpreter")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
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


def _confirm(name: str, versions: list[str], args) -> bool:
    if args.yes:
        return True
    what = f"{plural(len(versions), 'bubble')} of {name} ({', '.join(versions)})"
    if not sys.stdin.isatty():
        raise OmnipkgError(f"would remove {what}; not asking without a terminal", "pass -y to remove them")
    return input(f"Remove {what}? [y/N] ").strip().lower() in ("y", "yes")


def _remove(store: Store, name: str, versions: list[str], key: str | None, args) -> None:
    for version in versions:
        removed = remove_bubble(store, name, version, key)
        if removed and not args.quiet:
            print(f"Removed bubble {name} {version} ({', '.join(removed)}); its files stay until `pip-omni gc`")


def run(args) -> int:
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    key = None if args.all_interpreters else interpreter.key
    main = environment.installed(interpreter, store)
    to_pip: list[str] = []
    notes: list[str] = []
    for text in args.requirements:
        req = bubbles.parse_requirement(text)
        name = normalize(req.name)
        versions = sorted({v for n, v, _k, _p in store.iter_bubbles(key)
                           if n == name and req.specifier.contains(v, prereleases=True)})
        if len(req.specifier):
            if versions:
                _remove(store, name, versions, key, args)
                continue
            if name in main and req.specifier.contains(main[name], prereleases=True):
                raise OmnipkgError(
                    f"{text!r} is installed in the main environment, not a bubble",
                    f"to remove it from main, run `pip-omni uninstall {name}` (as pip)",
                )
            raise OmnipkgError(f"no bubble {text!r} for {interpreter.key}",
                               f"see what exists with `pip-omni show {name}`")
        if name in main or not versions:
            to_pip.append(text)  # pip says "not installed" itself when nothing has it
        if versions and (args.bubbles or name not in main):
            if _confirm(name, versions, args):
                _remove(store, name, versions, key, args)
        elif versions:
            notes.append(f"kept {plural(len(versions), 'bubble')} of {name} ({', '.join(versions)}); "
                         f"`pip-omni uninstall --bubbles {name}` removes them too")
    status = 0
    if to_pip or args.requirement:
        files = [t for f in args.requirement for t in ("-r", f)]
        status = pip.passthrough(["uninstall", *(["-y"] if args.yes else []), *["-q"] * args.quiet, *["-v"] * args.verbose, *args.pip_args, *to_pip, *files],
                                 interpreter.executable)
    for note in notes:
        print(note, file=sys.stderr)
    return status
