"""`pip-omni run --matrix`: versions × interpreters in parallel, kept output, the table, JSON."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import tree_digest  # noqa: E402
from test_interpreters import need  # noqa: E402

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHER = "3.12" if HERE != "3.12" else "3.13"

CHECK = """\
import sys, lib
print("lib", lib.V, "on", "%d.%d" % sys.version_info[:2])
sys.exit(1 if (lib.V, "%d.%d" % sys.version_info[:2]) == ("2.0", {other!r}) else 0)
"""


def test_three_versions_two_interpreters_one_cell_fails(omni_venv, libs, wheelhouse, tmp_path):
    need(OTHER)
    omni_venv.cli("python", "adopt", OTHER)
    (tmp_path / "check.py").write_text(CHECK.format(other=OTHER))
    before = tree_digest(omni_venv.site)
    proc = omni_venv.run("run", "--matrix", "lib=1.0,2.0,3.0", "--python", f"{OTHER},{HERE}", "--no-index",
                         "-f", str(wheelhouse), "--json", "--", "check.py", check=False, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["cell"], r["python"], r["exit"]) for r in rows] == [
        ("lib=1.0", OTHER, 0), ("lib=1.0", HERE, 0),
        ("lib=2.0", OTHER, 1), ("lib=2.0", HERE, 0),
        ("lib=3.0", OTHER, 0), ("lib=3.0", HERE, 0),
    ]
    assert all(r["pins"] == r["cell"].replace("=", "==") for r in rows)
    assert tree_digest(omni_venv.site) == before  # bubbles, never main

    # everything is stored now: --offline runs; only the failing cell's output is shown
    proc = omni_venv.run("run", "--matrix", "lib=1.0,2.0,3.0", "--python", f"{OTHER},{HERE}", "--offline",
                         "--jobs", "3", "--", "check.py", check=False, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"lib 2.0 on {OTHER}" in proc.stdout
    assert f"lib 1.0 on {HERE}" not in proc.stdout and f"lib 3.0 on {OTHER}" not in proc.stdout
    table = proc.stdout[proc.stdout.index("Cell"):].splitlines()
    assert len(table) == 7 and table[3].split()[:3] == ["lib=2.0", table[3].split()[1], "1"]
    assert table[3].endswith("FAILED") and sum(line.endswith("FAILED") for line in table) == 1


def test_stream_prefixes_and_bad_axes(omni_venv, libs, wheelhouse, tmp_path):
    (tmp_path / "check.py").write_text(CHECK.format(other="none"))
    proc = omni_venv.run("run", "--matrix", "lib=1.0,3.0", "--stream", "--no-index", "-f", str(wheelhouse),
                         "check.py", cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert any(line.startswith(f"[lib=1.0 py{HERE}]") and line.endswith(f"lib 1.0 on {HERE}") for line in lines)
    assert any(line.startswith(f"[lib=3.0 py{HERE}]") and line.endswith(f"lib 3.0 on {HERE}") for line in lines)
    for bad, words in (("lib", "NAME=V1,V2"), ("lib=1.0,x y", "not a version"), ("=1.0", "NAME=V1,V2")):
        proc = omni_venv.run("run", "--matrix", bad, "check.py", check=False, cwd=tmp_path)
        assert proc.returncode == 1 and words in proc.stderr and repr(bad) in proc.stderr
    proc = omni_venv.run("run", "--matrix", "lib=main", "check.py", check=False, cwd=tmp_path)
    assert proc.returncode == 1 and "has no lib" in proc.stderr


SUITE = """\
import lib, pytest

def test_always():
    pass

def test_not_two():
    assert lib.V != "2.0"

@pytest.mark.skipif(lib.V == "1.0", reason="main's")
def test_skipped_on_main():
    pass
"""


def test_pytest_counts_and_main(venv_with_pytest, libs, wheelhouse, tmp_path):
    venv_with_pytest.pip("install", "-q", "--no-index", "-f", str(wheelhouse), "lib==1.0")
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_lib.py").write_text(SUITE)
    proc = venv_with_pytest.run("run", "--matrix", "lib=2.0,3.0,main", "--no-index", "-f", str(wheelhouse), "--json",
                           "--", "-m", "pytest", "-q", "-p", "no:cacheprovider", "suite", check=False, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rows = {r["cell"]: r for r in json.loads(proc.stdout)}
    counts = {c: (r["exit"], r["passed"], r["failed"], r["skipped"]) for c, r in rows.items()}
    assert counts == {"lib=2.0": (1, 2, 1, 0), "lib=3.0": (0, 3, 0, 0), "lib=main": (0, 2, 0, 1)}
    assert rows["lib=main"]["pins"] == ""


def test_bubbles_made_at_once_and_a_failed_one_named(omni_venv, libs, wheelhouse, tmp_path):
    (tmp_path / "check.py").write_text(CHECK.format(other="none"))
    proc = omni_venv.run("run", "--matrix", "lib=1.0,9.9,3.0", "--no-index", "-f", str(wheelhouse), "--json",
                         "check.py", check=False, cwd=tmp_path)
    assert proc.returncode == 1
    # the other cells ran; the one whose bubble failed is a failed row that says why, in its place
    rows = json.loads(proc.stdout)
    assert [(r["cell"], r["exit"]) for r in rows] == [("lib=1.0", 0), ("lib=9.9", 1), ("lib=3.0", 0)]
    assert "error" not in rows[0] and "error" not in rows[2]
    assert rows[1]["error"].startswith("the bubble 'lib==9.9' was not made: ") and "9.9" in rows[1]["error"][40:]
    assert "could not make the bubbles lib==9.9 for Python" in proc.stderr
    assert "pip-omni install --bubble --python" in proc.stderr and "lib==1.0" not in proc.stderr.splitlines()[-1]
    # the others were made all the same: the run works offline once 9.9 is dropped
    proc = omni_venv.run("run", "--matrix", "lib=1.0,3.0", "--offline", "--stream", "check.py", cwd=tmp_path)
    assert f"lib 1.0 on {HERE}" in proc.stdout and f"lib 3.0 on {HERE}" in proc.stdout
