"""Leases: gc never removes a dist that a live pinned process imports from.

``pin()`` (and ``OMNIPKG_PINS`` at start-up) take the leases themselves; some children
here also call ``leases.hold`` right after ``pin()`` (``HOLD_AFTER_PIN``), which is then
a no-op, so the lease module is proven on its own and through pins.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

from omnipkg_hook import leases
from omnipkg_hook.store import interpreter_key
from omnipkg_pip.commands.uninstall import remove_bubble
from omnipkg_pip.integrity import checkup
from omnipkg_pip.writers.collect import collect, garbage

from .conftest import child_env, dist_dir, record_figures

KEY = interpreter_key()

# What a pinned process does: pin, then hold leases on every dist the pin routes to.
HOLD_AFTER_PIN = """
import omnipkg_hook
from omnipkg_hook import leases, pins
from omnipkg_hook.store import Store
omnipkg_hook.pin({req!r})
leases.hold(Store(), [c.path for c in pins.plan().routed()])
"""


def _spawn(store, code: str, pins=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env(store, pins))  # fmt: skip


def test_hold_in_use_release(stored):
    app = dist_dir(stored, "omt-app")
    assert not leases.in_use(app)
    try:
        assert leases.hold(stored, [app, "dists/omt-lib/1.0/py3-none-any"]) == []
        assert leases.in_use(app) and leases.in_use(dist_dir(stored, "omt-lib"))
        assert not leases.in_use(dist_dir(stored, "omt-tool"))
        assert leases.hold(stored, [app]) == []  # twice is one lease
        assert app in leases.held()
    finally:
        leases.release()
    assert not leases.in_use(app) and leases.held() == []


def test_hold_reports_what_it_cannot_lease(stored):
    gone = os.path.join(stored.dists, "omt-nothing", "1.0", "py3-none-any")
    assert leases.hold(stored, [gone]) == [gone]
    assert leases.held() == []


def test_hold_waits_for_gc_and_sees_the_dist_gone(stored):
    """gc renames a dist away while it holds the exclusive lock: a hold waiting meanwhile finds it gone."""
    app = dist_dir(stored, "omt-app")
    result = []
    with leases.exclusive(app) as free:
        assert free
        t = threading.Thread(target=lambda: result.append(leases.hold(stored, [app])))
        t.start()
        time.sleep(0.2)  # the thread is blocked on the shared lock
        os.rename(app, app + ".gone")
    t.join(10)
    assert result == [[app]] and leases.held() == []


PIN_ONLY = """
import omnipkg_hook
omnipkg_hook.pin({req!r})
"""
AT_START_UP = "# OMNIPKG_PINS={req} in the environment\n"
HOW = {"leases.hold after pin": HOLD_AFTER_PIN, "pin() alone": PIN_ONLY, "OMNIPKG_PINS at start-up": AT_START_UP}


@pytest.mark.parametrize("how", list(HOW))
def test_gc_keeps_a_dist_a_live_process_uses_and_the_process_still_imports_lazily(stored, how):
    """Pin, then the bubble is uninstalled and gc runs, then a submodule is imported lazily."""
    code = HOW[how].format(req="omt-app==1.0") + """
import sys
import omt_app
print("pinned", flush=True)
sys.stdin.readline()
import omt_app.sub, omt_lib.lazy  # only now, after gc ran
print(omt_app.sub.WHO, "|", omt_lib.lazy.WHO, flush=True)
"""
    child = _spawn(stored, code, pins="omt-app==1.0" if how == "OMNIPKG_PINS at start-up" else None)
    try:
        assert child.stdout.readline().strip() == "pinned", child.stderr.read()
        app = dist_dir(stored, "omt-app")
        assert remove_bubble(stored, "omt-app", "1.0", KEY) == [KEY]
        assert garbage(stored)["in_use"] == [app]

        g = collect(stored)

        assert g["in_use"] == [app] and g["dists"] == [] and g["objects"] == []
        assert os.path.isdir(app)
        assert [p for p in checkup.run(stored)["problems"] if p["kind"] != "main-env"] == []
        out, err = child.communicate("go\n", timeout=60)
        assert child.returncode == 0, err
        assert out.strip() == "omt-app 1.0 sub | omt-lib 1.0 lazy"
    finally:
        child.kill()
        child.wait()
    g = collect(stored)  # the process is gone: now the dist goes
    assert g["in_use"] == [] and g["dists"] == [dist_dir(stored, "omt-app")] and g["objects"]
    assert not os.path.exists(dist_dir(stored, "omt-app"))


def test_a_lease_lives_while_a_forked_child_lives_and_is_not_inherited_across_exec(stored):
    app = dist_dir(stored, "omt-app")
    fork = HOLD_AFTER_PIN.format(req="omt-app==1.0") + """
import os, sys, time
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)  # let the parent's pipes close
    if sys.argv[1:]:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(60)
    os._exit(0)
print(pid, flush=True)
"""
    for exec_child, expect in ((False, True), (True, False)):
        args = [sys.executable, "-c", fork] + (["exec"] if exec_child else [])
        proc = subprocess.run(args, capture_output=True, text=True, env=child_env(stored), timeout=60)
        grandchild = int(proc.stdout.strip())
        try:
            assert leases.in_use(app) is expect, "parent exited; a forked child keeps the lease, an exec'd one does not"
        finally:
            os.kill(grandchild, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while leases.in_use(app) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not leases.in_use(app)


def test_the_cost_of_hold_for_five_dists(store, wheel):
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    deps = [f"omt-d{i}" for i in range(4)]
    wheels = [wheel(d, "1.0") for d in deps] + [wheel("omt-five", "1.0", requires=deps)]
    manifest = bubble_from_wheels(store, wheels, "omt-five==1.0")
    dirs = [store.abspath(d["path"]) for d in manifest["dists"].values()]
    assert len(dirs) == 5
    samples = []
    for _ in range(300):
        t0 = time.perf_counter()
        missing = leases.hold(store, dirs)
        samples.append(time.perf_counter() - t0)
        leases.release(dirs)
        assert missing == []
    median = statistics.median(samples) * 1e6
    record_figures("lease_hold_5_dists", median_us=round(median, 1),
                   p90_us=round(sorted(samples)[int(len(samples) * 0.9)] * 1e6, 1), runs=len(samples))
    assert median > 0
