#!/usr/bin/env python3
"""Run every ``benchmarks/bench_*.py`` there is, one after another, each as its own process.

    python benchmarks/run_all.py [--reps N] [--json] [--only PATTERN] [-- EXTRA ARGS]

``--reps`` is passed to every script (each defaults to its own count when it is not
given). With ``--json`` each script is run with ``--json`` and one JSON document
``{"script name": its JSON output, ...}`` is printed at the end. Arguments after
``--`` go to every script unchanged. A script that fails does not stop the others;
the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def scripts(pattern: str | None) -> list[str]:
    found = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if pattern:
        found = [s for s in found if fnmatch.fnmatch(os.path.basename(s), pattern)
                 or pattern in os.path.basename(s)]
    return found


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, help="repetitions, passed to every script")
    ap.add_argument("--json", action="store_true", help="run each with --json; print one combined JSON document")
    ap.add_argument("--only", metavar="PATTERN", help="run only scripts whose file name matches (glob or substring)")
    ap.add_argument("--python", default=sys.executable, help="interpreter to run the scripts with (default: this one)")
    args = ap.parse_args(argv)

    todo = scripts(args.only)
    if not todo:
        print("run_all: no benchmarks/bench_*.py" + (f" matching {args.only!r}" if args.only else ""),
              file=sys.stderr)
        return 1
    passed = (["--reps", str(args.reps)] if args.reps is not None else []) + (["--json"] if args.json else [])
    combined: dict = {}
    failed: list[str] = []
    for path in todo:
        name = os.path.basename(path)
        cmd = [args.python, path, *passed, *extra]
        print(f"== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        if args.json:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
            try:
                combined[name] = json.loads(proc.stdout)
            except ValueError:
                combined[name] = {"returncode": proc.returncode, "stdout": proc.stdout}
        else:
            proc = subprocess.run(cmd)
        dt = time.perf_counter() - t
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        print(f"== {name}: {status} in {dt:.0f} s\n", file=sys.stderr, flush=True)
        if proc.returncode != 0:
            failed.append(name)
    if args.json:
        json.dump(combined, sys.stdout, indent=1)
        print()
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
