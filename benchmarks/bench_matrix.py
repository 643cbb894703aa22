"""One test suite against three versions of a dependency: pip-omni vs tox, nox and a uv loop.

    python benchmarks/bench_matrix.py [--reps 5] [--cold-reps 1] [--json] [--keep]

A generated suite of 50 tests that use rich runs against rich 13.4.2, 13.5.3 and 13.7.1 with:

- `pip-omni run --matrix rich=13.4.2,13.5.3,13.7.1 -- -m pytest -q tests`
- the same with `OMNIPKG_MATRIX_FORK=0` (every cell starts its interpreter: what forking
  the cells from a zygote saves)
- the same with `OMNIPKG_MATRIX_KEEP=0` (a new zygote per run: what keeping the zygote
  between runs saves; the other pip-omni rows reuse the one the previous run kept)
- `pytest --omnipkg-matrix rich=13.4.2,13.5.3,13.7.1 -q tests` (the plugin)
- `tox run-parallel` over three envs (one venv per version; `-p auto`, as parallel as
  pip-omni's default `--jobs`)
- `nox` with the uv backend, venvs reused (`-R`: reuse, no install) when warm
- a shell-style loop of `uv run --no-project --with rich==V --with pytest -- pytest -q tests`

Warm: every tool's environments/caches exist (each was run twice first). Cold: each tool's
own state is new for each rep (a new store, tox workdir, nox envdir, uv cache, pip cache), so
everything is fetched from the index again. Every tool is installed from the index into its
own throwaway venv; everything lives under one temporary directory ($TMPDIR honoured),
removed at the end unless --keep; the zygotes pip-omni keeps live in its runtime directory
there (`OMNIPKG_RUNTIME_DIR`) and are stopped at the end. Reported: medians with min-max and, for pip-omni's two
ways, how many times faster than the fastest other tool (goals: 3x warm, 5x cold). The
machine is shared: read the ratios, not the absolute figures.

A cold pip-omni run compiles the bubbles it made after its cells, in the background
(omnipkg_pip/writers/later.py), and stores then the dists main has at the same version
(pygments here, served from main meanwhile: omnipkg_pip/writers/deferred.py): after every pip-omni command the harness waits for that
compile to end, outside the timed span (it takes no CPU from the next command), and reports
its wall and CPU seconds on a line of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scripts import _stats, _venv, compile_rows, parse_args, user_env, wait_compile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ("13.4.2", "13.5.3", "13.7.1")

SUITE = """\
import io

import pytest
from rich.console import Console
from rich.text import Text


@pytest.mark.parametrize("i", range(25))
def test_text_length(i):
    assert len(Text("x" * i)) == i


@pytest.mark.parametrize("i", range(25))
def test_render_markup(i):
    console = Console(file=io.StringIO(), width=60, color_system=None)
    console.print(f"[bold]{i}[/bold] items")
    assert f"{i} items" in console.file.getvalue()
"""

TOX = """\
[tox]
envlist = {envs}
skipsdist = true

[testenv]
skip_install = true
deps =
    pytest
{deps}
commands = pytest -q -p no:cacheprovider tests
"""

NOX = """\
import nox

nox.options.default_venv_backend = "uv"


@nox.session
@nox.parametrize("rich", {versions!r})
def tests(session, rich):
    session.install("pytest", f"rich=={{rich}}")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests")
