"""Interpreters: adopt time, a worker on another interpreter, the multiverse run.

    python benchmarks/bench_interpreters.py [--reps 5] [--json]

Figures (medians with min-max over --reps, all measured in this run):
- `pip-omni python adopt 3.9`: the whole command, interleaved with `pip-omni --version` (the
  same interpreter start and CLI, nothing done) as its baseline, and the in-process call; each
  rep probes 3.9 afresh (its entry in the probe's disk cache, ``OMNIPKG_CACHE_DIR``, is
  removed first; the running interpreter's stays, as for anyone who ran pip-omni before);
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


def _forget_probes(cache: str) -> None:
    """Remove every cached interpreter probe but the running interpreter's."""
    keep = os.path.basename(interpreters.interp._cache_path(sys.executable)[0])
    folder = os.path.join(cache, "interpreters")
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        if name != keep:
            os.unlink(os.path.join(folder, name))
    interpreters.interp.inspect.cache_clear()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict = {"load_before": os.getloadavg()[0]}
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
               "OMNIPKG_CACHE_DIR": os.path.join(tmp, "cache"),
               "XDG_RUNTIME_DIR": os.path.join(tmp, "run"), "XDG_CACHE_HOME": os.path.join(tmp, "xdg-cache")}
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700)
        os.environ.update({k: env[k] for k in ("OMNIPKG_STORE", "OMNIPKG_CACHE_DIR", "XDG_RUNTIME_DIR",
                                               "XDG_CACHE_HOME")})
        store = Store(env["OMNIPKG_STORE"])
        cli = [sys.executable, "-m", "omnipkg_pip"]

        found = {v: interpreters.discover(v) for v in ("3.9", "3.11", "3.12")}
        missing = [v for v, f in found.items() if not f]
        results["missing"] = missing

        if found["3.9"]:
            cmds = {"version_cli": [*cli, "--version"], "adopt_cli": [*cli, "python", "adopt", "3.9"]}
            for cmd in cmds.values():  # untimed: the page cache warm, the store made
                _time(cmd, env)
            times: dict = {name: [] for name in cmds}
            for i in range(args.reps):  # interleaved; which goes first alternates
                _forget_probes(env["OMNIPKG_CACHE_DIR"])
                for name in sorted(cmds, reverse=bool(i % 2)):
                    times[name].append(_time(cmds[name], env))
            results.update({name: _stats(ts) for name, ts in times.items()})
            results["adopt_cli_ratio"] = _stats([a / v for a, v in zip(times["adopt_cli"], times["version_cli"])])
            inproc = []
            for _ in range(args.reps):
                _forget_probes(env["OMNIPKG_CACHE_DIR"])  # measure the real probe every time
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

    results["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"interpreters (reps={args.reps}, load {results['load_before']:.2f} -> {results['load_after']:.2f}); "
          f"missing: {', '.join(missing) or 'none'}")
    for key, label in (("version_cli", "pip-omni --version (baseline of the adopt row)"),
                       ("adopt_cli", "pip-omni python adopt 3.9 (command, probing afresh)"),
                       ("adopt_api", "interpreters.adopt(store, '3.9') (in-process)"),
                       ("worker39_first_call", "3.9 worker (WorkerPool): spawn to first answer"),
                       ("by_hand", "python3.9/3.11/3.12 trivial.py, by hand"),
                       ("multiverse", "pip-omni run --python 3.9,3.11,3.12 trivial.py")):
        if key in results:
            print(f"  {label:<52} {_fmt(results[key])}")
    if "adopt_cli_ratio" in results:
        r = results["adopt_cli_ratio"]
        print(f"  adopt / --version, paired: {r['median']:.2f}x (min {r['min']:.2f}, max {r['max']:.2f})")
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
