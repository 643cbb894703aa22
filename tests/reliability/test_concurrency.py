"""Many processes at once on one store: installs of overlapping bubbles, gc, pinned imports.

For ``OMNIPKG_CONCURRENCY_SECONDS`` (8 by default, 60 in the ``slow`` version):

- 2 installers, each in a loop, install then uninstall bubbles that overlap the stable
  ones (``omt-lib`` 1.0) and each other (the ``omt-app`` 2.0 dist is in ``omt-app==2.0``
  and ``omt-more==1.0``): one runs the commands
  ``pip-omni install --bubble`` / ``uninstall`` (``pip wheel`` from local wheels when gc
  took the dists away, else made from the store), the other the store side of an
  install straight from the wheels (ingest, bubble manifest), which turns over faster;
- 1 gc loop: ``gc`` as fast as the writer lock allows;
- 3 importers: two start a fresh interpreter per import with ``OMNIPKG_PINS`` set
  (the stable bubbles ``omt-app==1.0``, ``omt-tool==1.0``) and import the package and
  its submodules; one pins the bubbles the installers come and go with, in one
  process, holds leases as pins will, waits, then imports submodules lazily.

Asserted: no import of a pinned bubble ever fails (a pin refused because its bubble
was uninstalled at that moment is counted apart, it is not a failure), gc never
removed a dist a live process held, the store is doctor-clean at the end. The
figures go to the figures file (see conftest.FIGURES).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from omnipkg_pip.integrity import checkup
from omnipkg_pip.writers.collect import collect

from .conftest import app_files, child_env, lib_files, record_figures

INSTALLER = r"""
import contextlib, glob, io, json, os, sys, time
from omnipkg_pip.cli import main
from omnipkg_pip.writers.bubbles import bubble_from_wheels
from omnipkg_pip.commands.uninstall import remove_bubble
from omnipkg_hook.store import Store, interpreter_key
stop, how, wheelhouse, reqs = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
WHEELS = {"omt-extra==1.0": ["omt_lib-1.0"], "omt-more==1.0": ["omt_app-2.0", "omt_lib-1.0"]}
done = failed = 0
errors = []

def install(req):
    if how == "cli":  # the command, with pip fetching the wheels whenever gc took the dists away
        return main(["install", "-q", "--bubble", "--no-index", "-f", wheelhouse, req])
    # the store side of an install, straight from local wheels: the root's and WHEELS[root]'s
    name, version = req.split("==")
    prefixes = tuple(p + "-" for p in [name.replace("-", "_") + "-" + version, *WHEELS.get(req, [])])
    wheels = [w for w in glob.glob(os.path.join(wheelhouse, "*.whl")) if os.path.basename(w).startswith(prefixes)]
    bubble_from_wheels(Store(), wheels, req)
    return 0

def uninstall(req):
    if how == "cli":
        return main(["uninstall", "-q", req])
    name, version = req.split("==")
    return 0 if remove_bubble(Store(), name, version, interpreter_key()) else 1

while time.time() < stop:
    for req in reqs:
        for step in (install, uninstall):
            if step is install and time.time() >= stop:
                break
            said = io.StringIO()
            try:
                with contextlib.redirect_stderr(said):
                    code = step(req)
            except SystemExit as e:
                code = e.code
            except Exception as e:
                code, errors = 99, errors + [repr(e)]
            done += 1
            failed += code != 0
            if code:
                errors.append(f"{step.__name__} {req}: exit {code}: {said.getvalue()[-600:]}")
            time.sleep(0.2)  # let the pinner find it installed now and then
print(json.dumps({"commands": done, "failed": failed, "errors": errors[:5]}))
"""

GC = r"""
import json, sys, time
from omnipkg_hook.store import Store
from omnipkg_pip.writers.collect import collect
stop = float(sys.argv[1])
runs = dists = kept = 0
while time.time() < stop:
    g = collect(Store())
    runs, dists, kept = runs + 1, dists + len(g["dists"]), kept + len(g["in_use"])
    time.sleep(0.01)
print(json.dumps({"runs": runs, "dists_removed": dists, "kept_in_use": kept}))
"""

# A fresh interpreter per import: OMNIPKG_PINS is applied at start-up by the .pth.
FRESH = r"""
import json, os, subprocess, sys, time
stop, pins, mod = float(sys.argv[1]), sys.argv[2], sys.argv[3]
name, version = pins.split("==")
code = (f"import {mod}, {mod}.sub, omt_lib, omt_lib.lazy\n"
        f"assert {mod}.VERSION == {version!r} and {mod}.sub.WHO == {name + ' ' + version + ' sub'!r}\n"
        f"assert omt_lib.lazy.WHO == 'omt-lib 1.0 lazy'")
env = dict(os.environ, OMNIPKG_PINS=pins)
attempts = failures = 0
errors = []
while time.time() < stop:
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    attempts += 1
    if p.returncode != 0:
        failures += 1
        errors.append(p.stderr[-500:])
