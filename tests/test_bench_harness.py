"""benchmarks/run_all.py: each script gets only the options it takes; failures are counted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each fake benchmark records the argv it was given; argparse rejects what it does not take.
WITH_REPS = '''
import argparse, json, os, sys
ap = argparse.ArgumentParser()
ap.add_argument("--reps", type=int, default=7)
ap.add_argument("--json", action="store_true")
args = ap.parse_args()
open(os.path.join(os.path.dirname(__file__), "argv-reps.txt"), "w").write(json.dumps(sys.argv[1:]))
print(json.dumps({"reps": args.reps}) if args.json else f"reps={args.reps}")
'''
JSON_FILE = '''
import argparse, json, os, sys
ap = argparse.ArgumentParser()
ap.add_argument("--n", type=int, default=5)
ap.add_argument("--json", help="write the rows to this file")
args = ap.parse_args()
open(os.path.join(os.path.dirname(__file__), "argv-file.txt"), "w").write(json.dumps(sys.argv[1:]))
print("a table for people")
if args.json:
    open(args.json, "w").write(json.dumps([{"n": args.n}]))
'''
PLAIN_FAILING = '''
import argparse, json, os, sys
argparse.ArgumentParser().parse_args()
open(os.path.join(os.path.dirname(__file__), "argv-plain.txt"), "w").write(json.dumps(sys.argv[1:]))
sys.exit(3)
'''


def _harness(tmp_path: Path) -> Path:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    shutil.copy(ROOT / "benchmarks" / "run_all.py", bench / "run_all.py")
    for name, text in (("bench_a.py", WITH_REPS), ("bench_b.py", JSON_FILE), ("bench_c.py", PLAIN_FAILING)):
        (bench / name).write_text(text)
    return bench


def _run(bench: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(bench.parent)}
    return subprocess.run([sys.executable, str(bench / "run_all.py"), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def _argv(bench: Path, which: str) -> list[str]:
    return json.loads((bench / f"argv-{which}.txt").read_text())


def test_reps_goes_only_where_it_is_taken(tmp_path):
    bench = _harness(tmp_path)
    proc = _run(bench, "--reps", "3")
    assert proc.returncode == 1  # bench_c fails on purpose
    assert _argv(bench, "reps") == ["--reps", "3"]
    assert _argv(bench, "file") == [] and _argv(bench, "plain") == []
    assert "reps=3" in proc.stdout
    assert "bench_b.py (takes no --reps: its own default counts)" in proc.stderr
    assert "== bench_c.py: FAILED (exit 3)" in proc.stderr and "run_all: failed: bench_c.py" in proc.stderr


def test_json_collects_flag_and_file_styles(tmp_path):
    bench = _harness(tmp_path)
    proc = _run(bench, "--reps", "2", "--json", "--only", "bench_[ab]*")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"bench_a.py": {"reps": 2}, "bench_b.py": [{"n": 5}]}
    argv = _argv(bench, "file")
    assert argv[0] == "--json" and argv[1].startswith(str(tmp_path)) and not os.path.exists(argv[1])
    assert "a table for people" in proc.stderr  # a file-style script's own output stays off stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks"]  # its temp file is gone


def test_all_benchmarks_take_the_options_run_all_gives(tmp_path):
    """The real scripts, asked for --help only: each one's options are read without error."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    found = {Path(p).name: run_all.accepted_options(sys.executable, p) for p in run_all.scripts(None)}
    assert found and all(found.values()), found
    assert found["bench_workers.py"].get("--json") is True and "--reps" not in found["bench_workers.py"]
    assert found["bench_interpreters.py"] == {"--reps": True, "--json": False}
    assert found["bench_workers.py"].get("--omnipkg-python") is True  # the venv bench_hook.py is given too
    assert found["bench_hook.py"].get("--omnipkg-python") is True


def _load(name: str):
    """A benchmark script as a module (their helpers are tested, never their timings)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)  # the scripts put the checkout and tests/ first on sys.path
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_switch_check_rejects_a_loader_that_did_not_switch():
    check = _load("bench_hook")._check_switched
    check("x", {"1.0": ["/s/a-1.0/m.py"], "2.0": ["/s/a-2.0/m.py"]})  # a real switch passes
    for served in ({"1.0": ["/main/m.py"], "2.0": ["/main/m.py"]},  # the same files for both versions
                   {"1.0": ["/s/a-1.0/m.py"]},  # one version only
                   {"1.0": ["/s/a-1.0/m.py", "/main/m.py"], "2.0": ["/s/a-2.0/m.py"]}):  # one not stable
        with pytest.raises(ValueError, match="did not switch"):
            check("omnipkgLoader", served)


def test_adopt_reps_forget_only_other_interpreters_probes(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIPKG_CACHE_DIR", str(tmp_path))
    bench = _load("bench_interpreters")
    folder = tmp_path / "interpreters"
    folder.mkdir()
    ours = folder / os.path.basename(bench.interpreters.interp._cache_path(sys.executable)[0])
    ours.write_text("{}")
    (folder / "other.json").write_text("{}")
    bench._forget_probes(str(tmp_path))
    assert sorted(p.name for p in folder.iterdir()) == [ours.name]
    bench._forget_probes(str(tmp_path / "none"))  # no cache yet: nothing to do, no error


def test_workers_omnipkg_python_that_is_missing_is_reported(tmp_path, capsys):
    bench = _load("bench_workers")
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    assert bench.bench_omnipkg(10, missing) is None
    assert f"no such python {missing!r}" in capsys.readouterr().out
    assert not (tmp_path / "no-venv").exists()
