#!/usr/bin/env python3
"""Benchmark how a warm bubble install scales with the number of bubbles in the store.

    python benchmarks/bench_pending.py [--reps 7] [--bubbles 100] [--json]

A warm bubble install (``pip-omni uninstall omt-root==1.0`` untimed, then ``pip-omni install
--bubble omt-root==1.0``: every dist stored, no pip) in a store holding 1 bubble, and in one
holding ``--bubbles`` more bubbles of other tiny packages, as the whole command (CPU time of
the process, user + system, so a busy CPU does not count) and as the in-process
``bytecode.compile_pending`` call an install ends with (``process_time``). The stores are
built once, in the scratch directory, with this checkout's code; the two stores are
measured interleaved, paired per repetition; the figure is the ratio many / one. Before the
pending list (``omnipkg_pip/writers/bytecode.py``) ``compile_pending`` read every bubble
manifest, so the ratio grew with the store.

Stdlib only, hermetic: the wheels are made with ``tests/wheelmaker.py``; this interpreter
runs everything (it needs this project's dependencies importable).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_BUILD = r"""
import os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
from wheelmaker import make_wheel
from omnipkg_hook.store import Store
from omnipkg_pip.writers.bubbles import bubble_from_wheels
store, wheels, n = Store(sys.argv[2]), sys.argv[3], int(sys.argv[4])
for i in range(n):
    name = f"omt-other{i:03d}"
    files = {f"omt_other{i:03d}/__init__.py": "X = 1\n", f"omt_other{i:03d}/m.py": "Y = 2\n"}
    dep = make_wheel(wheels, f"omt-dep{i:03d}", "1.0", {f"omt_dep{i:03d}/__init__.py": "Z = 3\n"})
    bubble_from_wheels(store, [make_wheel(wheels, name, "1.0", files, requires=[f"omt-dep{i:03d}"]), dep],
                       f"{name}==1.0")
root = make_wheel(wheels, "omt-root", "1.0", {"omt_root/__init__.py": "V = '1.0'\n"})
bubble_from_wheels(store, [root], "omt-root==1.0")
"""

_CLI = "import sys; from omnipkg_pip.cli import main; sys.exit(main(sys.argv[1:]))"

_PENDING = r"""
import sys, time
from omnipkg_hook.store import Store
from omnipkg_pip import environment
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bytecode
store, interpreter = Store(), interp.current()
main = environment.installed(interpreter, store)
bytecode.compile_pending(store, interpreter, main)  # the first call may make the pending list
times = []
for _ in range(int(sys.argv[1])):
    t = time.process_time()
    bytecode.compile_pending(store, interpreter, main)
    times.append((time.process_time() - t) * 1e6)
print(sorted(times)[len(times) // 2])
"""


def _env(store: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH")}
    env.update(OMNIPKG_STORE=store, PYTHONPATH=REPO, PIP_NO_INDEX="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # both sides import compiled code
    return env


def _cpu(cmd: list[str], env: dict) -> float:
    """CPU ms (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{proc.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1e3


def _stats(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4) if len(values) >= 4 else [min(values), 0, max(values)]
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values), "max": max(values)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7, help="paired repetitions of the whole command")
    ap.add_argument("--bubbles", type=int, default=100, help="other bubbles in the larger store")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="pip-omni-bench-pending-")
    try:
        stores = {}
        for label, n in (("one", 0), ("many", args.bubbles)):
            stores[label] = os.path.join(work, f"store-{label}")
            subprocess.run([sys.executable, "-c", _BUILD, REPO, stores[label], os.path.join(work, "wheels"), str(n)],
                           env=_env(stores[label]), check=True)  # fmt: skip
        cmd = {label: [sys.executable, "-c", _CLI] for label in stores}
        whole = {label: [] for label in stores}
        for rep in range(args.reps + 1):
            for label, store in stores.items():
                env = _env(store)
                _cpu(cmd[label] + ["uninstall", "omt-root==1.0"], env)
                ms = _cpu(cmd[label] + ["install", "--bubble", "omt-root==1.0"], env)
                if rep:  # the first makes the pending list and the .pyc of the code
                    whole[label].append(ms)
        pending = {label: float(subprocess.run([sys.executable, "-c", _PENDING, "51"], env=_env(store),
                                               capture_output=True, text=True, check=True).stdout)
                   for label, store in stores.items()}  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [m / o for m, o in zip(whole["many"], whole["one"])]
    result = {
        "bubbles": {"one": 1, "many": args.bubbles + 1},
        "whole_command_cpu_ms": {k: _stats(v) for k, v in whole.items()},
        "ratio_many_over_one": _stats(ratios),
        "compile_pending_us_median": pending,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    w, r = result["whole_command_cpu_ms"], result["ratio_many_over_one"]
    print(f"warm `pip-omni install --bubble omt-root==1.0`, CPU time, {args.reps} paired reps (median [IQR])")
    for label in ("one", "many"):
        s = w[label]
        print(f"  store with {result['bubbles'][label]:>4} bubble(s): {s['median']:7.1f} ms [{s['q1']:.1f}-{s['q3']:.1f}]"
              f"   compile_pending alone: {pending[label]:8.1f} us")
    print(f"  ratio many / one (paired): {r['median']:.3f}x [{r['q1']:.3f}-{r['q3']:.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
