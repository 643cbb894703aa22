"""Workers and the daemon: warm round trips, throughput, new workers (spawn vs zygote).

    .venv/bin/python benchmarks/bench_workers.py [--n 20000] [--seconds 2] [--omnipkg [--omnipkg-python PY]]
                                                 [--json FILE]

Everything runs against a private store and runtime directory in the temp dir (``TMPDIR``; never the
user's daemon); every daemon started here is stopped at exit. Times are per call, in
microseconds unless said otherwise; "spread" is p10..p90. The budgets of DESIGN.md are
checked at the end (this machine is shared and noisy: read them as a guide, and run
twice before believing a miss).

``--omnipkg`` installs omnipkg==3.4.1 into a venv in the temp dir, kept for the next run (HOME pointed at a
scratch directory, so nothing of the user's is touched; ``--omnipkg-python PY`` uses that venv
instead, with this process's HOME), measures its
``DaemonProxy.execute("x = 1 + 1")`` warm round trip in the same run, stops its daemon,
measures ours again right after it (the load drifts during a run), and prints both
ratios. If omnipkg cannot be installed or run, the output says so.
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
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from omnipkg_hook.workers import DaemonClient, DaemonProxy, WorkerPool  # noqa: E402
from omnipkg_hook.workers.daemon import DaemonConfig  # noqa: E402

BUDGET_CALL_P50_US = 50.0
BUDGET_CALL_P99_US = 150.0
BUDGET_ZYGOTE_MS = 5.0
OMNIPKG_VERSION = "3.4.1"

rows: list[dict] = []


def stats(name: str, samples_ns: list[int], unit: str = "us") -> dict:
    div = 1000.0 if unit == "us" else 1e6
    s = sorted(x / div for x in samples_ns)
    n = len(s)

    def q(p):
        return s[min(n - 1, int(p * n))]

    row = {"what": name, "n": n, "unit": unit, "p50": statistics.median(s), "p99": q(0.99),
           "p10": q(0.10), "p90": q(0.90), "min": s[0]}
    rows.append(row)
    print(f"  {name:<48} {n:>6}  p50 {row['p50']:9.1f} {unit}  p99 {row['p99']:9.1f} {unit}"
          f"  spread {row['p10']:.1f}..{row['p90']:.1f}", flush=True)
    return row


def time_calls(fn, n: int, warmup: int = 500) -> list[int]:
    for _ in range(warmup):
        fn()
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def throughput(fn, seconds: float) -> float:
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        for _ in range(100):
            fn()
        count += 100
    return count / seconds


CHILD = textwrap.dedent("""
    import sys, time
    from omnipkg_hook.workers import DaemonClient, DaemonProxy
    pins = [p for p in sys.argv[1].split(",") if p]
    p = DaemonProxy(DaemonClient(start=False), *pins)
    for _ in range(500):
        p.call("builtins:abs", -1)
    print("ready", flush=True)
    sys.stdin.readline()
    end = time.perf_counter() + float(sys.argv[2])
    n = 0
    while time.perf_counter() < end:
        for _ in range(100):
            p.call("builtins:abs", -1)
        n += 100
    print(n, flush=True)
