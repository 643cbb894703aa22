"""``pip-omni why NAME``: which directory serves an import name (or distribution) under pins, and why.

The pins are ``--pin`` options, else ``OMNIPKG_PINS``; resolution is the hook's own
(:func:`omnipkg_hook.pins.plan_for`) for the interpreter running pip-omni, and changes
nothing: no repair, no import. It also lists every main-environment distribution whose
declared requirement the pins leave unmet (the start-up warning names only the first).
"""

from __future__ import annotations

import json
import os

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "why",
        help="which directory serves an import name under the pins, and why",
        description="Explain where NAME (an import name such as 'yaml', or a distribution such as "
        "'PyYAML') is imported from under the pins given with --pin, or else OMNIPKG_PINS.",
    )
    p.add_argument("name", metavar="NAME", help="import name or distribution name")
    p.add_argument("--pin", action="append", default=[], metavar="REQ", help="a pin (repeatable); default: OMNIPKG_PINS")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    p.add_argument("-v", "--verbose", action="count", default=0, help="tracebacks on errors")
    p.set_defaults(func=run)


def run(args) -> int:
    from omnipkg_hook.pins import plan_for
    from omnipkg_hook.store import Store, interpreter_key, main_versions, normalize

    requirements = args.pin or ([os.environ["OMNIPKG_PINS"]] if os.environ.get("OMNIPKG_PINS", "").strip() else [])
    plan = plan_for(*requirements) if requirements else None
    name, key = args.name, normalize(args.name)
    rows = plan.report() if plan is not None else []
    matches = [r for r in rows if r["distribution"] == key or name in r["import_names"]]
    routes = {n: d for n, d in (plan.routes.items() if plan is not None else ()) if n == name or
              any(n in r["import_names"] for r in matches)}  # fmt: skip
    store = plan.store if plan is not None else Store()
    main = main_versions(exclude=store.root).get(key)
    broken = [b for b in (plan.broken if plan is not None else ()) if key in (b["served"], b["distribution"])
              or any(b["served"] == r["distribution"] for r in matches)]  # fmt: skip
    answer = {
        "name": name,
        "pins": [p.text for p in plan.pins] if plan is not None else [],
        "store": store.root,
        "interpreter": interpreter_key(),
        "routes": routes,
        "distributions": matches,
        "main": {"version": main[0], "path": main[1]} if main else None,
        "breaks": broken,
    }
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(_text(answer))
    return 0


def _text(answer: dict) -> str:
    name = answer["name"]
    if not answer["pins"]:
        lines = [f"{name}: no pins (pass --pin REQ or set OMNIPKG_PINS): imports come from the main environment"]
    elif not answer["distributions"] and not answer["routes"]:
        lines = [f"{name}: not concerned by the pins {', '.join(answer['pins'])}: imports come from the main environment"]
    else:
        lines = []
        for import_name, dirs in sorted(answer["routes"].items()):
            lines.append(f"import {import_name}  <-  {os.pathsep.join(dirs)}")
        for row in answer["distributions"]:
            where = "the store" if row["source"] == "store" else "the main environment"
            lines.append(f"{row['distribution']} {row['version']} from {where}: {row['reason']}")
            if row["source"] != "store":
                lines.append(f"  in {row['path']}")
    for b in answer["breaks"]:
        lines.append(f"unmet in the main environment: {b['distribution']} {b['version']} requires "
                     f"{b['requires']}, served {b['served']} {b['served_version']} from the store")
    main = answer["main"]
    if main and not any(r["source"] == "main" for r in answer["distributions"]):
        lines.append(f"(the main environment has {name} {main['version']} in {main['path']})")
    return "\n".join(lines)
