"""``kill -9`` of ``pip-omni doctor --repair`` at spread-out moments loses nothing.

A store with several kinds of damage at once (an object edited through a hard link,
which needs the wheel fetched again; a deleted object; a deleted file; an extra file;
a damaged bubble manifest; a damaged .pyc manifest; staging left in tmp/) is copied
fresh for each point; ``doctor --repair`` runs as a subprocess and is killed with
SIGKILL either after its k-th reported action (plus a jitter of up to 3 ms, to land
inside the next one) or at a fraction of an uninterrupted run's duration. Then:

- nothing was lost: every object and dist directory that existed is in the store or
  set aside under quarantine/;
- one more ``doctor --repair`` leaves a store a full ``doctor`` calls clean, and both
  bubbles import with the right contents.

8 points by default; ``OMNIPKG_CRASH_POINTS`` (default 40) for the ``slow`` version.
"""

from __future__ import annotations

import glob
import os
import random
import re
import subprocess
import sys
import time

import pytest

from omnipkg_hook.store import Store
from omnipkg_pip.integrity import checkup, mainenv

from . import test_doctor as damage
from .conftest import child_env, imports_ok, record_figures

BOTH = ("omt-app==1.0", "omt-tool==1.0")
DAMAGE = (damage.edit_object_in_place, damage.delete_object, damage.delete_dist_file, damage.extra_file,
          damage.damage_bubble_json, damage.damage_pyc_manifest, damage.leftover_staging)  # fmt: skip


def _things(store: Store) -> set[str]:
    """Every object and dist directory, by its store-relative path."""
    out = {os.path.relpath(p, store.root) for p in glob.glob(os.path.join(store.objects, "*", "*"))}
    out |= {os.path.relpath(p, store.root) for p in glob.glob(os.path.join(store.dists, "*", "*", "*"))}
    return out


def _set_aside(store: Store) -> set[str]:
    """The same, for what repairs set aside (``quarantine/<ts>/<path>[.<n>]``)."""
    out = set()
    for q in glob.glob(os.path.join(store.root, "quarantine", "*")):
        for pattern in (("objects", "*", "*"), ("dists", "*", "*", "*")):
            out |= {re.sub(r"\.\d+$", "", os.path.relpath(p, q)) for p in glob.glob(os.path.join(q, *pattern))}
    return out


def _actions(out: str) -> list[str]:
    """The repair lines the command printed as it went (between "repairing:" and the report)."""
    lines = out.splitlines()
    if "repairing:" not in lines:
        return []
    taken = []
    for line in lines[lines.index("repairing:") + 1:]:
        if not line.startswith("  "):
            break
        taken.append(line)
    return taken


def _doctor(store: Store) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "omnipkg_pip", "doctor", "--repair"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=child_env(store))  # fmt: skip


def _kill_after_actions(store: Store, k: int, jitter: float) -> int:
    proc = _doctor(store)
    seen = 0
    try:
        while seen < k:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line.startswith("  ")
        time.sleep(jitter)
    finally:
        proc.kill()
        proc.wait()
    return seen


def _kill_at(store: Store, seconds: float) -> int:
    proc = _doctor(store)
    time.sleep(seconds)
    proc.kill()
    return len(_actions(proc.communicate()[0]))


def _crash_points(stored, tmp_path, points: int, seed: int) -> dict:
    for d in DAMAGE:
        d(stored)
    template = str(tmp_path / "template")
    subprocess.run(["cp", "-a", stored.root, template], check=True)  # hard links and times kept
    before = _things(stored)

    t0 = time.perf_counter()
    proc = _doctor(stored)
    out = proc.communicate()[0]
    duration = time.perf_counter() - t0
    actions = len(_actions(out))
    assert actions >= 8 and "clean now" in out, out

    rng = random.Random(seed)
    figures = {"points": 0, "killed_mid_repair": 0, "failures": 0, "actions_in_a_full_repair": actions}
    for i in range(points):
        store = Store(str(tmp_path / f"crash-{i}"))
        subprocess.run(["cp", "-a", template, store.root], check=True)
        if i % 2:
            seen = _kill_after_actions(store, 1 + (i // 2) % actions, rng.uniform(0, 0.003))
        else:
            seen = _kill_at(store, duration * (i + 1) / (points + 1))
        figures["points"] += 1
        figures["killed_mid_repair"] += 0 < seen < actions
        assert before <= _things(store) | _set_aside(store), f"point {i}: something was lost"

        result = checkup.run(store, repair=True)
        assert result["clean"] or not [p for p in result["remaining"] if p["kind"] != "main-env"], (i, result)
        assert [p for p in checkup.run(store)["problems"] if p["kind"] != "main-env"] == [], i
        assert before <= _things(store) | _set_aside(store), f"point {i}: something was lost"
        imports_ok(store, *BOTH)
    return figures


@pytest.fixture
def no_main(monkeypatch):
    monkeypatch.setattr(mainenv, "check_main", lambda store: ([], []))


def test_kill_doctor_repair_at_spread_out_points(stored, tmp_path, no_main):
    figures = _crash_points(stored, tmp_path, 8, seed=6)
    record_figures("doctor_repair_sigkill", **figures)
    assert figures["points"] == 8 and figures["killed_mid_repair"] >= 3


@pytest.mark.slow
def test_kill_doctor_repair_at_many_points(stored, tmp_path, no_main):
    points = int(os.environ.get("OMNIPKG_CRASH_POINTS", "40"))
    figures = _crash_points(stored, tmp_path, points, seed=int(os.environ.get("OMNIPKG_CRASH_SEED", "1")))
    record_figures("doctor_repair_sigkill_slow", **figures)
    assert figures["points"] == points
