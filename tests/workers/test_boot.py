"""Spawning: the BOOT loader under other interpreters, and import hygiene."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from omnipkg_hook.errors import RemoteError
from omnipkg_hook.workers import protocol as P
from omnipkg_hook.workers import spawn

pytestmark = pytest.mark.timeout(60)

PYENV = os.path.expanduser("~/.pyenv/versions")


def _pyenv(version: str) -> str | None:
    found = sorted(glob.glob(os.path.join(PYENV, f"{version}.*", "bin", "python3")))
    return found[-1] if found else None


def _roundtrip(proc: spawn.Process, code: str):
    proc.conn.send(P.EXECUTE, P.dumps((code,)))
    kind, body = proc.conn.recv()
    assert kind == P.RESULT, P.loads(body)
    return P.loads(body)[0]


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.12", "3.13"])
def test_boot_runs_a_worker_on_an_interpreter_without_pip_omni(wstore, tmp_path, version):
    python = _pyenv(version)
    if python is None:
        pytest.skip(f"no Python {version} under {PYENV}")
    proc = spawn.spawn(python, (), store=wstore, isolate_env=True, cwd=str(tmp_path))
    try:
        info = proc.wait_ready(60)
        assert info["version"].startswith(version + ".")
        assert _roundtrip(proc, "import sys; sys.version_info[:2]") == tuple(map(int, version.split(".")))
        where = _roundtrip(proc, "import omnipkg_hook, sys; (omnipkg_hook.__file__, [p for p in sys.path if 'omnipkg' in p or p == '/work/main'])")
        assert where[0] == os.path.join(spawn.PACKAGE_DIR, "__init__.py")
        assert where[1] == []  # the package was loaded from its directory; nothing was added to sys.path
        assert _roundtrip(proc, "import importlib.util; importlib.util.find_spec('omnipkg_pip')") is None
    finally:
        proc.kill()
        proc.close()


def test_an_interpreter_too_old_says_so(wstore):
    python = _pyenv("3.8")
    if python is None:
        pytest.skip(f"no Python 3.8 under {PYENV}")
    proc = spawn.spawn(python, (), store=wstore)
    with pytest.raises(RemoteError, match="need Python 3.9 or newer") as info:
        proc.wait_ready(60)
    assert info.value.remote_type == "BootError"
    proc.close()


def test_a_missing_interpreter_is_an_interpreter_error(wstore):
    from omnipkg_hook.errors import InterpreterError

    with pytest.raises(InterpreterError, match="cannot run '/nonexistent/python'"):
        spawn.spawn("/nonexistent/python", (), store=wstore)


def test_boot_refuses_a_different_omnipkg_hook_already_imported(wstore, tmp_path):
    fake = tmp_path / "sitecustomize.py"
    (tmp_path / "omnipkg_hook").mkdir()
    (tmp_path / "omnipkg_hook" / "__init__.py").write_text("")
    fake.write_text("import omnipkg_hook\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = spawn.spawn(sys.executable, (), store=wstore, env=env)
    with pytest.raises(RemoteError, match="omnipkg_hook was imported from .* before BOOT could load"):
        proc.wait_ready(60)
    proc.close()


def test_importing_the_hook_does_not_import_the_workers():
    code = ("import sys, omnipkg_hook, omnipkg_hook.workers\n"
            "print(sorted(m for m in sys.modules if m.startswith('omnipkg_hook.workers.')))\n"
            "print('subprocess' in sys.modules, 'omnipkg_pip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "False False"


def test_a_worker_imports_only_what_it_needs():
    code = ("import sys\nfrom omnipkg_hook.workers import worker\n"
            "print(sorted(m for m in sys.modules if m.startswith(('omnipkg', 'subprocess', 'threading', "
            "'dataclasses', 'argparse'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "subprocess" not in out and "omnipkg_pip" not in out and "dataclasses" not in out
    assert "omnipkg_hook.workers.daemon" not in out and "omnipkg_hook.workers.client" not in out


def test_python_m_entry_point_explains_itself():
    out = subprocess.run([sys.executable, "-m", "omnipkg_hook.workers"], capture_output=True, text=True)
    assert out.returncode != 0 and "usage: python -m omnipkg_hook.workers --fd N" in out.stderr
