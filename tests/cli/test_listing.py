"""list/show/freeze/uninstall with pip's options and the bubbles (item 7)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def two_bubbles(omni_venv, wheel, wheelhouse):
    for v in ("1.0", "2.0", "2.1", "3.0", "4.0"):
        wheel("lst", v)
    wheel("solo", "1.0")
    omni_venv.pip("install", "-q", "--no-index", "-f", str(wheelhouse), "lst==3.0")
    for req in ("lst==2.0", "lst==2.1", "lst==1.0"):
        omni_venv.run("install", "--no-index", "-f", str(wheelhouse), req)
    return omni_venv


def test_list_takes_pips_options_and_marks_bubbles(two_bubbles, wheelhouse):
    venv = two_bubbles
    freeze = venv.run("list", "--format=freeze").stdout.splitlines()
    at = freeze.index("# pip-omni bubbles (make them again with `pip-omni install --bubble -r FILE`):")
    assert "lst==3.0" in freeze[:at] and freeze[at + 1:] == ["lst==1.0", "lst==2.0", "lst==2.1"]
    entries = json.loads(venv.run("list", "--format", "json").stdout)
    assert {"name": "lst", "version": "3.0"} in entries
    assert [(e["version"], e["bubble"]) for e in entries if e.get("bubble")] == [("1.0", True), ("2.0", True), ("2.1", True)]
    outdated = venv.run("list", "-o", "--no-index", "-f", str(wheelhouse)).stdout
    assert "lst" in outdated and "4.0" in outdated and "bubbles are not shown with --outdated" in outdated
    table = venv.run("list", "--not-required").stdout
    assert "bubble (1 dist)" in table
    assert venv.run("list", "--bubbles", "--format=freeze").stdout.splitlines()[-3:] == ["lst==1.0", "lst==2.0", "lst==2.1"]


def test_show_files_and_several_names(two_bubbles):
    venv = two_bubbles
    out = venv.run("show", "-f", "lst").stdout
    assert "Name: lst" in out and "Files:" in out  # pip's part, for main
    assert "bubble:  2.1" in out and "lst/__init__.py" in out.split("files of lst 2.1")[1]
    shown = json.loads(venv.run("show", "lst", "pip", "--json").stdout)
    assert [s["name"] for s in shown] == ["lst", "pip"]
    proc = venv.run("show", "lst", "nosuch", check=False)
    assert proc.returncode == 1 and "Name: lst" not in proc.stdout and "'nosuch' is neither" in proc.stderr


def test_freeze_bubbles_round_trips_through_install_r(two_bubbles, wheelhouse, tmp_path):
    venv = two_bubbles
    text = venv.run("freeze", "--bubbles").stdout
    assert text.splitlines()[1:] == ["lst==1.0", "lst==2.0", "lst==2.1"]
    req = tmp_path / "bubbles.txt"
    req.write_text(text)
    venv.run("uninstall", "--bubbles", "-y", "lst==1.0", "lst==2.0")  # versions: bubbles only, main kept
    out = json.loads(venv.run("install", "--bubble", "--no-index", "-f", str(wheelhouse), "-r", str(req), "--json").stdout)
    assert sorted((r["version"], r["action"]) for r in out) == [("1.0", "created"), ("2.0", "created"), ("2.1", "present")]
    assert "lst==3.0" in venv.run("freeze").stdout


def test_uninstall_as_pip_plus_bubbles(two_bubbles, wheel, wheelhouse):
    venv = two_bubbles
    proc = venv.run("uninstall", "lst==2.*")
    assert proc.stdout.count("Removed bubble lst") == 2
    proc = venv.run("uninstall", "-y", "lst")  # main's copy, as pip; the 1.0 bubble is kept, saying so
    assert "lst==3.0" not in venv.run("freeze").stdout
    assert "kept 1 bubble of lst (1.0)" in proc.stderr
    proc = venv.run("uninstall", "lst", check=False, stdin=subprocess_devnull())  # only bubbles left: asks
    assert proc.returncode == 1 and "not asking without a terminal" in proc.stderr and "-y" in proc.stderr
    venv.run("uninstall", "lst", "-y")
    assert json.loads(venv.run("list", "--json").stdout)["bubbles"] == []


def subprocess_devnull():
    import subprocess

    return subprocess.DEVNULL
