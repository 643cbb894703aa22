"""``pip-omni list`` and ``pip-omni show NAME...``: what main has and what the store holds.

Both take pip's options: the environment's part then comes from ``pip list`` /
``pip show`` themselves, and the bubbles are added, marked ``bubble``. ``-o``, ``-u``
and ``-e`` ask about the environment only (a bubble is neither upgradable in place nor
editable), so bubbles are left out there, saying so.

JSON shapes (stable; documented in the README):

``list --json``::

    {"interpreter": {"key": str, "version": str, "executable": str},
     "store": str,
     "main": [{"name": str, "version": str, ...}],       # pip's fields too, with pip options
     "bubbles": [{"name": str, "version": str, "interpreter": str, "requirement": str,
                  "dists": int, "created": str}]}

``list --format=json``: pip's list, then one entry per bubble with ``"bubble": true``
(and ``interpreter``, ``requirement``, ``dists``, ``created``).

``show NAME --json`` (a list of these for several names)::

    {"name": str, "store": str,
     "main": {"version": str, "location": str} | null,
     "bubbles": [{"version": str, "interpreter": str, "requirement": str, "created": str,
                  "closure": [{"name": str, "version": str, "path": str}]}],
     "stored_dists": [{"version": str, "tag": str, "path": str}]}
"""

from __future__ import annotations

import json
import os
import sys

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store, main_versions, normalize, read_manifest

from .. import environment
from ..pythons import interpreters
from ..text import plural

__all__ = ["register", "bubble_rows"]

_MAIN_ONLY = {"-o": "--outdated", "--outdated": "--outdated", "-u": "--uptodate", "--uptodate": "--uptodate",
              "-e": "--editable", "--editable": "--editable"}


def register(sub) -> None:
    p = sub.add_parser("list", help="main environment and bubbles, clearly marked",
                       epilog="Every other option is pip list's (-o, -u, -e, --not-required, --exclude, -l, ...): "
                       "the environment's part then comes from pip list.")
    p.add_argument("--format", choices=("columns", "freeze", "json"), default="columns",
                   help="as pip's; bubbles are added, marked (freeze: after a comment line)")
    p.add_argument("--bubbles", action="store_true", help="only the bubbles")
    p.add_argument("--json", action="store_true", help="pip-omni's machine-readable output (shape in README)")
    p.add_argument("--python", metavar="PATH", help="interpreter (default: the active environment)")
    p.add_argument("--all-interpreters", action="store_true", help="bubbles of every interpreter")
    p.set_defaults(func=run_list)
    s = sub.add_parser("show", help="every version of a distribution: main, bubbles, stored dists",
                       epilog="Other options are pip show's; with them the environment's part comes from pip show.")
    s.add_argument("names", nargs="+", metavar="NAME")
    s.add_argument("-f", "--files", action="store_true", help="the files of each (as pip show -f)")
    s.add_argument("--json", action="store_true", help="machine-readable output (shape in README)")
    s.add_argument("--python", metavar="PATH", help="interpreter (default: the active environment)")
    s.set_defaults(func=run_show)


def _vkey(v: str):
    # imported only where there is something to sort
    from omnipkg_hook._pep440 import InvalidVersion, Version

    try:
        return (0, Version(v))
    except InvalidVersion:
        return (1, v)


def bubble_rows(store: Store, key: str | None) -> list[dict]:
    """The bubbles of interpreter ``key`` (every one's when None), sorted by name and version."""
    out = []
    for name, version, k, path in store.iter_bubbles(key):
        m = read_manifest(path)
        out.append({
            "name": name, "version": version, "interpreter": k,
            "requirement": m["requirement"], "dists": len(m["dists"]), "created": m["created"],
        })
    out.sort(key=lambda b: (b["name"], _vkey(b["version"]), b["interpreter"]))
    return out


def _main_rows(interpreter, store: Store, args) -> list[dict]:
    if args.bubbles:
        return []
    if not args.pip_args:
        return [{"name": n, "version": v} for n, v in sorted(environment.installed(interpreter, store).items())]
    from .. import pip

    out = pip.capture(interpreter.executable, ["list", "--format=json", *args.pip_args], what="list the environment")
    return json.loads(out)


