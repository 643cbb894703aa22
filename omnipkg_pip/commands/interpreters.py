"""``pip-omni python adopt|list|forget`` and ``pip-omni swap python [VERSION]``.

``python list --json`` shape::

    {"store": str, "default": str | null, "shims": str,
     "main": {"python": str, "why": str},      # the environment commands act on here, and why
     "interpreters": [{"version": str, "path": str, "key": str, "source": str,
                       "default": bool, "bubbles": int, "status": "ok" | "missing"}]}
"""

from __future__ import annotations

import json
import os
import sys
import time

from omnipkg_hook.errors import InterpreterError
from omnipkg_hook.store import Store

from ..pythons import interpreters

__all__ = ["register"]


def register(sub) -> None:
    p = sub.add_parser("python", help="adopt, list and forget interpreters")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = acts.add_parser("adopt", help="find an installed interpreter (pyenv, PATH, a path) and record it")
    a.add_argument("spec", metavar="VERSION|PATH")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=run_adopt)
    ls = acts.add_parser("list", help="adopted interpreters")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    f = acts.add_parser("forget", help="stop using an adopted interpreter (its bubbles stay)")
    f.add_argument("spec", metavar="VERSION|PATH")
    f.set_defaults(func=run_forget)
    s = sub.add_parser("swap", help="choose the default interpreter (and the store's bin/ shims)",
                       description="The default is used where no environment is active or named: "
                       "--python, VIRTUAL_ENV and a virtual environment running pip-omni come first.")
    s.add_argument("what", choices=("python",))
    s.add_argument("spec", nargs="?", metavar="VERSION|PATH")
    s.add_argument("--unset", action="store_true", help="clear the default and remove the shims")
    s.set_defaults(func=run_swap)


def run_adopt(args) -> int:
    t0 = time.perf_counter()
    record = interpreters.adopt(Store(), args.spec)
    if args.json:
        print(json.dumps(record | {"seconds": round(time.perf_counter() - t0, 3)}, indent=1))
    else:
        print(f"adopted Python {record['version']} at {record['path']} ({record['source']}, "
              f"{time.perf_counter() - t0:.2f} s)")
    return 0


def _rows(store: Store) -> list[dict]:
    data = interpreters.registry(store)
    counts = interpreters.bubble_counts(store)
    rows = []
    for r in data["interpreters"]:
        rows.append({**r, "default": r["path"] == data.get("default"), "bubbles": counts.get(r["key"], 0),
                     "status": "ok" if os.access(r["path"], os.X_OK) else "missing"})
    return rows


def run_list(args) -> int:
    store = Store()
    rows = _rows(store)
    data = interpreters.registry(store)
    python, why = interpreters.main_python(store)
    if args.json:
        json.dump({"store": store.root, "default": data.get("default"), "shims": store.bin,
                   "main": {"python": python, "why": why}, "interpreters": rows}, sys.stdout, indent=1)
        print()
        return 0
    if not rows:
        print(f"no interpreters adopted; pip-omni acts on {why}:")
        print(f"  {python}")
        print("adopt one with `pip-omni python adopt 3.12`")
        return 0
    print("   Version   Bubbles  Status   Path")
    for r in rows:
        mark = "*" if r["default"] else " "
        print(f" {mark} {r['version']:<9} {r['bubbles']:>7}  {r['status']:<7}  {r['path']}")
    print(f"pip-omni acts here on {why}: {python}")
    return 0


def run_forget(args) -> int:
    for r in interpreters.forget(Store(), args.spec):
        print(f"forgot Python {r['version']} at {r['path']} (its bubbles stay in the store)")
    return 0


def run_swap(args) -> int:
    store = Store()
    spec = args.spec
    if args.unset:
        if spec is not None:
            raise InterpreterError(f"`swap python --unset` takes no version, not {spec!r}",
                                   "run `pip-omni swap python --unset` alone")
        old = interpreters.unset_default(store)
        print(f"no default interpreter (was {old}); shims removed from {store.bin}" if old
              else "there was no default interpreter; nothing changed")
        return 0
    if spec is None:
        rows = _rows(store)
        if not rows:
            raise InterpreterError("no interpreters adopted", "adopt one first: `pip-omni python adopt 3.12`")
        for i, r in enumerate(rows, 1):
            print(f"  {i}) Python {r['version']}  {r['path']}{'  (default)' if r['default'] else ''}")
        if not sys.stdin.isatty():
            print("pip-omni: choose one: `pip-omni swap python VERSION`", file=sys.stderr)
            return 2
        answer = input("number: ").strip()
        if not answer.isdigit() or not 1 <= int(answer) <= len(rows):
            print(f"pip-omni: {answer!r} is not one of 1-{len(rows)}; nothing changed", file=sys.stderr)
            return 2
        spec = rows[int(answer) - 1]["path"]
    data = interpreters.registry(store)
    hits = interpreters._match(data, spec) if os.sep in spec else [
        r for r in data["interpreters"] if r["version"] == spec or r["version"].startswith(spec + ".")
    ]
    record = sorted(hits, key=lambda r: interpreters._vtuple(r["version"]))[-1] if hits else interpreters.adopt(store, spec)
    if not os.access(record["path"], os.X_OK):
        raise InterpreterError(f"the adopted Python {record['version']} at {record['path']!r} no longer exists",
                               f"run `pip-omni python forget {record['version']}`")
    interpreters.set_default(store, record)
    print(f"default interpreter: Python {record['version']} ({record['path']})")
    print(f"shims: {store.bin}/python, python3, pip. To use them, add to your shell profile:")
    print(f'  export PATH="{store.bin}:$PATH"')
    active = interpreters.active_environment()
    if active is not None:
        print(f"note: here {active[1]} is active ({active[0]}), and pip-omni commands act on it; "
              "the default applies where no environment is active or named", file=sys.stderr)
    return 0