print(json.dumps({"imports": attempts, "failures": failures, "errors": errors[:3]}))
"""

# One process: pin the coming-and-going bubbles with replace, hold leases (as pins will), wait, import lazily.
PINNER = r"""
import importlib, json, sys, time
import omnipkg_hook
from omnipkg_hook import leases, pins
from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store
stop, reqs = float(sys.argv[1]), sys.argv[2:]
attempts = failures = refused = 0
errors = []
while time.time() < stop:
    for req in reqs:
        name, version = req.split("==")
        mod = name.replace("-", "_")
        try:
            omnipkg_hook.pin(req, replace=True)
            if leases.hold(Store(), [c.path for c in pins.plan().routed()]):
                raise OmnipkgError("a routed dist went away before its lease")  # pins would re-resolve
        except OmnipkgError as e:  # not installed at this moment (or going away): not an import failure
            refused += 1
            omnipkg_hook.unpin()
            time.sleep(0.02)
            continue
        time.sleep(0.3)  # meanwhile it may be uninstalled and collected
        attempts += 1
        try:
            for m in [k for k in sys.modules if k == mod or k.startswith(mod + ".") or k.startswith("omt_lib")]:
                del sys.modules[m]
            m = importlib.import_module(mod)
            sub = importlib.import_module(mod + ".sub")
            assert (m.VERSION, sub.WHO) == (version, f"{name} {version} sub"), (m.VERSION, sub.WHO)
            assert importlib.import_module("omt_lib.lazy").WHO.startswith("omt-lib ")
        except Exception as e:
            failures += 1
            errors.append(repr(e))
        omnipkg_hook.unpin()
        leases.release()
