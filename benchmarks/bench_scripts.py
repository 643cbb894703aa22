"""PEP 723 scripts: `pip-omni run` vs `uv run` vs `pipx run` vs plain `python`, warm and cold.

    python benchmarks/bench_scripts.py [--reps 15] [--cold-reps 3] [--json] [--keep]

One script declares `rich==13.4.2` in its `# /// script` block and renders a line with it.
Measured in one run, interleaved rep by rep (medians with min-max):

- plain: `python script.py` in a venv that has rich 13.4.2 installed (the baseline);
- warm: `pip-omni run script.py` (bubble stored), `uv run script.py`, `pipx run script.py`
  (their cached environments exist) -- each tool installed from the index into its own
  throwaway venv, every one on the same interpreter;
- cold: the same with each tool's state empty (a new store / cache / PIPX_HOME per rep, and a
  new pip cache for the tools that use pip), so every rep fetches from the index.

Reported: each warm tool's overhead over plain (median difference, ms) and the ratio of
pip-omni's overhead to uv's (goal: at most 0.5). A cold `pip-omni run` compiles the bubble it
made after the script, in the background (omnipkg_pip/writers/later.py): after every pip-omni
command the harness waits for that compile to end, outside the timed span, so it takes no CPU
from the next command, and reports its wall and CPU seconds as a row of its own. Everything lives under one temporary
directory ($TMPDIR honoured) that is removed at the end unless --keep. The machine is
shared: compare the ratios, not the absolute figures.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RICH = "13.4.2"
SCRIPT = f"""\
# /// script
# dependencies = ["rich=={RICH}"]
# ///
import rich
from rich.text import Text
from rich.console import Console
console = Console(file=open("/dev/null", "w"), width=40)
console.print(Text("hello from rich"))
"""


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs)}


def _fmt(s: dict) -> str:
    return f"{s['median'] * 1e3:8.1f} ms  (min {s['min'] * 1e3:.1f}, max {s['max'] * 1e3:.1f}, n={s['n']})"


def _run(cmd, env, cwd=None, check=True) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise SystemExit(f"bench_scripts: {' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                         f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def wait_compile(env: dict) -> list[dict]:
    """Wait (untimed) for the background compiles pip-omni started in ``env``'s store; their log records."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from omnipkg_pip.writers import later

    root = env["OMNIPKG_STORE"]
    if not later.wait(root, timeout=600):
        raise SystemExit(f"bench: the background compile in {root} did not end in 600 s")
    return later.records(root)


def compile_rows(records: list[list[dict]]) -> dict:
    """Stats of the background compiles of cold reps (one list of records per rep)."""
    reps = [r for r in records if r]
    if not reps:
        return {}
    return {"seconds": _stats([sum(x["seconds"] for x in r) for r in reps]),
            "cpu_seconds": _stats([sum(x["cpu_seconds"] for x in r) for r in reps]),
            "dists": _stats([float(sum(len(x["compiled"]) for x in r)) for r in reps]),
            # bubbles whose dists main has at that version were stored then too (writers/deferred.py)
            "stored": _stats([float(sum(len(x.get("stored", [])) for x in r)) for r in reps])}


def _venv(path: str, *packages: str, env: dict) -> str:
    subprocess.run([sys.executable, "-m", "venv", path], check=True, capture_output=True)
    py = os.path.join(path, "bin", "python")
    if packages:
        proc = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"bench_scripts: installing {packages} failed:\n{proc.stderr[-3000:]}")
    return py


def parse_args(doc: str, reps: int, cold_reps: int):
    """The options every tool-comparison benchmark takes (bench_matrix.py too)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=reps, help=f"warm repetitions (default {reps})")
    ap.add_argument("--cold-reps", type=int, default=cold_reps, help=f"cold repetitions (network; default {cold_reps})")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return ap.parse_args()


def user_env() -> dict:
    """What a user's shell has: .pyc written, no pins, no PYTHONPATH, no active venv."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "OMNIPKG_PINS", "VIRTUAL_ENV")}


