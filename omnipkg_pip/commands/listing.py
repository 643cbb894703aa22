"""``pip-omni list`` and ``pip-omni show NAME``: what main has and what the store holds.

JSON shapes (stable; documented in the README):

``list --json``::

    {"interpreter": {"key": str, "version": str, "executable": str},
     "store": str,
     "main": [{"name": str, "version": str}],
     "bubbles": [{"name": str, "version": str, "requirement": str,
                  "dists": int, "created": str}]}

``show NAME --json``::

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

from packaging.version import InvalidVersion, Version

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store, main_versions, normalize, read_manifest

from .. import environment, interpreters

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("list", help="main environment and bubbles, clearly marked")
    p.add_argument("--json", action="store_true", help="machine-readable output (shape in README)")
    p.add_argument("--python", metavar="PATH", help="interpreter whose bubbles to list")
    p.add_argument("--all-interpreters", action="store_true", help="bubbles of every interpreter")
    p.set_defaults(func=run_list)
    s = sub.add_parser("show", help="every version of a distribution: main, bubbles, stored dists")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="machine-readable output (shape in README)")
    s.add_argument("--python", metavar="PATH", help="interpreter (default: this one)")
    s.set_defaults(func=run_show)


def _vkey(v: str):
    try:
        return (0, Version(v))
    except InvalidVersion:
        return (1, v)


def _bubbles(store: Store, key: str | None) -> list[dict]:
    out = []
    for name, version, k, path in store.iter_bubbles(key):
        m = read_manifest(path)
        out.append({
            "name": name, "version": version, "interpreter": k,
            "requirement": m["requirement"], "dists": len(m["dists"]), "created": m["created"],
        })
    out.sort(key=lambda b: (b["name"], _vkey(b["version"]), b["interpreter"]))
    return out


def run_list(args) -> int:
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    main = environment.installed(interpreter, store)
    bubbles = _bubbles(store, None if args.all_interpreters else interpreter.key)
    if args.json:
        json.dump({
            "interpreter": {"key": interpreter.key, "version": interpreter.version,
                            "executable": interpreter.executable},
            "store": store.root,
            "main": [{"name": n, "version": v} for n, v in sorted(main.items())],
            "bubbles": bubbles,
        }, sys.stdout, indent=1)
        print()
        return 0
    rows = [(n, v, "main") for n, v in sorted(main.items())]
    rows += [(b["name"], b["version"], f"bubble ({b['dists']} dists)"
              + (f" [{b['interpreter']}]" if args.all_interpreters else "")) for b in bubbles]
    rows.sort(key=lambda r: (r[0], r[2] != "main", _vkey(r[1])))
    header = ("Package", "Version", "Where")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(2)]
    print(f"Python {interpreter.version} ({interpreter.executable}); store {store.root}")
    for r in [header, ("-" * widths[0], "-" * widths[1], "-----"), *rows]:
        print(f"{r[0].ljust(widths[0])}  {r[1].ljust(widths[1])}  {r[2]}")
    return 0


def run_show(args) -> int:
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    name = normalize(args.name)
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
        raise OmnipkgError(f"{args.name!r} is neither installed in main nor in the store {store.root!r}",
                           f"install it with `pip-omni install {args.name}`")
    if args.json:
        json.dump({"name": name, "store": store.root, "main": main, "bubbles": bubbles,
                   "stored_dists": dists}, sys.stdout, indent=1)
        print()
        return 0
    print(f"{name}")
    print(f"  main:    {main['version']} ({main['location']})" if main else "  main:    not installed")
    for b in sorted(bubbles, key=lambda b: _vkey(b["version"])):
        print(f"  bubble:  {b['version']} for {b['interpreter']} ({b['requirement']}, {b['created']})")
        for d in b["closure"]:
            print(f"             {d['name']} {d['version']}  {d['path']}")
    if dists:
        print("  stored:  " + ", ".join(f"{d['version']} ({d['tag']})" for d in dists))
    return 0


def _ls(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