print(json.dumps({"imports": attempts, "failures": failures, "refused": refused, "errors": errors[:3]}))
"""


def _run(store, w, wheelhouse, seconds: float) -> dict:
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    lib = w("omt-lib", "1.0", lib_files("1.0"))
    w("omt-lib", "2.0", lib_files("2.0"))
    bubble_from_wheels(store, [w("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib>=1"]), lib],
                       "omt-app==1.0")  # fmt: skip
    bubble_from_wheels(store, [w("omt-tool", "1.0", app_files("omt-tool", "1.0"), requires=["omt-lib"]), lib],
                       "omt-tool==1.0")  # fmt: skip
    w("omt-app", "2.0", app_files("omt-app", "2.0"), requires=["omt-lib==1.0"])
    w("omt-tool", "2.0", app_files("omt-tool", "2.0"), requires=["omt-lib>=2"])
    w("omt-extra", "1.0", app_files("omt-extra", "1.0"), requires=["omt-lib==1.0"])
    w("omt-more", "1.0", app_files("omt-more", "1.0"), requires=["omt-app==2.0"])

    env = child_env(store, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), PIP_CONFIG_FILE=os.devnull)
    start = time.time() + 1.0  # let everyone start before the clock runs
    stop = str(start + seconds)
    procs = {
        "installer-1": [INSTALLER, stop, "cli", str(wheelhouse), "omt-tool==2.0", "omt-app==2.0"],
        "installer-2": [INSTALLER, stop, "ingest", str(wheelhouse), "omt-extra==1.0", "omt-more==1.0"],
        "gc": [GC, stop],
        "fresh-app": [FRESH, stop, "omt-app==1.0", "omt_app"],
        "fresh-tool": [FRESH, stop, "omt-tool==1.0", "omt_tool"],
        "pinner": [PINNER, stop, "omt-app==2.0", "omt-extra==1.0", "omt-more==1.0", "omt-tool==2.0"],
    }
    running = {k: subprocess.Popen([sys.executable, "-c", *args], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for k, args in procs.items()}  # fmt: skip
    results = {}
    for k, p in running.items():
        out, err = p.communicate(timeout=seconds + 240)
        assert p.returncode == 0, f"{k} exited {p.returncode}\n{err[-3000:]}"
        results[k] = json.loads(out.strip().splitlines()[-1])
    return results


def _check(store, results: dict, seconds: float, name: str) -> None:
    imports = sum(results[k]["imports"] for k in ("fresh-app", "fresh-tool", "pinner"))
    failures = sum(results[k]["failures"] for k in ("fresh-app", "fresh-tool", "pinner"))
    figures = {
        "seconds": seconds, "processes": len(results), "imports_attempted": imports, "import_failures": failures,
        "pins_refused_while_uninstalled": results["pinner"]["refused"],
        "install_commands": results["installer-1"]["commands"] + results["installer-2"]["commands"],
        "install_command_failures": results["installer-1"]["failed"] + results["installer-2"]["failed"],
        "gc_runs": results["gc"]["runs"], "gc_dists_removed": results["gc"]["dists_removed"],
        "gc_kept_in_use": results["gc"]["kept_in_use"],
    }  # fmt: skip
    problems = [p for p in checkup.run(store)["problems"] if p["kind"] != "main-env"]
    collect(store)
    problems += [p for p in checkup.run(store)["problems"] if p["kind"] != "main-env"]
    figures["doctor_problems_at_the_end"] = len(problems)
    record_figures(name, **figures)
    errors = {k: r.get("errors") for k, r in results.items() if r.get("errors")}
    assert failures == 0, errors
    assert figures["install_command_failures"] == 0, errors
    assert problems == []
    assert results["fresh-app"]["imports"] > 0 and results["fresh-tool"]["imports"] > 0
    assert results["pinner"]["imports"] > 0 and results["gc"]["runs"] > 0 and figures["install_commands"] >= 4


def test_installs_gc_and_pinned_imports_at_once(store, wheel, wheelhouse):
    seconds = float(os.environ.get("OMNIPKG_CONCURRENCY_SECONDS", "8"))
    _check(store, _run(store, wheel, wheelhouse, seconds), seconds, "concurrency")


@pytest.mark.slow
def test_installs_gc_and_pinned_imports_at_once_for_longer(store, wheel, wheelhouse):
    seconds = float(os.environ.get("OMNIPKG_CONCURRENCY_SECONDS_SLOW", "60"))
    _check(store, _run(store, wheel, wheelhouse, seconds), seconds, "concurrency_slow")



def test_readers_never_wait_for_the_writer_lock(stored):
    """A pinned import while a writer holds the store's lock: readers do not lock at all."""
    from omnipkg_hook.store import WriteLock

    from .conftest import imports_ok

    with WriteLock(stored):  # held by this process for the whole import in the child
        imports_ok(stored, "omt-app==1.0", "omt-tool==1.0")
        proc = subprocess.run([sys.executable, "-c", "import omt_app.sub; print(omt_app.sub.WHO)"],
                              env=child_env(stored, "omt-app==1.0"), capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "omt-app 1.0 sub", proc.stderr



@pytest.mark.parametrize("when", ["before its lease", "after its lease"])
def test_a_gc_between_the_plan_and_the_publish_of_an_install_takes_no_stored_dist_it_uses(
        store, wheel, wheelhouse, monkeypatch, when):
    """What the loop above hit now and then: ``install`` planned to use a stored dist no bubble
    names yet (``omt-lib``, after its bubble was uninstalled), a ``gc`` at that moment removed
    it, and the install failed on the missing directory. Now the plan holds a lease on the
    stored dists it uses: a gc after that keeps them; a gc before it (run right after the
    plan) makes the plan be made again, and the dist is fetched."""
    from omnipkg_hook.store import interpreter_key
    from omnipkg_pip.cli import main
    from omnipkg_pip.commands.uninstall import remove_bubble
    from omnipkg_pip.writers import fetch
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    from .conftest import imports_ok

    lib = wheel("omt-lib", "1.0", lib_files("1.0"))
    bubble_from_wheels(store, [wheel("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib"]), lib],
                       "omt-app==1.0")
    assert remove_bubble(store, "omt-app", "1.0", interpreter_key())  # omt-lib 1.0: stored, no bubble names it
    wheel("omt-tool", "1.0", app_files("omt-tool", "1.0"), requires=["omt-lib"])
    lib_dir = store.dist_path("omt-lib", "1.0", "py3-none-any")
    plans, gone = [], []
    real_plan, real_fetch = fetch.plan_bubble, fetch.fetch

    def plan(*args, **kwargs):
        made = real_plan(*args, **kwargs)
        plans.append(sorted(made.stored))
        if when == "before its lease" and len(plans) == 1:
            gone.extend(collect(store)["dists"])
        return made

    def fetch_after_gc(*args, **kwargs):
        if when == "after its lease":
            gone.extend(collect(store)["dists"])
        return real_fetch(*args, **kwargs)

    from omnipkg_hook import leases

    held = leases.held()  # other tests of this process may hold some
    monkeypatch.setattr(fetch, "plan_bubble", plan)
    monkeypatch.setattr(fetch, "fetch", fetch_after_gc)
    assert main(["install", "-q", "--bubble", "--no-index", "-f", str(wheelhouse), "omt-tool==1.0"]) == 0
    if when == "before its lease":
        assert lib_dir in gone and plans == [["omt-lib"], []]  # collected, so planned again and fetched
    else:
        assert lib_dir not in gone and plans == [["omt-lib"]]  # leased: gc kept it, the bubble uses it
    assert leases.held() == held  # dropped once the bubble names the dist: a long-lived caller pins nothing
    assert store.load_bubble("omt-tool", "1.0", interpreter_key())["dists"]["omt-lib"]["path"] == (
        "dists/omt-lib/1.0/py3-none-any")
    assert checkup.run(store)["problems"] == []
    imports_ok(store, "omt-tool==1.0")
