"""Interpreters: adopt/list/forget/swap, shims, per-interpreter bubbles, the multiverse run.

Uses the interpreters installed on the machine (pyenv, PATH) and skips, naming the
missing one, elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from omnipkg_pip.pythons import interpreters


def _find(version: str) -> str | None:
    try:
        found = interpreters.discover(version)
    except Exception:
        return None
    return found[0][0] if found else None


def need(version: str) -> str:
    path = _find(version)
    if path is None:
        pytest.skip(f"Python {version} is not installed on this machine (pyenv or PATH)")
    return path


CURRENT = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHER = "3.9" if CURRENT != "3.9" else "3.12"


def _marky(wheel):
    wheel("marky", "1.0", requires=['dep==1.0; python_version < "3.10"', 'dep==2.0; python_version >= "3.10"'])
    wheel("dep", "1.0", files={"dep/__init__.py": "__version__ = '1.0'\n"})
    wheel("dep", "2.0", files={"dep/__init__.py": "__version__ = '2.0'\n"})


def test_adopt_list_forget_round_trip(omni_venv):
    path = need("3.9")
    out = json.loads(omni_venv.cli("python", "adopt", "3.9", "--json").stdout)
    assert out["path"] == path and out["version"].startswith("3.9.") and out["source"] == "pyenv" or out["path"] == path
    listed = json.loads(omni_venv.cli("python", "list", "--json").stdout)
    (row,) = listed["interpreters"]
    assert (row["path"], row["default"], row["status"], row["bubbles"]) == (path, False, "ok", 0)
    omni_venv.cli("python", "forget", "3.9")
    assert json.loads(omni_venv.cli("python", "list", "--json").stdout)["interpreters"] == []


@pytest.mark.parametrize("spec, message", [
    ("3.8", "pip-omni: error: Python 3.8 is not supported"),
    ("3.14", "pip-omni: error: Python 3.14 is not supported"),
    ("banana", "pip-omni: error: 'banana' is neither a Python version nor a path to an interpreter"),
    ("/nonexistent/python3", "pip-omni: error: '/nonexistent/python3' is not an executable interpreter"),
])
def test_adopt_rejects_what_is_not_supported(omni_venv, spec, message):
    proc = omni_venv.cli("python", "adopt", spec, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == message
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr


def test_vanished_interpreter_is_reported_not_crashed_on(omni_venv, tmp_path):
    real = need("3.9")
    link = tmp_path / "py39"
    link.symlink_to(real)
    omni_venv.cli("python", "adopt", str(link))
    link.unlink()
    (row,) = json.loads(omni_venv.cli("python", "list", "--json").stdout)["interpreters"]
    assert row["status"] == "missing"
    proc = omni_venv.run("list", "--python", str(link), check=False)
    assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_swap_back_and_forth_keeps_every_command_working(omni_venv):
    a, b = need("3.9"), need("3.12")
    store = omni_venv.env["OMNIPKG_STORE"]
    # The default applies where no environment is active: pip-omni as a pipx tool (a venv
    # running pip-omni is otherwise main itself; tests/cli/test_environments.py).
    (omni_venv.path / "pipx_metadata.json").write_text("{}")
    for _ in range(3):
        for version, path in (("3.9", a), ("3.12", b)):
            proc = omni_venv.run("swap", "python", version)
            assert f'export PATH="{store}/bin:$PATH"' in proc.stdout
            shim = subprocess.run([os.path.join(store, "bin", "python"), "-c", "import sys; print(sys.executable)"],
                                  capture_output=True, text=True, check=True)
            assert shim.stdout.strip() == path
            pip = subprocess.run([os.path.join(store, "bin", "pip"), "--version"], capture_output=True, text=True)
            assert f"python {version}" in pip.stdout
            listing = json.loads(omni_venv.run("list", "--json").stdout)
            assert listing["interpreter"]["executable"] == path
            assert json.loads(omni_venv.cli("python", "list", "--json").stdout)["default"] == path
    omni_venv.run("--version")


def test_swap_without_a_version_lists_choices_and_exits_2_without_a_terminal(omni_venv):
    need("3.9")
    omni_venv.cli("python", "adopt", "3.9")
    proc = omni_venv.run("swap", "python", check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "1) Python 3.9." in proc.stdout
    assert "pip-omni swap python VERSION" in proc.stderr


def test_per_interpreter_bubbles_resolve_and_compile_for_each(omni_venv, wheel, wheelhouse):
    need(OTHER)
    _marky(wheel)
    omni_venv.cli("python", "adopt", OTHER)
    for py in (OTHER, None):
        args = ["install", "--bubble", "--no-index", "-f", str(wheelhouse), "marky"]
        omni_venv.run(*args, *(["--python", py] if py else []))
    listing = json.loads(omni_venv.run("list", "--all-interpreters", "--json").stdout)
    keys = sorted(b["interpreter"] for b in listing["bubbles"] if b["name"] == "marky")
    assert len(keys) == 2
    store = omni_venv.env["OMNIPKG_STORE"]
    versions = {}
    for key in keys:
        m = json.load(open(os.path.join(store, "bubbles", "marky", "1.0", key + ".json")))
        versions[m["interpreter"]["version"][:4].rstrip(".")] = m["dists"]["dep"]["version"]
    expect_other = "1.0" if OTHER == "3.9" else "2.0"
    assert versions[OTHER] == expect_other
    # the shared pure dist got a pyc per interpreter
    marky_dir = os.path.join(store, "dists", "marky", "1.0", "py3-none-any")
    pycs = sorted(f for f in os.listdir(os.path.join(marky_dir, "marky", "__pycache__")))
    assert len(pycs) == 2
    assert sorted(f for f in os.listdir(marky_dir) if f.startswith("omnipkg-pyc-")) == sorted(
        f"omnipkg-pyc-{p.split('.')[1]}.json" for p in pycs)


def test_multiverse_run_with_one_failing_interpreter(omni_venv, wheel, wheelhouse, tmp_path):
    need("3.9")
    need("3.12")
    _marky(wheel)
    for v in ("3.9", "3.12"):
        omni_venv.cli("python", "adopt", v)
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, dep\n"
        "print('dep', dep.__version__, 'on', sys.version_info[:2])\n"
        "sys.exit(4 if sys.version_info[:2] == (3, 12) else 0)\n"
    )
    marker = tmp_path / "ran"
    guard = tmp_path / "guard.py"
    guard.write_text(f"open({str(marker)!r}, 'w').close()\n")

    proc = omni_venv.run("run", "--python", "3.9,3.12", "--pin", "marky==1.0", "--offline", "--", str(guard),
                         check=False)
    assert proc.returncode == 1
    assert "not stored for Python 3.9" in proc.stderr and "pip-omni install --bubble --python" in proc.stderr
    assert not marker.exists()  # reported before anything ran

    proc = omni_venv.run("run", "--python", "3.9,3.12", "--pin", "marky==1.0", "--install", "--no-index",
                         "-f", str(wheelhouse), "--json", "--", str(script), check=False)
    assert proc.returncode == 4  # the first non-zero exit status
    table = json.loads(proc.stdout)
    assert [(r["python"], r["exit"]) for r in table] == [("3.9", 0), ("3.12", 4)]
    assert "[3.9] dep 1.0 on (3, 9)" in proc.stderr
    assert "[3.12] dep 2.0 on (3, 12)" in proc.stderr


def test_a_39_worker_called_from_here_runs_39_with_39_bubbles(store, wheel, wheelhouse, monkeypatch):
    import tempfile

    from omnipkg_hook.workers import DaemonClient, DaemonProxy, WorkerPool
    from omnipkg_pip.pythons import interp
    from omnipkg_pip.writers import bubbles

    path = need("3.9")
    if CURRENT == "3.9":
        pytest.skip("this test runs on 3.9 itself; it needs another interpreter to call from")
    _marky(wheel)
    interpreters.adopt(store, "3.9")
    bubbles.bubble_from_wheels(store, sorted(wheelhouse.glob("*.whl")), "marky==1.0", interp.inspect(path))
    probe = "import sys, dep; (sys.version_info[:2], dep.__version__, dep.__file__)"

    pool = WorkerPool(store=store.root)
    try:
        version, dep, where = pool.get("marky==1.0", python="3.9").execute(probe).value
    finally:
        pool.close()
    assert (version, dep) == ((3, 9), "1.0") and where.startswith(store.root)

    runtime = tempfile.mkdtemp(prefix="omt-", dir="/tmp")  # AF_UNIX paths must stay short
    monkeypatch.setenv("OMNIPKG_RUNTIME_DIR", runtime)
    client = DaemonClient(store.root, runtime_dir=runtime)
    try:
        proxy = DaemonProxy(client, "marky==1.0", python="3.9")
        assert proxy.call("platform:python_version").startswith("3.9.")
        assert proxy.execute(probe).value[:2] == ((3, 9), "1.0")
    finally:
        client.stop(timeout=10)
        client.close()
        shutil.rmtree(runtime, ignore_errors=True)
