"""One ``pip-omni doctor`` run: check the store (:mod:`.doctor`), repair on request
(:mod:`.healing`), and the result as ``--json`` and as text.

The two halves never import each other's driver: :mod:`.healing` uses the checker's data
(:class:`~.doctor.Report`, :class:`~.doctor.Scanner`); this module is the only one that calls both.
"""

from __future__ import annotations

import os
import time

from omnipkg_hook.store import Store, WriteLock

from ..text import plural
from . import healing, mainenv
from .doctor import Problem, Scanner, check, waiting_notes

__all__ = ["format_result", "format_sources", "run"]


def run(store: Store, *, repair: bool = False, full: bool = True, log=None) -> dict:
    """Check (and with ``repair`` heal) ``store`` under its writer lock; the ``--json`` result."""
    t0 = time.perf_counter()
    if not os.path.isdir(store.root):  # nothing installed yet: check main only, create nothing
        problems, notes = mainenv.check_main(store)
        counts = dict.fromkeys(("objects", "dists", "bubbles", "files", "hashed_bytes"), 0)
        found = [Problem("main-env", path, detail).to_dict() for path, detail in problems]
        return {"store": store.root, "mode": "full" if full else "quick", "clean": not found, "counts": counts,
                "problems": found, "actions": [], "remaining": found, "waiting": {}, "notes": notes + ["the store is empty"],
                "sources": [],
                "seconds": round(time.perf_counter() - t0, 4)}
    # Checking needs no lock where the store cannot be written (a read-only mount, another
    # user's store): optional=True goes on without it there. Repairing does need it.
    with WriteLock(store, on_wait=lambda: log and log("waiting for another pip-omni process to finish"),
                   optional=not repair):
        scanner = Scanner(store, full)
        report = check(store, full=full, scanner=scanner)
        actions, final = [], report
        if repair and (report.problems or report.leftovers or report.waiting):
            actions = healing.repair(store, report, scanner, log=log)
            final = check(store, full=full, scanner=scanner)
        remaining = final.problems
    sources = [{"path": rel, "wheel": d.manifest.get("wheel"), "wheel_sha256": d.manifest.get("wheel_sha256"),
                "origin": d.manifest.get("origin")} for rel, d in sorted(report.dists.items()) if d.manifest]
    return {
        "store": store.root,
        "mode": report.mode,
        "sources": sources,
        "clean": not remaining,
        "counts": report.counts,
        "problems": [p.to_dict() for p in report.problems],
        "leftovers": [p.to_dict() for p in report.leftovers],
        "actions": actions,
        "remaining": [p.to_dict() for p in remaining],
        "waiting": final.waiting,
        "notes": report.notes + waiting_notes(final.waiting),  # after --repair: what still waits
        "seconds": round(time.perf_counter() - t0, 4),
    }


def format_sources(result: dict) -> str:
    """Where each dist came from, one line each (``doctor -v``)."""
    lines = ["dists and the wheels they were made from:"]
    for src in result.get("sources", []):
        origin = f"from {src['origin']}" if src.get("origin") else "origin not recorded"
        lines.append(f"  {src['path']}: {src['wheel']} sha256 {src['wheel_sha256']} ({origin})")
    return "\n".join(lines)


def format_result(result: dict) -> str:
    c = result["counts"]
    lines = [f"store {result['store']}: {result['mode']} check of {c['objects']} objects, {c['dists']} dists, "
             f"{c['bubbles']} bubbles ({result['seconds']:.2f} s)"]
    if result["problems"]:
        lines.append(f"found {plural(len(result['problems']), 'problem')}:")
        lines += ["  " + Problem(**p).line() for p in result["problems"]]
    if result["actions"]:
        lines.append(f"did {plural(len(result['actions']), 'repair')} (see above); nothing was deleted, "
                     "what was set aside is under quarantine/")
    if result["clean"]:
        lines.append("clean" if not result["problems"] else "clean now")
    else:
        left = result["remaining"]
        if result["actions"] or result["problems"] != left:
            lines.append(f"{plural(len(left), 'problem')} left:")
            lines += ["  " + Problem(**p).line() for p in left]
        if any(p["kind"] != "main-env" for p in left) and not result["actions"]:
            lines.append("  hint: `pip-omni doctor --repair` repairs the store (and deletes nothing)")
        if any(p["kind"] == "main-env" for p in left):
            lines.append("  hint: doctor never changes the main environment; remove what it names yourself, "
                         "or with pip")
    return "\n".join(lines)
