"""`pip-omni install --bubble A B C`: several bubbles made at once in one process.

Their plans run in threads and share what they read (pages, METADATA, the TLS context,
downloads: :func:`omnipkg_pip.writers.indexplan.sharing`); each publishes under the store's
lock, and a dist an earlier root published is not ingested again. A root that fails leaves
the others made, and says which failed. Against the loopback index of tests/simple_index.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import store_state
from simple_index import index, venv  # noqa: F401 (fixtures)
from test_index_plan import _bubble_set, _pip_commands, _pip_report, _sdist

from omnipkg_hook.store import Store, WriteLock


def _env(index, **extra) -> dict:
    return {"PIP_INDEX_URL": f"{index.url}/simple", **extra}


def _store(venv) -> Path:
    return Path(venv.env["OMNIPKG_STORE"])


def _ours(index, path_end: str) -> int:
    return sum(1 for p, ua in index.log if p.split("?")[0].rstrip("/").endswith(path_end) and ua.startswith("pip-omni"))


def _imports(venv, pin: str, code: str) -> str:
    return venv.run("python", "-c", code, env={"OMNIPKG_PINS": pin}).stdout.strip()


def _tmp_empty(venv) -> None:
    tmp = _store(venv) / "tmp"
    assert not (tmp.is_dir() and os.listdir(tmp)), os.listdir(tmp)  # nothing staged or downloaded is left


def test_three_roots_sharing_a_dependency_read_and_ingest_it_once(venv, index):
    for v in ("1.0", "2.0", "3.0"):
        index.add("omt-app", v, requires=["omt-dep>=1"])
    dep = index.add("omt-dep", "1.0", files={"omt_dep/__init__.py": "V = 'dep 1.0'\n",
                                             **{f"omt_dep/m{i}.py": f"X = {i}\n" for i in range(40)}})

    proc = venv.run("install", "-v", "--bubble", "omt-app==1.0", "omt-app==2.0", "omt-app==3.0", env=_env(index))

    assert "make 3 bubbles" in proc.stderr
    assert proc.stderr.count("from the index without pip") == 3 and _pip_commands(venv) == []
    table = proc.stdout.splitlines()
    assert [line.split()[:4] for line in table[1:]] == [["omt-app", v, "bubble", "created"] for v in
                                                         ("1.0", "2.0", "3.0")]
    # the dependency's page and wheel were fetched once for the three plans (its METADATA is in the wheel)
    assert _ours(index, "/simple/omt-dep") == 1 and len(index.ours(dep.name)) == 1
    assert _ours(index, "/simple/omt-app") == 1
    # one dist of it in the store, which every bubble names; what the three ingests staged is gone
    store = _store(venv)
    assert os.listdir(store / "dists" / "omt-dep") == ["1.0"]
    paths = {entry["dists"]["omt-dep"]["path"] for entry in
             (json.loads(p.read_text()) for p in (store / "bubbles" / "omt-app").glob("*/*.json"))}
    assert paths == {"dists/omt-dep/1.0/py3-none-any"}
    manifest = json.loads((store / "dists/omt-dep/1.0/py3-none-any/omnipkg-dist.json").read_text())
    assert manifest["wheel_sha256"] == index.sha(dep.name)
    _tmp_empty(venv)
    for v in ("1.0", "2.0", "3.0"):
        assert _imports(venv, f"omt-app=={v}", "import omt_app, omt_dep; print(omt_app.__version__, omt_dep.V)") == (
            f"{v} dep 1.0")


def test_one_root_that_fails_leaves_the_others_made_and_is_named(venv, index):
    index.add("omt-fa", "1.0")
    index.add("omt-fb", "1.0", requires=["omt-fa"])

    proc = venv.run("install", "--bubble", "omt-fa==1.0", "omt-fa==9.9", "omt-fb==1.0", env=_env(index),
                    check=False)

    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip().splitlines()
    line = next(ln for ln in err if ln.startswith("pip-omni: ") and "was not made" in ln)
    assert "the bubble 'omt-fa==9.9' was not made" in line and "omt-fb" not in line
    rows = [r.split()[:4] for r in proc.stdout.splitlines()[1:]]
    assert rows[0] == ["omt-fa", "1.0", "bubble", "created"] and rows[2] == ["omt-fb", "1.0", "bubble", "created"]
    assert rows[1][:3] == ["omt-fa", "bubble", "failed"]  # no version: it was never resolved
    assert _imports(venv, "omt-fb==1.0", "import omt_fb, omt_fa; print(omt_fb.__version__, omt_fa.__version__)") == (
        "1.0 1.0")
    assert sorted(p.name for p in (_store(venv) / "bubbles" / "omt-fa").iterdir()) == ["1.0"]
    _tmp_empty(venv)

    # --json: the rows, the failed one with its reason; the same error line; nothing changed
    before = store_state(_store(venv))
    proc = venv.run("install", "--json", "--bubble", "omt-fa==9.9", "omt-fb==1.0", "omt-fa==1.0", env=_env(index),
                    check=False)
    assert proc.returncode == 1 and "the bubble 'omt-fa==9.9' was not made" in proc.stderr
    got = json.loads(proc.stdout)
    assert [(r["name"], r["action"]) for r in got] == [("omt-fa", "failed"), ("omt-fb", "present"),
                                                       ("omt-fa", "present")]
    assert got[0]["reason"]
    assert store_state(_store(venv)) == before


def test_one_root_through_pip_while_another_is_planned_from_the_index(venv, index):
    index.add("omt-sa", "1.0")
    index.add_file("omt_sa-2.0.tar.gz", _sdist("omt-sa", "2.0"), "omt-sa")  # pip must build it
    index.add("omt-pl", "1.0", requires=["omt-pm"])
    index.add("omt-pm", "1.0")

    proc = venv.run("install", "-v", "--bubble", "omt-sa", "omt-pl==1.0", env=_env(index))

    assert "resolved omt-pl==1.0 from the index without pip" in proc.stderr
    assert "resolved omt-sa from the index without pip" not in proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if "resolving omt-sa through pip: " in ln)
    assert "is an sdist" in line, line
    assert [c for c in _pip_commands(venv) if " wheel " in c]  # pip resolved (and built) that bubble
    assert {(n, v) for n, v, _u in _bubble_set(venv, "omt-sa")} == {("omt-sa", "2.0")}
    assert _bubble_set(venv, "omt-pl") == _pip_report(venv, index, "omt-pl==1.0")
    assert _imports(venv, "omt-sa==2.0", "import omt_sa; print(omt_sa.BUILT)") == "True"
    _tmp_empty(venv)


def test_a_gc_while_bubbles_are_made_at_once_takes_nothing_they_use(venv, index):
    """gc runs over and over while three bubbles are made at once, each using a stored dist
    no bubble names (its bubble was uninstalled): the plans lease it; every bubble is whole."""
    index.add("omt-lib", "1.0")
    for name in ("omt-ga", "omt-gb", "omt-gc"):
        index.add(name, "1.0", requires=["omt-lib"])
    venv.run("install", "-q", "--bubble", "omt-ga==1.0", env=_env(index))
    venv.run("uninstall", "-q", "omt-ga==1.0")  # omt-lib 1.0 stays stored, named by no bubble

    stop = threading.Event()
    runs = []

    def gc_loop():
        while not stop.is_set():
            runs.append(venv.run("gc", check=False).returncode)

    t = threading.Thread(target=gc_loop)
    t.start()
    try:
        for _ in range(2):
            proc = venv.run("install", "--bubble", "omt-ga==1.0", "omt-gb==1.0", "omt-gc==1.0", env=_env(index),
                            check=False)
            assert proc.returncode == 0, proc.stderr
            for name in ("omt-ga", "omt-gb", "omt-gc"):
                assert _imports(venv, f"{name}==1.0", f"import {name.replace('-', '_')}, omt_lib; print('ok')") == "ok"
            venv.run("uninstall", "-q", "omt-ga==1.0", "omt-gb==1.0", "omt-gc==1.0")
    finally:
        stop.set()
        t.join()
    assert runs and set(runs) == {0}
    proc = venv.run("install", "-q", "--bubble", "omt-ga==1.0", "omt-gb==1.0", env=_env(index))
    doctor = venv.run("doctor", "--json", check=False)
    assert json.loads(doctor.stdout)["problems"] == [], doctor.stdout


def test_the_write_lock_is_one_writer_among_threads_too(tmp_path):
    """Two threads of one process: the second waits for the first, as another process would
    (re-entrant in one thread only)."""
    store = Store(str(tmp_path / "store"))
    inside = threading.Event()
    leave = threading.Event()
    order = []

    def first():
        with WriteLock(store):
            with WriteLock(store):  # nested in one thread: counted, not a deadlock
                order.append("first in")
                inside.set()
                leave.wait(30)
            order.append("first out")

    def second():
        inside.wait(30)
        with WriteLock(store):
            order.append("second in")

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    inside.wait(30)
    b.join(0.3)
    assert b.is_alive() and order == ["first in"]  # still waiting while the first holds it
    leave.set()
    a.join(30)
    b.join(30)
    assert order == ["first in", "first out", "second in"]
    # and another process still waits for this one
    with WriteLock(store):
        code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)")
        assert subprocess.run([sys.executable, "-c", code, store.lock]).returncode == 3