"""


def _fmt(s: dict) -> str:
    return f"{s['median']:8.2f} s  (min {s['min']:.2f}, max {s['max']:.2f}, n={s['n']})"


def _run(cmd, env, cwd) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, shell=isinstance(cmd, str))
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_matrix: {cmd if isinstance(cmd, str) else ' '.join(cmd)} failed "
                         f"({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return took


def main() -> int:
    args = parse_args(__doc__, 5, 1)
    work = tempfile.mkdtemp(prefix="bench-matrix-")
    base = user_env()
    try:
        print("bench_matrix: setting up venvs (pip-omni + pytest, tox, nox, uv) from the index ...", file=sys.stderr)
        omni = os.path.dirname(_venv(os.path.join(work, "omni"), ROOT, "pytest", env=base))
        tools = os.path.dirname(_venv(os.path.join(work, "tools"), "tox", "nox", "uv", env=base))
        proj = os.path.join(work, "proj")
        os.makedirs(os.path.join(proj, "tests"))
        with open(os.path.join(proj, "tests", "test_gen.py"), "w") as f:
            f.write(SUITE)
        envs = [f"r{v.replace('.', '')}" for v in VERSIONS]
        with open(os.path.join(proj, "tox.ini"), "w") as f:
            f.write(TOX.format(envs=",".join(envs),
                               deps="\n".join(f"    {e}: rich=={v}" for e, v in zip(envs, VERSIONS))))
        with open(os.path.join(proj, "noxfile.py"), "w") as f:
            f.write(NOX.format(versions=list(VERSIONS)))
        axis = "rich=" + ",".join(VERSIONS)
        uv = os.path.join(tools, "uv")
        py = sys.executable
        runtime = os.path.join(work, "rt")  # kept cell zygotes: stopped at the end

        def state(tag: str, cold: bool) -> tuple[dict, str]:
            d = tempfile.mkdtemp(prefix=f"{tag}-", dir=work) if cold else os.path.join(work, "state", tag)
            os.makedirs(d, exist_ok=True)
            env = {**base, "PATH": f"{tools}{os.pathsep}{base.get('PATH', '')}",
                   "OMNIPKG_STORE": os.path.join(d, "store"), "UV_CACHE_DIR": os.path.join(d, "uv"),
                   "PIP_CACHE_DIR": os.path.join(d, "pip-cache"), "XDG_STATE_HOME": os.path.join(d, "xdg"),
                   "OMNIPKG_RUNTIME_DIR": runtime}
            return env, d

        def commands(d: str, warm: bool) -> dict:
            loop = " && ".join(f"{uv} run -q --no-project --python {py} --with rich=={v} --with pytest -- "
                               "pytest -q -p no:cacheprovider tests" for v in VERSIONS)
            return {
                "pip-omni --matrix": [os.path.join(omni, "pip-omni"), "run", "--matrix", axis, "--",
                                      "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                "--matrix, no fork": ["env", "OMNIPKG_MATRIX_FORK=0", os.path.join(omni, "pip-omni"), "run",
                                      "--matrix", axis, "--", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                      "tests"],
                "--matrix, not kept": ["env", "OMNIPKG_MATRIX_KEEP=0", os.path.join(omni, "pip-omni"), "run",
                                       "--matrix", axis, "--", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       "tests"],
                "pytest plugin": [os.path.join(omni, "python"), "-m", "pytest", "--omnipkg-matrix", axis,
                                  "-q", "-p", "no:cacheprovider", "tests"],
                "tox -p auto": [os.path.join(tools, "tox"), "run-parallel", "-p", "auto", "-q",
                                "--workdir", os.path.join(d, "tox")],
                "nox (uv)": [os.path.join(tools, "nox"), *(["-R"] if warm else []), "--envdir",
                             os.path.join(d, "nox")],
                "uv run loop": loop,
            }

        names = list(commands(work, True))
        ours = ("pip-omni --matrix", "--matrix, no fork", "--matrix, not kept", "pytest plugin")
        warm: dict[str, list[float]] = {n: [] for n in names}
        ready = {}
        for n in names:  # first runs make each tool's environments and caches
            env, d = state(n.split()[0].strip("-,"), cold=False)
            first = commands(d, warm=False)[n]
            _run(first, env, proj)
            if n in ours:
                wait_compile(env)  # untimed: the bubbles' compile after the first run
            _run(commands(d, warm=True)[n], env, proj)
            ready[n] = (env, d)
        for _ in range(args.reps):
            for n in names:
                env, d = ready[n]
                warm[n].append(_run(commands(d, warm=True)[n], env, proj))
        cold: dict[str, list[float]] = {n: [] for n in names}
        compiles: dict[str, list[list[dict]]] = {n: [] for n in ours}
        for _ in range(args.cold_reps):
            for n in names:
                env, d = state(n.split()[0].strip("-,"), cold=True)
                cold[n].append(_run(commands(d, warm=False)[n], env, proj))
                if n in ours:
                    compiles[n].append(wait_compile(env))  # untimed, before the next command

        res: dict = {"warm": {n: _stats(v) for n, v in warm.items()}, "cold": {n: _stats(v) for n, v in cold.items() if v}}  # --cold-reps 0: warm only
        res["cold_background_compile"] = {n: c for n, c in ((n, compile_rows(v)) for n, v in compiles.items()) if c}
        kinds = [kind for kind in ("warm", "cold") if res[kind]]
        for kind in kinds:
            others = {n: s["median"] for n, s in res[kind].items() if n not in ours}
            fastest = min(others, key=others.get)
            res[f"{kind}_fastest_other"] = fastest
            res[f"{kind}_speedup"] = {n: others[fastest] / res[kind][n]["median"] for n in ours}
        res["goals"] = {"warm": 3.0, "cold": 5.0}
        res["commands"] = {n: c if isinstance(c, str) else " ".join(c) for n, c in commands("<state>", True).items()}
        if args.json:
            json.dump(res, sys.stdout, indent=1)
            print()
            return 0
        print(f"50 tests x rich {', '.join(VERSIONS)}; reps: warm {args.reps}, cold {args.cold_reps} "
              "(shared machine: read ratios)")
        for kind in kinds:
            print(f"{kind}:")
            for n, s in res[kind].items():
                print(f"  {n:<19} {_fmt(s)}")
                bg = res["cold_background_compile"].get(n) if kind == "cold" else None
                if bg:
                    print(f"  {'  + its compile':<19} {_fmt(bg['seconds'])}, CPU {bg['cpu_seconds']['median']:.2f} s, "
                          f"{bg['dists']['median']:.0f} dists compiled, {bg['stored']['median']:.0f} bubbles "
                          "completed with what main had (in the background, after the cells; not timed above)")
            for n, x in res[f"{kind}_speedup"].items():
                goal = res["goals"][kind]
                print(f"  {n}: {x:.2f}x faster than the fastest other ({res[f'{kind}_fastest_other']}); "
                      f"goal {goal:g}x: {'met' if x >= goal else 'missed'}")
        return 0
    finally:
        _stop_zygotes(os.path.join(work, "rt"))
        if args.keep:
            print(f"bench_matrix: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _stop_zygotes(runtime: str) -> None:
    if os.path.isdir(runtime):
        sys.path.insert(0, ROOT)
        from omnipkg_pip.run import cellfork

        cellfork.stop_kept(runtime, kill=True)


if __name__ == "__main__":
    sys.exit(main())
