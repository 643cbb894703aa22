"""Interpreters: adopt time, a worker on another interpreter, the multiverse run.

    python benchmarks/bench_interpreters.py [--reps 5] [--json]

Figures (medians with min-max over --reps, all measured in this run):
- `pip-omni python adopt 3.9`: the whole command, and the in-process call (each probing
  3.9 afresh: the probe's disk cache is emptied between reps);
- a Python 3.9 daemon worker: cold start to first answer, and the warm round trip of
  a trivial call (median and p99 over 2000 calls);
- `pip-omni run --python 3.9,3.11,3.12 -c pass` vs running the three interpreters by
  hand one after another, as a ratio.
Interpreters that are not installed are reported as missing, never faked. Everything is
written under one temporary directory (``TMPDIR``), removed at the end, and the daemon
started for the warm calls is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from omnipkg_hook.store import Store  # noqa: E402
from omnipkg_pip.pythons import interpreters  # noqa: E402


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1],
            "p99": xs[min(len(xs) - 1, int(len(xs) * 0.99))], "n": len(xs)}


def _fmt(s: dict, unit: float = 1e3, suffix: str = "ms") -> str:
    return f"{s['median'] * unit:8.3f} {suffix}  (min {s['min'] * unit:.3f}, max {s['max'] * unit:.3f}, n={s['n']})"


def _time(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict = {}
    # This machine may set PYTHONDONTWRITEBYTECODE; an installed wheel has its .pyc, so
    # compile ours first rather than timing the compiler on every command.
    import compileall

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for pkg in ("omnipkg_pip", "omnipkg_hook"):
        compileall.compile_dir(os.path.join(root, pkg), quiet=1)
    tmp = tempfile.mkdtemp(prefix="bench-interp-")
    daemon = None
    try:
        env = {**os.environ, "OMNIPKG_STORE": os.path.join(tmp, "store"),
               "XDG_RUNTIME_DIR": os.path.join(tmp, "run"), "XDG_CACHE_HOME": os.path.join(tmp, "cache")}
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
        os.environ.update({k: env[k] for k in ("OMNIPKG_STORE", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME")})
        store = Store(env["OMNIPKG_STORE"])
        cli = [sys.executable, "-m", "omnipkg_pip"]

        found = {v: interpreters.discover(v) for v in ("3.9", "3.11", "3.12")}
        missing = [v for v, f in found.items() if not f]
        results["missing"] = missing

        if found["3.9"]:
            results["adopt_cli"] = _stats([_time([*cli, "python", "adopt", "3.9"], env) for _ in range(args.reps)])
            inproc = []
            for _ in range(args.reps):
                interpreters.interp.inspect.cache_clear()  # measure the real probe every time:
                shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)  # its answer is cached there
                t0 = time.perf_counter()
                interpreters.adopt(store, "3.9")
                inproc.append(time.perf_counter() - t0)
            results["adopt_api"] = _stats(inproc)

            try:
                from omnipkg_hook.workers import DaemonClient, DaemonProxy, WorkerPool

                cold = []
                for _ in range(args.reps):  # a fresh 3.9 worker each time: spawn to first answer
                    pool = WorkerPool()
                    try:
                        t0 = time.perf_counter()
                        pool.get(python="3.9").execute("import sys")
                        cold.append(time.perf_counter() - t0)
                    finally:
                        pool.close()
                warm = []
                daemon = DaemonClient()
                proxy = DaemonProxy(daemon, python="3.9")
                assert proxy.execute("import sys; sys.version_info[:2]").value == (3, 9)
                for _ in range(2000):
                    t0 = time.perf_counter()
                    proxy.call("operator:add", 1, 2)
                    warm.append(time.perf_counter() - t0)
                results["worker39_first_call"] = _stats(cold)
                results["worker39_warm_call"] = _stats(warm)
            except Exception as e:  # reported, never hidden
                results["worker39_error"] = f"{type(e).__name__}: {e}"

        if not missing:
            for v in ("3.11", "3.12"):
                interpreters.adopt(store, v)
            script = os.path.join(tmp, "trivial.py")
            with open(script, "w") as f:
                f.write("pass\n")
            by_hand, multiverse = [], []
            paths = [found[v][0][0] for v in ("3.9", "3.11", "3.12")]
            for _ in range(args.reps):
                t0 = time.perf_counter()
                for p in paths:
                    subprocess.run([p, script], check=True, env=env)
                by_hand.append(time.perf_counter() - t0)
                multiverse.append(_time([*cli, "run", "--python", "3.9,3.11,3.12", "--", script], env))
            results["by_hand"] = _stats(by_hand)
            results["multiverse"] = _stats(multiverse)
            results["multiverse_ratio"] = results["multiverse"]["median"] / results["by_hand"]["median"]
    finally:  # the daemon this run started, and everything it wrote
        if daemon is not None:
            daemon.stop(timeout=10)
            daemon.close()
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"interpreters (reps={args.reps}); missing: {', '.join(missing) or 'none'}")
    for key, label in (("adopt_cli", "pip-omni python adopt 3.9 (command)"),
                       ("adopt_api", "interpreters.adopt(store, '3.9') (in-process)"),
                       ("worker39_first_call", "3.9 worker (WorkerPool): spawn to first answer"),
                       ("by_hand", "python3.9/3.11/3.12 trivial.py, by hand"),
                       ("multiverse", "pip-omni run --python 3.9,3.11,3.12 trivial.py")):
        if key in results:
            print(f"  {label:<52} {_fmt(results[key])}")
    if "worker39_warm_call" in results:
        w = results["worker39_warm_call"]
        print(f"  {'3.9 daemon worker: warm call(operator:add)':<52} p50 {w['median'] * 1e6:.1f} us, "
              f"p99 {w['p99'] * 1e6:.1f} us (n={w['n']})")
    if "worker39_error" in results:
        print(f"  3.9 daemon worker: NOT MEASURED: {results['worker39_error']}")
    if "multiverse_ratio" in results:
        print(f"  multiverse / by hand: {results['multiverse_ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
