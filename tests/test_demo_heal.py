"""The auto-heal step of `pip-omni demo`, on a tiny bubble: what the demo shows is what happens.

Hermetic: the wheel is built here, and `doctor --repair` fetches it again from the
wheelhouse (PIP_NO_INDEX / PIP_FIND_LINKS, which pip-omni passes on to pip).
"""

from __future__ import annotations

import os
import subprocess
import sys

from omnipkg_pip.commands import _demo_heal
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers.bubbles import bubble_from_wheels

FILES = {"healme/__init__.py": "from healme.a import A\n", "healme/a.py": "A = 'a'\n",
         "healme/b.py": "B = 'b'\n"}


def test_damage_is_detected_repaired_and_doctor_agrees(store, wheel, wheelhouse, monkeypatch, tmp_path):
    bubble_from_wheels(store, [wheel("healme", "1.0", FILES)], "healme==1.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = _demo_heal.quarantine_entries(store)
    said: list[str] = []
    rows = _demo_heal.run(store, interp.current(), said.append, name="healme", version="1.0", module="healme")
    text = "\n".join(said)
    assert [label for label, _, _ in rows] == [
        "heal: deleted file, next pin()", "heal: edited file, next pin()", "heal: doctor finds the damage",
        "heal: doctor --repair, then pin()", "heal: doctor agrees"]
    assert all(ok for _, ok, _ in rows), text
    assert "damage 1: deleted healme/a.py" in text and "pip-omni: repaired healme 1.0 in the store" in text
    assert "damage 2: appended a line to healme/b.py in place" in text
    assert "StoreCorruptError: cannot repair healme 1.0" in text and "object-corrupt" in text
    # and it is really so, checked here independently of the step's own verdicts
    doctor = subprocess.run([sys.executable, "-m", "omnipkg_pip", "doctor"], capture_output=True, text=True)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    dist = store.abspath(store.load_bubble("healme", "1.0", interp.current().key)["dists"]["healme"]["path"])
    with open(os.path.join(dist, "healme", "b.py")) as f:
        assert f.read() == FILES["healme/b.py"]
    assert _demo_heal.remove_new_quarantine(store, before) >= 1
    assert _demo_heal.quarantine_entries(store) == before


def test_a_bubble_with_no_files_of_its_own_is_not_damaged(store, wheel, monkeypatch):
    bubble_from_wheels(store, [wheel("tiny", "1.0")], "tiny==1.0")
    said: list[str] = []
    rows = _demo_heal.run(store, interp.current(), said.append, name="tiny", version="1.0", module="tiny")
    assert rows == [("auto-heal", False, "skipped: no two files of tiny 1.0 are its own")]
    assert subprocess.run([sys.executable, "-m", "omnipkg_pip", "doctor"], capture_output=True).returncode == 0