""")


def clients_throughput(pin_sets: list[str], seconds: float) -> float:
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, pins, str(seconds)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for pins in pin_sets]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    total = 0
    for p in procs:
        total += int(p.stdout.readline())
        p.wait(30)
    return total / seconds


def make_bubbles(store: str, names: list[str]) -> list[str]:
    """Bubbles of tiny local packages; ``benchheavy`` imports a slice of the stdlib, as a
    real package would, so that the zygote has something to save."""
    from wheelmaker import make_wheel

    from omnipkg_hook.store import Store
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    heavy = ("import asyncio, decimal, email.mime.multipart, json, http.client, logging.handlers, "
             "xml.etree.ElementTree, urllib.request, tarfile, zipfile, unittest, argparse, csv\n")
    pins = []
    with tempfile.TemporaryDirectory() as wheels:
        for name in names:
            body = heavy if name == "benchheavy" else ""
            wheel = make_wheel(wheels, name, "1.0", {f"{name}/__init__.py": body + "VERSION = '1.0'\n"})
            bubble_from_wheels(Store(store), [wheel], f"{name}==1.0")
            pins.append(f"{name}==1.0")
    return pins


def new_worker_times(client: DaemonClient, pins: list[str], rounds: int, pause: float = 0.0) -> list[int]:
    """Time from asking for a worker that does not exist to its first answer; with pins,
    the first request imports the pinned package (what a user's first call does).
    ``pause`` between rounds lets a zygote fork its spare (it waits for 50 ms of quiet)."""
    out = []
    first = "; ".join(f"import {p.split('==')[0]}" for p in pins) or "None"
    p = DaemonProxy(client, *pins)
    p.execute(first)
    for _ in range(rounds):
        client.kill_worker(p.info["id"], "benchmark")
        p.close()
        time.sleep(pause)
        t0 = time.perf_counter_ns()
        p = DaemonProxy(client, *pins)
        p.execute(first)
        out.append(time.perf_counter_ns() - t0)
    p.close()
    return out


def python_pass_times(rounds: int) -> list[int]:
    """Wall time of ``python -c pass``: what any spawned worker pays before its own start-up."""
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        out.append(time.perf_counter_ns() - t0)
    return out


def bench_omnipkg(n: int, python: str | None = None) -> dict | None:
    """omnipkg's warm ``DaemonProxy.execute``: in the venv of ``python`` (with the HOME of this
    process, where omnipkg keeps its configuration), else in one installed here and kept."""
    env = dict(os.environ)
    if python is not None and not os.path.exists(python):
        print(f"  omnipkg: no such python {python!r} (--omnipkg-python)")
        return None
    if python is None:
        base = os.path.join(tempfile.gettempdir(), "pip-omni-bench-omnipkg")
        venv = os.path.join(base, "venv")
        env["HOME"] = os.path.join(base, "home")
        os.makedirs(env["HOME"], exist_ok=True)
        python = os.path.join(venv, "bin", "python")
    for var in ("OMNIPKG_STORE", "OMNIPKG_RUNTIME_DIR", "OMNIPKG_PINS", "PYTHONPATH"):
        env.pop(var, None)
    try:
        if not os.path.exists(python):
            print(f"  installing omnipkg=={OMNIPKG_VERSION} into {venv} ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
            subprocess.run([python, "-m", "pip", "install", "-q", f"omnipkg=={OMNIPKG_VERSION}"],
                           check=True, capture_output=True, env=env, timeout=900)
        script = textwrap.dedent(f"""
            import json, sys, time
            from omnipkg.isolation.worker_daemon import DaemonClient, DaemonProxy
            import importlib.metadata as m
            spec = "click==" + m.version("click")  # already in that venv's main environment
            p = DaemonProxy(DaemonClient(auto_start=True), spec)
            t = time.perf_counter(); r = p.execute("x = 1 + 1"); first = time.perf_counter() - t
            if not r.get("success"):
                print(json.dumps({{"error": repr(r)}})); sys.exit(0)
            for _ in range(50):
                p.execute("x = 1 + 1")
            ts = []
            for _ in range({n}):
                t0 = time.perf_counter_ns(); p.execute("x = 1 + 1"); ts.append(time.perf_counter_ns() - t0)
            print(json.dumps({{"first_s": first, "samples": ts, "spec": spec}}))
        """)
        proc = subprocess.run([python, "-c", script], capture_output=True, text=True, env=env, timeout=900)
        try:
            data = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print(f"  omnipkg {OMNIPKG_VERSION} could not be run: exit {proc.returncode}; "
                  f"stderr tail: {proc.stderr.strip()[-500:]!r}")
            return None
        if "error" in data:
            print(f"  omnipkg {OMNIPKG_VERSION} ran but its execute() failed: {data['error'][:300]}")
            return None
        print(f"  omnipkg first execute (its daemon cold, {data['spec']}): {data['first_s']:.2f} s")
        return stats(f"omnipkg {OMNIPKG_VERSION} DaemonProxy.execute x = 1 + 1", data["samples"])
    except (OSError, subprocess.SubprocessError) as e:
        print(f"  omnipkg {OMNIPKG_VERSION} could not be installed or run: {e}")
        return None
    finally:
        if os.path.exists(python):
            subprocess.run([python, "-m", "omnipkg.isolation.worker_daemon", "stop"], capture_output=True,
                           env=env, timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="timed round trips per latency row")
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each throughput run")
    parser.add_argument("--rounds", type=int, default=30, help="new workers per spawn/zygote row")
    parser.add_argument("--omnipkg", action="store_true", help=f"also measure omnipkg=={OMNIPKG_VERSION}")
    parser.add_argument("--omnipkg-python", metavar="PY",
                        help="with --omnipkg: the python of a venv that has omnipkg (else one is installed)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="pobw-")
    if len(scratch) > 60:  # AF_UNIX socket paths are limited to ~107 bytes
        shutil.rmtree(scratch)
        print(f"bench_workers: the temp dir {tempfile.gettempdir()!r} is too long for the daemon's socket paths; "
              "set TMPDIR to a short directory", file=sys.stderr)
        return 2
    os.environ["OMNIPKG_RUNTIME_DIR"] = os.path.join(scratch, "rt")
    store = os.path.join(scratch, "store")
    os.environ["OMNIPKG_STORE"] = store
    os.environ.pop("OMNIPKG_PINS", None)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"pip-omni workers benchmark: Python {sys.version.split()[0]} on {sys.platform}, {cpus} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; n={args.n}", flush=True)
    clients = []
    try:
        pins = make_bubbles(store, ["bencha", "benchb", "benchc", "benchd", "benchheavy"])
        client = DaemonClient(store, config=DaemonConfig(idle_timeout=3600))
        clients.append(client)

        print("warm round trips (through the daemon: client <-> worker directly)")
        proxy = DaemonProxy(client)
        call = stats("daemon  call('builtins:abs', -1)", time_calls(lambda: proxy.call("builtins:abs", -1), args.n))
        execute = stats("daemon  execute('x = 1 + 1')", time_calls(lambda: proxy.execute("x = 1 + 1"), args.n))
        stats("daemon  ping()", time_calls(proxy.ping, args.n))
        with WorkerPool(store=store) as pool:
            w = pool.get()
            stats("pool    call('builtins:abs', -1)", time_calls(lambda: w.call("builtins:abs", -1), args.n))

        print("throughput (calls/s, trivial call)")
        seq = throughput(lambda: proxy.call("builtins:abs", -1), args.seconds)
        print(f"  {'1 client, sequential':<48} {seq:12,.0f} calls/s")
        same = clients_throughput([""] * 4, args.seconds)
        print(f"  {'4 client processes, one shared worker':<48} {same:12,.0f} calls/s")
        diff = clients_throughput(pins[:4], args.seconds)
        print(f"  {'4 client processes, 4 workers':<48} {diff:12,.0f} calls/s")
        rows.append({"what": "throughput", "sequential": seq, "4 clients same worker": same,
                     "4 clients 4 workers": diff})

        print("new worker, from asking to its first answer (ms)")
        spawn_client = DaemonClient(os.path.join(scratch, "store-spawn"), config=DaemonConfig(zygotes=False))
        clients.append(spawn_client)
        floor = stats("python -c pass (the floor of a spawn)", python_pass_times(args.rounds), "ms")
        fresh = stats("spawn   (no pins)", new_worker_times(spawn_client, [], args.rounds), "ms")
        zyg = stats("zygote  (no pins), back to back", new_worker_times(client, [], args.rounds), "ms")
        stats("zygote  (no pins), 0.2 s apart: its spare", new_worker_times(client, [], args.rounds, 0.2), "ms")
        heavy_spawn = DaemonClient(store, runtime_dir=os.path.join(scratch, "rt2"),
                                   config=DaemonConfig(zygotes=False))
        clients.append(heavy_spawn)
        hs = stats("spawn   benchheavy==1.0, first call imports it",
                   new_worker_times(heavy_spawn, [pins[4]], args.rounds), "ms")
        hz = stats("zygote  benchheavy==1.0 (preloaded), back to back",
                   new_worker_times(client, [pins[4]], args.rounds), "ms")
        stats("zygote  benchheavy==1.0, 0.2 s apart: its spare",
              new_worker_times(client, [pins[4]], args.rounds, 0.2), "ms")

        omni = None
        if args.omnipkg:
            print(f"omnipkg {OMNIPKG_VERSION}, same machine, same run")
            omni = bench_omnipkg(min(args.n, 2000), args.omnipkg_python)
            if omni is not None:  # ours again, next to theirs in time: the machine's load drifts
                again = DaemonProxy(client)
                execute_adj = stats("daemon  execute('x = 1 + 1'), right after omnipkg's",
                                    time_calls(lambda: again.execute("x = 1 + 1"), min(args.n, 2000)))
                again.close()

        print("budgets")
        verdicts = [
            ("warm trivial call p50 <= 50 us", call["p50"] <= BUDGET_CALL_P50_US, f"{call['p50']:.1f} us"),
            ("warm trivial call p99 <= 150 us", call["p99"] <= BUDGET_CALL_P99_US, f"{call['p99']:.1f} us"),
            ("new worker from a zygote <= 5 ms (p50, back to back)", zyg["p50"] <= BUDGET_ZYGOTE_MS,
             f"{zyg['p50']:.2f} ms"),
            ("pinned new worker from its zygote <= 5 ms (p50, b2b)", hz["p50"] <= BUDGET_ZYGOTE_MS,
             f"{hz['p50']:.2f} ms"),
        ]
        for text, ok, value in verdicts:
            print(f"  {'ok  ' if ok else 'MISS'} {text:<50} {value}")
        print(f"  spawn / zygote: {fresh['p50'] / zyg['p50']:.1f}x (no pins), {hs['p50'] / hz['p50']:.1f}x (benchheavy); "
              f"spawn / python -c pass: {fresh['p50'] / floor['p50']:.1f}x")
        if omni is not None:
            for label, ours in (("ours right after", execute_adj), ("ours at the start", execute)):
                print(f"  omnipkg execute p50 / {label}: {omni['p50'] / ours['p50']:.1f}x "
                      f"({omni['p50']:.1f} us vs {ours['p50']:.1f} us); p99 {omni['p99'] / ours['p99']:.1f}x")
        elif args.omnipkg:
            print("  omnipkg: no figure (see above why)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0
    finally:
        for c in clients:
            try:
                c.stop()
            except Exception as e:  # pragma: no cover
                print(f"could not stop a daemon: {e}", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
