"""``pip-omni gc``: remove what no bubble references (:mod:`omnipkg_pip.writers.collect`)."""

from __future__ import annotations

import json
import os
import sys

from omnipkg_hook.store import Store

from ..text import megabytes, plural
from ..writers.collect import collect

__all__ = ["register", "run_gc"]


def register(sub) -> None:
    p = sub.add_parser("gc", help="remove dists and objects no bubble references")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_gc)


def run_gc(args) -> int:
    store = Store()
    g = collect(store, dry_run=args.dry_run)
    if args.json:
        json.dump({k: (v if k == "bytes" else len(v)) for k, v in g.items()} | {"dry_run": args.dry_run},
                  sys.stdout, indent=1)
        print()
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {plural(len(g['dists']), 'dist')}, {plural(len(g['objects']), 'object')} ({megabytes(g['bytes'])}), "
          f"{plural(len(g['bins']), 'script dir')}, {plural(len(g['tmp']), 'staging leftover')}")
    for d in g["in_use"]:
        print(f"kept {os.path.relpath(d, store.root)}: in use by a running process (no bubble references it)")
    return 0
