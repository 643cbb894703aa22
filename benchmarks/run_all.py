#!/usr/bin/env python3
"""Run every ``benchmarks/bench_*.py`` there is, one after another, each as its own process.

    python benchmarks/run_all.py [--reps N] [--json] [--only PATTERN] [-- EXTRA ARGS]

Each script gets only the options it takes (read from its ``--help``): ``--reps`` goes
to the scripts that have it, the others run their own default counts (the log says so).
With ``--json`` one JSON document ``{"script name": its JSON output, ...}`` is printed at
the end: a script whose ``--json`` is a flag prints JSON, one whose ``--json`` takes a
file name writes it to a temporary file read back here; a script without ``--json`` is
recorded by its exit status. Arguments after ``--`` go to every script unchanged. A
script that fails does not stop the others; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def scripts(pattern: str | None) -> list[str]:
    found = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if pattern:
        found = [s for s in found if fnmatch.fnmatch(os.path.basename(s), pattern)
                 or pattern in os.path.basename(s)]
    return found


def accepted_options(python: str, path: str) -> dict[str, bool]:
    """``{"--reps": True, "--json": False, ...}``: the options a script's argparse usage names,
    True for those that take a value."""
    proc = subprocess.run([python, path, "--help"], capture_output=True, text=True, timeout=120)
    usage = proc.stdout.split("\n\n")[0] if proc.returncode == 0 else ""
    return {m.group(1): bool(m.group(2)) for m in re.finditer(r"\[(--[\w-]+)(?: ([A-Z_]+))?", usage)}


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
    combined: dict = {}
    failed: list[str] = []
    for path in todo:
        name = os.path.basename(path)
        options = accepted_options(args.python, path)
        passed: list[str] = []
        notes: list[str] = []
        if args.reps is not None:
            if "--reps" in options:
                passed += ["--reps", str(args.reps)]
            else:
                notes.append("takes no --reps: its own default counts")
        json_file = None
        if args.json:
            if options.get("--json"):
                fd, json_file = tempfile.mkstemp(prefix="run-all-", suffix=".json")
                os.close(fd)
                passed += ["--json", json_file]
            elif "--json" in options:
                passed.append("--json")
            else:
                notes.append("takes no --json: recorded by its exit status")
        cmd = [args.python, path, *passed, *extra]
        print(f"== {name}: {' '.join(cmd[1:])}" + "".join(f" ({n})" for n in notes), file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            if args.json:
                proc = subprocess.run(cmd, stdout=sys.stderr if json_file or "--json" not in options
                                      else subprocess.PIPE, text=True)
                combined[name] = _read_json(proc, json_file)
            else:
                proc = subprocess.run(cmd)
        finally:
            if json_file:
                os.unlink(json_file)
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


def _read_json(proc: subprocess.CompletedProcess, json_file: str | None):
    try:
        if json_file:
            with open(json_file, encoding="utf-8") as f:
                return json.load(f)
        if proc.stdout is not None:
            return json.loads(proc.stdout)
    except ValueError:
        pass
    return {"returncode": proc.returncode, "stdout": proc.stdout}


if __name__ == "__main__":
    sys.exit(main())
