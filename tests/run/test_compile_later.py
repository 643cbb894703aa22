"""Compile later: `install --no-compile` leaves a bubble's .pyc pending, `pip-omni run` makes its
bubbles so and compiles them after the program, detached (omnipkg_pip/writers/later.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import store_state  # noqa: E402

from omnipkg_pip.writers import bytecode, later  # noqa: E402

TAG = sys.implementation.cache_tag
PYC = bytecode.pyc_manifest_name(TAG)
pytestmark = pytest.mark.skipif(os.name != "posix", reason="run detaches its compile on POSIX only")


def _lib(wheel, name: str, version: str) -> None:
    mod = name.replace("-", "_")
    wheel(name, version, files={f"{mod}/__init__.py": f"V = {version!r}\nfrom . import deep\n",
                                f"{mod}/deep.py": f"D = {version!r}\n"})


def _root(venv) -> str:
    return venv.env["OMNIPKG_STORE"]


def _dist(venv, name: str, version: str) -> str:
    return os.path.join(_root(venv), "dists", name, version, "py3-none-any")


def _marks(venv) -> list[str]:
    base = os.path.join(_root(venv), "cache", "pyc-pending")
    keys = os.listdir(base) if os.path.isdir(base) else []
    return sorted(m for k in keys for m in os.listdir(os.path.join(base, k)))


def _waited(venv) -> list[dict]:
    assert later.wait(_root(venv), timeout=120), "the background compile did not end"
    return later.records(_root(venv))


def test_install_no_compile_publishes_without_pyc_imports_from_sources_and_compiles_later(omni_venv, wheel,
                                                                                         wheelhouse):
    _lib(wheel, "lazy", "1.0")
    _lib(wheel, "other", "1.0")
    proc = omni_venv.run("install", "--bubble", "--no-compile", "--no-index", "-f", str(wheelhouse), "lazy==1.0",
                         "--json")
    (row,) = json.loads(proc.stdout)
    assert row["action"] == "created" and "not compiled (--no-compile)" in row["reason"]
    lazy = _dist(omni_venv, "lazy", "1.0")
    assert os.path.isdir(lazy) and not os.path.exists(os.path.join(lazy, PYC))
    assert not os.path.exists(os.path.join(lazy, "lazy", "__pycache__"))
    assert _marks(omni_venv) == ["lazy@1.0@py3-none-any"]

    # a pinned import works, from the sources, and writes nothing into the store
    content = [os.path.join(_root(omni_venv), d) for d in ("dists", "objects", "bubbles")]  # not cache/startup
    before = store_state(*content)
    env = {"OMNIPKG_PINS": "lazy==1.0", "PYTHONDONTWRITEBYTECODE": ""}
    env_run = {k: v for k, v in {**omni_venv.env, **env}.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for _ in range(2):
        out = subprocess.run([str(omni_venv.python), "-c", "import lazy; print(lazy.V, lazy.deep.D, lazy.__file__)"],
                             capture_output=True, text=True, env=env_run, check=True).stdout.split()
        assert out[:2] == ["1.0", "1.0"] and out[2].startswith(lazy + os.sep)
        assert store_state(*content) == before

    # the next install (of anything) compiles it and clears the mark
    omni_venv.run("install", "--bubble", "--no-index", "-f", str(wheelhouse), "other==1.0")
    assert os.path.exists(os.path.join(lazy, PYC)) and _marks(omni_venv) == []
    record = json.loads(open(os.path.join(lazy, PYC)).read())
    assert sorted(e["path"] for e in record["files"]) == [f"lazy/__pycache__/__init__.{TAG}.pyc",
                                                          f"lazy/__pycache__/deep.{TAG}.pyc"]


def test_store_compile_compiles_what_no_compile_left(omni_venv, wheel, wheelhouse):
    _lib(wheel, "lazy", "1.0")
    omni_venv.run("install", "--bubble", "--no-compile", "--no-index", "-f", str(wheelhouse), "lazy==1.0")
    out = json.loads(omni_venv.run("store", "compile", "--json").stdout)
    assert out == {"compiled": [os.path.join("dists", "lazy", "1.0", "py3-none-any")]}
    assert os.path.exists(os.path.join(_dist(omni_venv, "lazy", "1.0"), PYC)) and _marks(omni_venv) == []
    assert json.loads(omni_venv.run("store", "compile", "--json").stdout) == {"compiled": []}


SCRIPT = """\
# /// script
# dependencies = ["fresh==2.0"]
# ///
import json, os, sys
import fresh
store = os.environ["OMNIPKG_STORE"]
dist = os.path.join(store, "dists", "fresh", "2.0", "py3-none-any")
print(json.dumps({"V": fresh.V, "file": fresh.__file__,
                  "compiled": os.path.exists(os.path.join(dist, sys.argv[1])),
                  "started": os.path.exists(os.path.join(store, "cache", "compile-later.log"))}))
