"""The `omnipkg` pytest plugin: a session per cell, one result per test per cell, the grid,
junit, the omnipkg_proxy fixture -- and nothing at all when its options are not used."""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET

from run.test_matrix import SUITE  # the same three tests: always, not on 2.0, skipped on 1.0


def _pytest(venv, *args, cwd, env=None):
    return subprocess.run([str(venv.python), "-m", "pytest", *args], capture_output=True, text=True, cwd=cwd,
                          env={**venv.env, **(env or {})}, timeout=300)


def test_matrix_results_grid_and_junit(venv_with_pytest, libs, wheelhouse, tmp_path):
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_lib.py").write_text(SUITE)
    junit = tmp_path / "out.xml"
    proc = _pytest(venv_with_pytest, "--omnipkg-matrix", "lib=1.0,2.0", f"--junitxml={junit}", "-rA", "suite",
                   cwd=tmp_path, env={"PIP_FIND_LINKS": str(wheelhouse)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "FAILED suite/test_lib.py::test_not_two[lib=2.0]" in out
    assert "PASSED suite/test_lib.py::test_not_two[lib=1.0]" in out
    assert "SKIPPED" in out and "1 failed, 4 passed, 1 skipped" in out
    grid = out[out.index("omnipkg matrix:"):].splitlines()
    assert grid[1].split() == ["test", "lib=1.0", "lib=2.0"]
    assert grid[2].split() == ["suite/test_lib.py::test_not_two", "passed", "FAILED"]
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert sorted(cases) == sorted(f"{t}[lib={v}]" for t in ("test_always", "test_not_two", "test_skipped_on_main")
                                   for v in ("1.0", "2.0"))
    failed = sorted(n for n, c in cases.items() if c.find("failure") is not None)
    assert failed == ["test_not_two[lib=2.0]"]
    assert cases["test_skipped_on_main[lib=1.0]"].find("skipped") is not None


def test_matrix_offline_refuses_and_names_the_command(venv_with_pytest, libs, tmp_path):
    (tmp_path / "test_one.py").write_text("def test_x():\n    pass\n")
    proc = _pytest(venv_with_pytest, "--omnipkg-matrix", "lib=1.0", "--omnipkg-offline", "test_one.py", cwd=tmp_path)
    assert proc.returncode != 0
    assert "pip-omni install --bubble" in proc.stdout + proc.stderr


INERT = """\
import sys

def test_plugin_loaded_and_inert(request):
    assert request.config.pluginmanager.has_plugin("omnipkg")
    assert "omnipkg_hook.pins" not in sys.modules
    assert "omnipkg_hook.store" not in sys.modules  # nor the store module (and its json)
    assert "omnipkg_pip.run._matrix_session" not in sys.modules
    assert not [f for f in sys.meta_path if type(f).__module__.startswith("omnipkg")]
"""


def test_plugin_is_inert_when_unused(venv_with_pytest, tmp_path):
    (tmp_path / "test_inert.py").write_text(INERT)
    proc = _pytest(venv_with_pytest, "-q", "-p", "no:cacheprovider", "test_inert.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    proc = _pytest(venv_with_pytest, "--help", cwd=tmp_path)
    assert "--omnipkg-matrix" in proc.stdout


PROXY = """\
def test_two_versions_in_one_test(omnipkg_proxy):
    assert omnipkg_proxy("lib==2.0").call("lib:version") == "2.0"
    assert omnipkg_proxy("lib==3.0").call("lib:version") == "3.0"
    assert omnipkg_proxy("lib==2.0").pid == omnipkg_proxy("lib==2.0").pid  # warm: the same worker
"""


def test_omnipkg_proxy_fixture(venv_with_pytest, libs, wheelhouse, tmp_path):
    venv_with_pytest.run("install", "--bubble", "--no-index", "-f", str(wheelhouse), "lib==2.0", "lib==3.0")
    (tmp_path / "test_proxy.py").write_text(PROXY)
    proc = _pytest(venv_with_pytest, "-q", "-p", "no:cacheprovider", "test_proxy.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.listdir(venv_with_pytest.site)  # (sanity) and nothing of lib in main:
    assert not [p for p in os.listdir(venv_with_pytest.site) if p.startswith("lib")]


def test_child_sessions_get_the_users_arguments_without_ours(monkeypatch):
    from omnipkg_pip.run._matrix_session import _child_args

    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    args = ("--omnipkg-matrix", "rich=1.0", "-q", "--junitxml=x.xml", "--junit-xml", "y.xml", "--omnipkg-offline",
            "--omnipkg-jobs=2", "-k", "fast", "tests")
    assert _child_args(args) == ["-q", "-k", "fast", "tests", "-p", "no:cacheprovider"]
    assert _child_args(("--lf", "tests")) == ["--lf", "tests"]  # the user's cache options keep the cache


EARLY_CONFTEST = """\
import os, time

def pytest_sessionstart(session):
    if not session.config.pluginmanager.has_plugin("omnipkg-matrix"):
        return  # a cell
    marks = os.environ["MARKS"]
    for _ in range(int(os.environ.get("WAIT", "200"))):
        if os.listdir(marks):
            break
        time.sleep(0.05)
    open(os.path.join(os.environ["OUT"], "seen-" + ",".join(sorted(os.listdir(marks)))), "w").close()
    if os.environ.get("FAIL"):
        raise RuntimeError("the session start failed")
"""
EARLY_TEST = """\
import os, time, lib

def test_marks():
    open(os.path.join(os.environ["MARKS"], lib.V), "w").write(str(os.getpid()))
    time.sleep(float(os.environ.get("SLEEP", "0")))
    open(os.path.join(os.environ["OUT"], "finished-" + lib.V), "w").close()
"""


def _early(tmp_path):
    (tmp_path / "conftest.py").write_text(EARLY_CONFTEST)
    (tmp_path / "test_marks.py").write_text(EARLY_TEST)
    for d in ("marks", "out"):
        (tmp_path / d).mkdir()
    return {"MARKS": str(tmp_path / "marks"), "OUT": str(tmp_path / "out")}


def test_the_cells_run_while_the_session_starts(venv_with_pytest, libs, wheelhouse, tmp_path):
    """The cells start with the session, not after the other plugins' session start and the
    collection: the parent's ``pytest_sessionstart`` (here waiting up to 10 s) sees a cell's
    test run; their reports are replayed as before."""
    env = {**_early(tmp_path), "PIP_FIND_LINKS": str(wheelhouse)}
    proc = _pytest(venv_with_pytest, "--omnipkg-matrix", "lib=1.0,2.0", "-q", "-p", "no:cacheprovider",
                   "test_marks.py", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    (seen,) = [p.name for p in (tmp_path / "out").glob("seen-*")]
    assert seen != "seen-", "no cell ran before the test loop"
    assert sorted(p.name for p in (tmp_path / "out").glob("finished-*")) == ["finished-1.0", "finished-2.0"]


def test_a_session_that_ends_before_its_test_loop_ends_its_cells(venv_with_pytest, libs, wheelhouse, tmp_path):
    """A session start that fails after the cells started: they are killed (a zygote not
    kept would leave them running), the session ends at once with pytest's error."""
    import time

    env = {**_early(tmp_path), "PIP_FIND_LINKS": str(wheelhouse), "FAIL": "1", "SLEEP": "60",
           "OMNIPKG_MATRIX_KEEP": "0"}
    t0 = time.monotonic()
    proc = _pytest(venv_with_pytest, "--omnipkg-matrix", "lib=1.0,2.0", "-q", "-p", "no:cacheprovider",
                   "test_marks.py", cwd=tmp_path, env=env)
    assert proc.returncode != 0 and "the session start failed" in proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 50, "the session waited for its cells"
    pids = [int((tmp_path / "marks" / v).read_text()) for v in os.listdir(tmp_path / "marks")]
    assert pids
    for pid in pids:
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z", f"cell {pid} still runs"
    assert not list((tmp_path / "out").glob("finished-*"))


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