def run_list(args) -> int:
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    main = _main_rows(interpreter, store, args)
    main_only = sorted({_MAIN_ONLY[t.split("=")[0]] for t in args.pip_args if t.split("=")[0] in _MAIN_ONLY})
    bubbles = [] if main_only else bubble_rows(store, None if args.all_interpreters else interpreter.key)
    if args.json:
        json.dump({
            "interpreter": {"key": interpreter.key, "version": interpreter.version,
                            "executable": interpreter.executable},
            "store": store.root,
            "main": main,
            "bubbles": bubbles,
        }, sys.stdout, indent=1)
        print()
        return 0
    if args.format == "json":
        json.dump(main + [{**b, "bubble": True} for b in bubbles], sys.stdout)
        print()
        return 0
    if args.format == "freeze":
        for m in main:
            print(f"{m['name']}=={m['version']}")
        if bubbles:
            print("# pip-omni bubbles (make them again with `pip-omni install --bubble -r FILE`):")
        for b in bubbles:
            print(f"{b['name']}=={b['version']}")
        return 0
    extra = [k for k in ("latest_version", "latest_filetype", "editable_project_location") if any(k in m for m in main)]
    rows = [(m["name"], m["version"], "main", *(str(m.get(k, "")) for k in extra)) for m in main]
    rows += [(b["name"], b["version"], f"bubble ({plural(b['dists'], 'dist')})"
              + (f" [{b['interpreter']}]" if args.all_interpreters else ""), *([""] * len(extra))) for b in bubbles]
    rows.sort(key=lambda r: (normalize(r[0]), r[2] != "main") + ((_vkey(r[1]),) if r[2] != "main" else ()))
    titles = {"latest_version": "Latest", "latest_filetype": "Type", "editable_project_location": "Editable project location"}
    header = ("Package", "Version", "Where", *(titles[k] for k in extra))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"Python {interpreter.version} ({interpreter.executable}); store {store.root}")
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if main_only:
        print(f"(bubbles are not shown with {', '.join(main_only)}: it asks about the environment only)")
    return 0


def _show_one(store: Store, interpreter, name: str) -> dict | None:
    found = main_versions(environment.sys_path(interpreter), exclude=store.root).get(name)
    main = {"version": found[0], "location": found[1]} if found else None
    bubbles = []
    for _n, version, key, path in store.iter_bubbles():
        if _n != name:
            continue
        m = read_manifest(path)
        bubbles.append({
            "version": version, "interpreter": key, "requirement": m["requirement"], "created": m["created"],
            "closure": [{"name": d, "version": info["version"], "path": info["path"]}
                        for d, info in sorted(m["dists"].items())],
        })
    dists = []
    base = os.path.join(store.dists, name)
    for version in sorted(_ls(base), key=_vkey):
        for tag in sorted(_ls(os.path.join(base, version))):
            dists.append({"version": version, "tag": tag, "path": store.dist_relpath(name, version, tag)})
    if not (main or bubbles or dists):
        return None
    return {"name": name, "store": store.root, "main": main,
            "bubbles": sorted(bubbles, key=lambda b: _vkey(b["version"])), "stored_dists": dists}


def run_show(args) -> int:
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    shown, missing = [], []
    for text in args.names:
        one = _show_one(store, interpreter, normalize(text))
        (shown.append(one) if one else missing.append(text))
    if args.json:
        json.dump(shown[0] if len(args.names) == 1 and shown else shown, sys.stdout, indent=1)
        print()
    else:
        for i, one in enumerate(shown):
            if i:
                print("---")
            _print_show(store, interpreter, one, args)
    if missing:
        raise OmnipkgError(
            f"{', '.join(repr(m) for m in missing)} {'is' if len(missing) == 1 else 'are'} neither installed in main "
            f"nor in the store {store.root!r}", f"install with `pip-omni install {missing[0]}`")
    return 0


def _print_show(store: Store, interpreter, one: dict, args) -> None:
    main = one["main"]
    if main and (args.files or args.pip_args):
        from .. import pip

        opts = ["-f"] * args.files + args.pip_args
        sys.stdout.write(pip.capture(interpreter.executable, ["show", *opts, one["name"]], what=f"show {one['name']}"))
    else:
        print(one["name"])
        print(f"  main:    {main['version']} ({main['location']})" if main else "  main:    not installed")
    for b in one["bubbles"]:
        print(f"  bubble:  {b['version']} for {b['interpreter']} ({b['requirement']}, {b['created']})")
        for d in b["closure"]:
            print(f"             {d['name']} {d['version']}  {d['path']}")
    if one["stored_dists"]:
        print("  stored:  " + ", ".join(f"{d['version']} ({d['tag']})" for d in one["stored_dists"]))
    if args.files:
        for d in one["stored_dists"]:
            print(f"  files of {one['name']} {d['version']} ({d['path']}):")
            root = os.path.join(store.root, d["path"])
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(x for x in dirnames if x != "__pycache__")
                for f in sorted(filenames):
                    print("    " + os.path.relpath(os.path.join(dirpath, f), root))


def _ls(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
