"""Console scripts of bubbles run their own version, from PATH after pin(), in any interpreter."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest

import omnipkg_hook
from omnipkg_hook.scripts import write_bubble_scripts
from omnipkg_hook.store import interpreter_key

from .conftest import module_files

KEY = interpreter_key()

TOOL = """
VERSION = {version!r}

def main():
    import sys, importlib.metadata as md, importlib.util
    others = [m for m in ("omt_b",) if importlib.util.find_spec(m)]
    extra = [__import__(m).VERSION for m in others]
    print(VERSION, md.version("omt-a"), *extra, importlib.util.find_spec("pytest") is not None, sys.argv[1:])
    return 3
"""


@pytest.fixture
def tool(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", {"omt_a/__init__.py": TOOL.format(version="1.0")}))
    manifest = bubble("omt-a==2.0", ("omt-a", "2.0", {"omt_a/__init__.py": TOOL.format(version="2.0")},
                                     {"entry_points": {"console_scripts": {"omt-a-tool": "omt_a:main"}}}))  # fmt: skip
    bubble("omt-b==1.0", ("omt-b", "1.0", module_files("omt_b", "1.0")))
    return manifest


def _env(store, main_site, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH", "OMNIPKG_STORE")}
    env["PYTHONPATH"] = str(main_site.path)
    env.update(extra)
    return env


def test_launcher_is_written_atomically_and_runs_its_own_version(store, tool, main_site):
    script = os.path.join(store.bubble_bin("omt-a", "2.0", KEY), "omt-a-tool")
    mode = os.stat(script).st_mode
    assert stat.S_IMODE(mode) == 0o755
    with open(script) as f:
        assert f.readline() == f"#!{sys.executable}\n"
    assert not [n for n in os.listdir(store.tmp) if n.startswith("scripts-")]  # staging cleaned up
    proc = subprocess.run([script, "x", "--y"], capture_output=True, text=True, env=_env(store, main_site))
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "2.0 2.0 True ['x', '--y']\n", "")


def test_launcher_keeps_the_callers_other_pins(store, tool, main_site):
    script = os.path.join(store.bubble_bin("omt-a", "2.0", KEY), "omt-a-tool")
    env = _env(store, main_site, OMNIPKG_PINS="omt-a==1.0,omt-b==1.0", OMNIPKG_STORE=store.root)
    proc = subprocess.run([script], capture_output=True, text=True, env=env)
    assert proc.stdout == "2.0 2.0 1.0 True []\n", proc.stderr


def test_pin_puts_the_bubble_scripts_first_on_path(store, tool, main_site, monkeypatch):
    monkeypatch.setenv("PATH", os.defpath)
    omnipkg_hook.pin("omt-a==2.0")
    found = shutil.which("omt-a-tool")
    assert found == os.path.join(store.bubble_bin("omt-a", "2.0", KEY), "omt-a-tool")
    proc = subprocess.run(["omt-a-tool"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(main_site.path)})
    assert proc.stdout == "2.0 2.0 True []\n", proc.stderr
    with omnipkg_hook.using("omt-a==1.0"):
        assert shutil.which("omt-a-tool") is None
    assert shutil.which("omt-a-tool") == found


def test_launcher_works_in_an_interpreter_without_omnipkg_hook(store, tool, main_site, tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")
    assert subprocess.run([python, "-c", "import omnipkg_hook"], capture_output=True, cwd=tmp_path).returncode == 1
    (script,) = write_bubble_scripts(store, tool, python)
    with open(script) as f:
        assert f.readline() == f"#!{python}\n"
    proc = subprocess.run([script], capture_output=True, text=True, env=_env(store, main_site))
    # pytest is not importable there: no site-packages of this environment was put on sys.path
    assert proc.stdout == "2.0 2.0 False []\n", proc.stderr


def test_launcher_fails_clearly_when_its_bubble_is_gone(store, tool, main_site):
    script = os.path.join(store.bubble_bin("omt-a", "2.0", KEY), "omt-a-tool")
    os.unlink(store.bubble_path("omt-a", "2.0", KEY))
    proc = subprocess.run([script], capture_output=True, text=True, env=_env(store, main_site))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("pip-omni: error: cannot run 'omt_a:main' with omt-a==2.0: no stored version of "
                                  "'omt-a' satisfies 'omt-a==2.0'")  # fmt: skip


def test_long_interpreter_paths_get_a_sh_trampoline(store, tool, main_site, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e f" * 20)
    deep.mkdir(parents=True)
    python = deep / "python"
    python.symlink_to(sys.executable)
    (script,) = write_bubble_scripts(store, tool, str(python))
    with open(script) as f:
        assert f.readline() == "#!/bin/sh\n"
    proc = subprocess.run([script], capture_output=True, text=True, env=_env(store, main_site))
    assert proc.stdout.startswith("2.0 2.0"), proc.stderr