"""


def test_run_compiles_its_new_bubbles_after_the_script_in_the_background(omni_venv, wheel, wheelhouse, tmp_path):
    _lib(wheel, "fresh", "2.0")
    script = tmp_path / "tool.py"
    script.write_text(SCRIPT)
    proc = omni_venv.run("run", "--no-index", "-f", str(wheelhouse), str(script), PYC)
    out = json.loads(proc.stdout)
    fresh = _dist(omni_venv, "fresh", "2.0")
    assert out["V"] == "2.0" and out["file"].startswith(fresh + os.sep)
    # while the script ran: its bubble was not compiled, and no compile had been started
    assert out["compiled"] is False and out["started"] is False
    records = _waited(omni_venv)
    assert [r["compiled"] for r in records] == [[os.path.join("dists", "fresh", "2.0", "py3-none-any")]]
    assert records[0]["python"].startswith(sysconfig.get_python_version())
    assert os.path.exists(os.path.join(fresh, PYC)) and _marks(omni_venv) == []
    assert os.path.exists(os.path.join(fresh, "fresh", "__pycache__", f"deep.{TAG}.pyc"))

    # a run that makes no bubble starts no compile
    os.unlink(os.path.join(_root(omni_venv), *later.LOG))
    out = json.loads(omni_venv.run("run", "--offline", str(script), PYC).stdout)
    assert out["compiled"] is True
    assert not os.path.exists(os.path.join(_root(omni_venv), *later.LOG))


def test_run_compile_now_compiles_before_the_script(omni_venv, wheel, wheelhouse, tmp_path):
    _lib(wheel, "fresh", "2.0")
    script = tmp_path / "tool.py"
    script.write_text(SCRIPT)
    proc = omni_venv.run("run", "--no-index", "-f", str(wheelhouse), str(script), PYC,
                         env={"OMNIPKG_RUN_COMPILE": "now"})
    out = json.loads(proc.stdout)
    assert out["compiled"] is True and out["started"] is False
    assert not os.path.exists(os.path.join(_root(omni_venv), *later.LOG))
    _lib(wheel, "second", "1.0")
    proc = omni_venv.run("run", "--with", "second==1.0", "--no-index", "-f", str(wheelhouse), "-c", "pass",
                         env={"OMNIPKG_RUN_COMPILE": "soon"}, check=False)
    assert proc.returncode == 1 and "OMNIPKG_RUN_COMPILE='soon'" in proc.stderr
    assert not os.path.exists(_dist(omni_venv, "second", "1.0"))  # refused before anything was made


def _background(venv) -> subprocess.Popen:
    return subprocess.Popen([str(venv.path / "bin" / "pip-omni"), "store", "compile", "--background"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=venv.env)


def test_two_background_compiles_at_once_compile_each_dist_once(omni_venv, wheel, wheelhouse):
    names = [f"many{i}" for i in range(6)]
    for name in names:
        _lib(wheel, name, "1.0")
    omni_venv.run("install", "--bubble", "--no-compile", "--no-index", "-f", str(wheelhouse),
                  *[f"{n}==1.0" for n in names])
    assert len(_marks(omni_venv)) == 6
    procs = [_background(omni_venv) for _ in range(2)]
    done = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        (rec,) = [json.loads(line) for line in stdout.splitlines()]
        done += rec["compiled"]
    assert sorted(done) == sorted(os.path.join("dists", n, "1.0", "py3-none-any") for n in names)  # each once
    assert _marks(omni_venv) == [] and all(os.path.exists(os.path.join(_dist(omni_venv, n, "1.0"), PYC))
                                           for n in names)


def test_a_background_compile_killed_midway_is_finished_by_the_next(omni_venv, wheel, wheelhouse):
    from omnipkg_hook.store import Store
    from omnipkg_pip.pythons import interp

    _lib(wheel, "lazy", "1.0")
    omni_venv.run("install", "--bubble", "--no-compile", "--no-index", "-f", str(wheelhouse), "lazy==1.0")
    lazy = _dist(omni_venv, "lazy", "1.0")
    store = Store(_root(omni_venv))
    real = bytecode._link_published

    def killed(store_, dist_dir, rel, *args):
        if rel == PYC:  # killed after the .pyc were linked, before the pyc manifest (the last step)
            raise KeyboardInterrupt("killed")
        return real(store_, dist_dir, rel, *args)

    bytecode._link_published = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            bytecode.compile_pending(store, interp.inspect(str(omni_venv.python)), {})
    finally:
        bytecode._link_published = real
    assert os.path.exists(os.path.join(lazy, "lazy", "__pycache__", f"deep.{TAG}.pyc"))
    assert not os.path.exists(os.path.join(lazy, PYC)) and _marks(omni_venv) == ["lazy@1.0@py3-none-any"]
    p = _background(omni_venv)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert json.loads(stdout)["compiled"] == [os.path.join("dists", "lazy", "1.0", "py3-none-any")]
    assert os.path.exists(os.path.join(lazy, PYC)) and _marks(omni_venv) == []


def test_wait_sees_a_background_compile_from_its_start(tmp_path):
    root = str(tmp_path / "store")
    assert later.wait(root, timeout=0)  # none ever started
    os.makedirs(os.path.join(root, "cache"))
    import fcntl

    fd = os.open(os.path.join(root, *later.LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what start() holds from before the process exists
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                             pass_fds=(fd,))
    os.close(fd)
    try:
        assert later.wait(root, timeout=0.2) is False  # the child holds it
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    assert later.wait(root, timeout=60)  # and free once it ended


def test_a_background_compile_killed_by_sigkill_leaves_its_marks_for_the_next(omni_venv, wheel, wheelhouse):
    import signal

    names = [f"big{i}" for i in range(8)]
    for name in names:  # enough files that the kill lands while it works, most of the time
        wheel(name, "1.0", files={f"{name}/__init__.py": "", **{f"{name}/m{j}.py": f"X = {j}\n" * 400
                                                                for j in range(40)}})
    omni_venv.run("install", "--bubble", "--no-compile", "--no-index", "-f", str(wheelhouse),
                  *[f"{n}==1.0" for n in names])
    p = _background(omni_venv)
    first = [os.path.join(_dist(omni_venv, n, "1.0"), n, "__pycache__") for n in names]
    for _ in range(6000):  # until its first .pyc is linked (or it ended)
        if any(os.path.isdir(d) for d in first) or p.poll() is not None:
            break
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    done = [n for n in names if os.path.exists(os.path.join(_dist(omni_venv, n, "1.0"), PYC))]
    assert sorted(m.split("@")[0] for m in _marks(omni_venv)) == sorted(set(names) - set(done))  # the rest is marked
    out = json.loads(omni_venv.run("store", "compile", "--json").stdout)
    assert sorted(out["compiled"]) == sorted(os.path.join("dists", n, "1.0", "py3-none-any")
                                             for n in names if n not in done)
    assert _marks(omni_venv) == [] and all(os.path.exists(os.path.join(_dist(omni_venv, n, "1.0"), PYC))
                                           for n in names)


LEANS = """\
# /// script
# dependencies = ["leaner==1.0"]
# ///
import json, os
import leaner, shared
print(json.dumps({"leaner": leaner.__file__, "shared": shared.__file__}))
"""


def test_run_stores_after_the_script_what_main_has_at_the_same_version(omni_venv, wheel, wheelhouse, tmp_path):
    """The bubble of a run does not wait for a dist main has at that version (served from main
    meanwhile): the background step after the script stores it and completes the bubble."""
    wheel("leaner", "1.0", files={"leaner/__init__.py": "V = '1.0'\n"}, requires=["shared==1.0"])
    wheel("shared", "1.0", files={"shared/__init__.py": "V = '1.0'\n"})
    omni_venv.pip("install", "-q", "--no-index", "-f", str(wheelhouse), "shared==1.0")
    script = tmp_path / "tool.py"
    script.write_text(LEANS)
    out = json.loads(omni_venv.run("run", "--no-index", "-f", str(wheelhouse), str(script)).stdout)
    assert out["leaner"].startswith(_dist(omni_venv, "leaner", "1.0") + os.sep)
    assert out["shared"].startswith(str(omni_venv.site))  # main's copy
    records = _waited(omni_venv)
    assert [r["stored"] for r in records] == [["leaner==1.0"]]
    key = next(iter(os.listdir(os.path.join(_root(omni_venv), "bubbles", "leaner", "1.0"))))
    with open(os.path.join(_root(omni_venv), "bubbles", "leaner", "1.0", key)) as f:
        m = json.load(f)
    assert sorted(m["dists"]) == ["leaner", "shared"] and "deferred" not in m
    assert os.path.isdir(_dist(omni_venv, "shared", "1.0"))
