"""``pip-omni doctor [--repair] [--json] [--quick]``: check the store, and heal it on request.

Exit status 0 when nothing is wrong (or, with ``--repair``, nothing is left wrong), 1
otherwise. The checks, the repairs and the ``--json`` shape are described in
:mod:`omnipkg_pip.integrity.doctor` and :mod:`omnipkg_pip.integrity.healing`.
"""

from __future__ import annotations

import json
import sys

from omnipkg_hook.store import Store

from ..integrity import checkup

__all__ = ["register", "run"]


def register(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="check every object, dist and bubble of the store (and the main environment)",
        description="Check the store: rehash every object, compare every dist with its manifest, "
        "check bubbles, staging and the main environment. Every problem is reported once.",
    )
    p.add_argument("--repair", action="store_true",
                   help="rebuild damaged dists from objects, make bad or missing objects again "
                   "(from good copies or the wheel fetched again); nothing is deleted, it is set aside "
                   "under <store>/quarantine/")
    p.add_argument("--quick", action="store_true", help="check by stat only (sizes, links, times), no rehashing")
    p.add_argument("--json", action="store_true", help="print the result as JSON (shape in the README)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="also list where each dist came from (its wheel's file name and sha256)")
    p.set_defaults(func=run)


def _printer():
    first = [True]

    def log(line: str) -> None:  # each repair as it is done: a killed repair still said what it did
        if first[0]:
            print("repairing:", flush=True)
            first[0] = False
        print(f"  {line}", flush=True)

    return log


def run(args) -> int:
    store = Store()
    result = checkup.run(store, repair=args.repair, full=not args.quick, log=None if args.json else _printer())
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(checkup.format_result(result))
        if args.verbose:
            print(checkup.format_sources(result))
        for note in result["notes"]:
            print(f"note: {note}")
    return 0 if result["clean"] else 1
