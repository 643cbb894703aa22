"""Fixtures of the `pip-omni run` tests: a venv whose main environment can run pytest."""

from __future__ import annotations

import sys

import pytest
from conftest import _dist_paths


@pytest.fixture
def venv_with_pytest(omni_venv):
    """``omni_venv`` plus pytest (linked from the test environment, like pip-omni's own
    dependencies), so that `pip-omni run -m pytest` and the plugin's child sessions work."""
    deps = omni_venv.path / "omni-test-deps"
    wanted = ["pytest", "pluggy", "iniconfig", "pygments"]
    if sys.version_info < (3, 11):
        wanted += ["exceptiongroup", "tomli", "typing_extensions"]  # exceptiongroup needs it on 3.9
    for name in wanted:
        for p in _dist_paths(name):
            if not (deps / p.name).exists():
                (deps / p.name).symlink_to(p)
    return omni_venv


@pytest.fixture
def libs(wheel):
    """``lib`` 1.0, 2.0 and 3.0 in the wheelhouse (``lib.V``, ``lib.version()``)."""
    for v in ("1.0", "2.0", "3.0"):
        wheel("lib", v, files={"lib/__init__.py": f"V = {v!r}\ndef version():\n    return V\n"})


@pytest.fixture(autouse=True)
def runtime_dir(monkeypatch):
    """A private, short ``OMNIPKG_RUNTIME_DIR`` per test (unix socket paths are short), so
    the cell zygotes a run keeps (omnipkg_pip/run/cellfork.py) are this test's; they are
    stopped after it (and killed, should one not stop)."""
    import shutil
    import tempfile

    from omnipkg_pip.run import cellfork

    rt = tempfile.mkdtemp(prefix="omz-")
    monkeypatch.setenv("OMNIPKG_RUNTIME_DIR", rt)
    yield rt
    cellfork.stop_kept(rt, kill=True)
    shutil.rmtree(rt, ignore_errors=True)


@pytest.fixture(autouse=True)
def background_compiles(tmp_path):
    """After the test, wait for the compiles a `pip-omni run` of it started in the background
    (omnipkg_pip/writers/later.py) in its store, so none outlives the test's directory."""
    yield
    from omnipkg_pip.writers import later

    later.wait(str(tmp_path / "store"), timeout=120)