def main() -> int:
    args = parse_args(__doc__, 15, 3)
    work = tempfile.mkdtemp(prefix="bench-scripts-")
    base = user_env()
    try:
        print("bench_scripts: setting up venvs (pip-omni, uv, pipx, plain) from the index ...", file=sys.stderr)
        omni = _venv(os.path.join(work, "omni"), ROOT, env=base)
        tools = _venv(os.path.join(work, "tools"), "uv", "pipx", env=base)
        plain = _venv(os.path.join(work, "plain"), f"rich=={RICH}", env=base)
        bindir = os.path.dirname(tools)
        script = os.path.join(work, "script.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        py = sys.executable

        def envs(tag: str, cold: bool = False) -> dict:
            d = os.path.join(work, "state", tag) if not cold else tempfile.mkdtemp(prefix=f"{tag}-", dir=work)
            return {**base, "OMNIPKG_STORE": os.path.join(d, "store"), "UV_CACHE_DIR": os.path.join(d, "uv"),
                    "PIPX_HOME": os.path.join(d, "pipx"), "PIPX_BIN_DIR": os.path.join(d, "pipx-bin"),
                    "PIP_CACHE_DIR": os.path.join(d, "pip-cache"), "XDG_STATE_HOME": os.path.join(d, "xdg")}

        commands = {
            "pip-omni run": [os.path.join(os.path.dirname(omni), "pip-omni"), "run", script],
            "uv run": [os.path.join(bindir, "uv"), "run", "--python", py, script],
            "pipx run": [os.path.join(bindir, "pipx"), "run", "--python", py, script],
        }
        plain_cmd = [plain, script]
        env = {name: envs(name.split()[0]) for name in commands}
        for name, cmd in commands.items():  # first run: makes the bubble / cached environment
            _run(cmd, env[name])
            if name.startswith("pip-omni"):
                wait_compile(env[name])
            _run(cmd, env[name])  # and the caches a second run writes
        warm: dict[str, list[float]] = {name: [] for name in ["plain python", *commands]}
        for _ in range(args.reps):
            warm["plain python"].append(_run(plain_cmd, base))
            for name, cmd in commands.items():
                warm[name].append(_run(cmd, env[name]))
        cold: dict[str, list[float]] = {name: [] for name in commands}
        compiles: list[list[dict]] = []
        for _ in range(args.cold_reps):
            for name, cmd in commands.items():
                cold_env = envs(name.split()[0], cold=True)
                cold[name].append(_run(cmd, cold_env))
                if name.startswith("pip-omni"):
                    compiles.append(wait_compile(cold_env))

        res = {"warm": {k: _stats(v) for k, v in warm.items()}, "cold": {k: _stats(v) for k, v in cold.items() if v}}  # --cold-reps 0: warm only
        res["cold_background_compile"] = compile_rows(compiles)  # after `pip-omni run`, not timed in its row
        p = res["warm"]["plain python"]["median"]
        res["overhead_ms"] = {k: (v["median"] - p) * 1e3 for k, v in res["warm"].items() if k != "plain python"}
        uv = res["overhead_ms"]["uv run"]
        res["pip_omni_overhead_over_uv_overhead"] = res["overhead_ms"]["pip-omni run"] / uv if uv > 0 else None
        res["goal"] = "warm pip-omni run overhead over plain python <= 0.5 x uv run's"
        res["commands"] = {**{k: " ".join(v) for k, v in commands.items()}, "plain python": " ".join(plain_cmd)}
        if args.json:
            json.dump(res, sys.stdout, indent=1)
            print()
            return 0
        print(f"PEP 723 script with rich=={RICH}; reps: warm {args.reps}, cold {args.cold_reps} (shared machine: read ratios)")
        print("warm:")
        for k, v in res["warm"].items():
            extra = "" if k == "plain python" else f"   overhead {res['overhead_ms'][k]:+7.1f} ms, {v['median'] / p:.2f}x plain"
            print(f"  {k:<14} {_fmt(v)}{extra}")
        print("cold (empty tool state; fetches from the index):")
        for k, v in res["cold"].items():
            print(f"  {k:<14} {_fmt(v)}")
        bg = res["cold_background_compile"]
        if bg:
            print(f"  {'  + its compile':<14} {_fmt(bg['seconds'])}, CPU {bg['cpu_seconds']['median'] * 1e3:.0f} ms, "
                  f"{bg['dists']['median']:.0f} dists (pip-omni run's, in the background after the script; not timed above)")
        r = res["pip_omni_overhead_over_uv_overhead"]
        print(f"pip-omni's warm overhead / uv's: {r:.2f} (goal <= 0.5: {'met' if r is not None and r <= 0.5 else 'missed'})"
              if r is not None else "uv's warm overhead is not above plain python here; no ratio")
        return 0
    finally:
        if args.keep:
            print(f"bench_scripts: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
