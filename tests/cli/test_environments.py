"""Which environment is main (item 1): --python, VIRTUAL_ENV, the venv running pip-omni, the swap default."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from omnipkg_pip.pythons import interpreters


def _other_venv(tmp_path):
    path = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def test_virtual_env_is_main_and_the_swap_default_does_not_take_it_over(omni_venv, wheel, wheelhouse, tmp_path):
    other = _other_venv(tmp_path)
    env = {"VIRTUAL_ENV": str(other)}
    assert json.loads(omni_venv.run("list", "--json", env=env).stdout)["interpreter"]["executable"] == str(
        other / "bin" / "python")
    # --python names it too, also before the command, as pip's general option
    named = json.loads(omni_venv.cli("--python", str(other / "bin" / "python"), "list", "--json").stdout)
    assert named["interpreter"]["executable"] == str(other / "bin" / "python")
    wheel("venvpkg", "1.0")
    omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "venvpkg", env=env)
    assert list(other.glob("lib/python3.*/site-packages/venvpkg"))
    assert not (omni_venv.site / "venvpkg").exists()

    # a default set by swap applies only where no environment is active or named
    proc = omni_venv.run("swap", "python", str(other / "bin" / "python"))
    assert "the virtual environment running pip-omni is active" in proc.stderr
    listing = json.loads(omni_venv.run("list", "--json").stdout)
    assert listing["interpreter"]["executable"] == str(omni_venv.python)
    assert json.loads(omni_venv.cli("python", "list", "--json").stdout)["main"] == {
        "python": str(omni_venv.python), "why": "the virtual environment running pip-omni"}
    # pip-omni installed as a pipx tool, nothing active: the default is main
    (omni_venv.path / "pipx_metadata.json").write_text("{}")
    assert json.loads(omni_venv.run("list", "--json").stdout)["interpreter"]["executable"] == str(other / "bin" / "python")
    store = omni_venv.env["OMNIPKG_STORE"]
    assert os.path.exists(os.path.join(store, "bin", "python"))
    assert "no default interpreter (was" in omni_venv.run("swap", "python", "--unset").stdout
    assert not os.path.exists(os.path.join(store, "bin", "python"))
    tool_main = json.loads(omni_venv.run("list", "--json").stdout)["interpreter"]["executable"]
    assert tool_main != str(other / "bin" / "python") and not tool_main.startswith(str(omni_venv.path))


def test_a_base_interpreter_only_gets_bubbles_unless_main(omni_venv, wheel, wheelhouse):
    found = interpreters.discover("3.12") or interpreters.discover("3.11")
    if not found:
        pytest.skip("no pyenv or PATH Python 3.11/3.12 base interpreter on this machine")
    base = found[0][0]
    wheel("basepkg", "1.0")
    args = ["install", "--python", base, "--no-index", "-f", str(wheelhouse), "--no-cache-dir", "basepkg", "--json"]
    dry = json.loads(omni_venv.run(*args, "--dry-run").stdout)
    assert [(r["where"], r["action"]) for r in dry] == [("bubble", "would create")]
    assert "is not a virtual environment (--main installs into it)" in dry[0]["reason"]
    out = json.loads(omni_venv.run(*args).stdout)
    assert [(r["name"], r["version"], r["where"], r["action"]) for r in out] == [("basepkg", "1.0", "bubble", "created")]
    main = json.loads(omni_venv.run(*args, "--dry-run", "--main").stdout)
    assert [(r["where"], r["action"]) for r in main] == [("main", "would install")]
