"""Issue 13 item 2: the warm path as a whole command. ``pip-omni install NAME==VER`` whose dists
are all stored builds no parser and imports only what it uses; what it makes is what the full
path makes; its writes stay atomic without ``tempfile``, ``hashlib`` or an fsync."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from omnipkg_hook.store import Store, sha256, write_atomic
from omnipkg_pip import pipopts, progress
from omnipkg_pip.cli import _plain, build_parser
from omnipkg_pip.commands import install


@pytest.mark.parametrize("reqs", [["rich==13.4.2"], ["a", "b[x]>=1,<2", "c; python_version > '3'"],
                                  [".", "./dist/x-1.0-py3-none-any.whl", "git+https://example.org/x.git"]])
def test_the_fast_path_arguments_are_the_parsers(reqs):
    assert _plain(reqs)
    parser = build_parser(only="install")
    ours, groups = pipopts.split(reqs, parser.omni_subparsers.choices["install"], "install")
    assert ours == reqs and groups == []  # what the full path would hand pip: nothing
    fast = vars(install.plain_args(reqs))
    assert (fast.pop("pip_groups"), fast.pop("pip_args")) == ([], [])
    assert fast == vars(parser.parse_args(["install", *reqs]))


@pytest.mark.parametrize("argv", [[], ["-q", "x"], ["x", "--json"], ["x", "-r", "f"], ["--", "x"], ["x", "-"]])
def test_anything_with_an_option_takes_the_full_path(argv):
    assert not _plain(argv)


# What the whole command imports (sys.modules at exit), run as the console script runs it.
_MODULES = ("import json, sys; from omnipkg_pip.cli import main; rc = main(sys.argv[1:]); "
            "sys.stderr.write(json.dumps(sorted(sys.modules))); sys.exit(rc)")
_NOT_ON_THE_WARM_PATH = {"argparse", "tempfile", "hashlib", "_hashlib", "dataclasses", "platformdirs", "packaging",
                         "shutil", "glob", "threading", "subprocess", "installer", "uuid", "random", "contextlib",
                         "typing", "shlex", "importlib.util", "omnipkg_pip.pip", "omnipkg_pip.plan",
                         "omnipkg_pip.remote.backends", "omnipkg_pip.ingest", "omnipkg_hook._tags",
                         "omnipkg_pip.pipopts", "omnipkg_hook.scripts"}  # no options, no scripts


def _stored(venv, wheel, wheelhouse):
    """``cached`` 1.0 in main; 2.0 (needing ``cdep``) stored, its bubble removed, no wheel left."""
    wheel("cached", "1.0")
    wheel("cached", "2.0", requires=["cdep", "never; python_version < '3'"])
    wheel("cdep", "1.0")
    venv.pip("install", "-q", "--no-index", "--find-links", str(wheelhouse), "cached==1.0")
    venv.run("install", "--no-index", "-f", str(wheelhouse), "cached==2.0")
    venv.run("uninstall", "cached==2.0")
    for p in wheelhouse.iterdir():
        p.unlink()
    return Store(venv.env["OMNIPKG_STORE"])


def _bubble(store):
    (name,) = os.listdir(os.path.join(store.bubbles, "cached", "2.0"))
    path = os.path.join(store.bubbles, "cached", "2.0", name)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data.pop("created")
    return path, data


def test_a_bubble_from_stored_dists_imports_only_what_it_uses(omni_venv, wheel, wheelhouse, tmp_path):
    store = _stored(omni_venv, wheel, wheelhouse)
    # cwd: a directory without a pyproject.toml naming omnipkg (this checkout's would be read, with tomllib)
    proc = subprocess.run([str(omni_venv.python), "-c", _MODULES, "install", "cached==2.0"],
                          capture_output=True, text=True, env=omni_venv.env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    *_warnings, modules = proc.stderr.splitlines()
    assert "created" in proc.stdout and "all already stored" in proc.stdout
    assert sorted(_NOT_ON_THE_WARM_PATH & set(json.loads(modules))) == []
    path, fast = _bubble(store)
    assert set(fast["dists"]) == {"cached", "cdep"}
    assert os.listdir(store.tmp) == []  # the staging file was renamed into place

    # The full path (an option: argparse, pip's option table) makes the same bubble.
    omni_venv.run("uninstall", "cached==2.0")
    assert not os.path.exists(path)
    out = json.loads(omni_venv.run("install", "cached==2.0", "--json").stdout)
    assert [(r["name"], r["version"], r["action"]) for r in out] == [("cached", "2.0", "created")]
    assert _bubble(store) == (path, fast)
    pinned = omni_venv.run("python", "-c", "import cached; print(cached.__version__)",
                           env={"OMNIPKG_PINS": "cached==2.0"})
    assert pinned.stdout == "2.0\n"


def test_a_bubble_manifest_lost_to_a_power_cut_is_found_and_rebuilt(omni_venv, wheel, wheelhouse):
    """The bubble manifest is published by rename without an fsync: after a power cut it may be
    empty. doctor names it, --repair makes it again from the stored dists, the pin works."""
    store = _stored(omni_venv, wheel, wheelhouse)
    omni_venv.run("install", "cached==2.0")
    path, before = _bubble(store)
    with open(path, "w"):
        pass  # what a rename that reached the disk before its data leaves
    report = json.loads(omni_venv.run("doctor", "--json", check=False).stdout)
    assert {p["kind"] for p in report["problems"]} == {"bubble-damaged"}
    omni_venv.run("doctor", "--repair")
    assert _bubble(store) == (path, before)
    pinned = omni_venv.run("python", "-c", "import cached; print(cached.__version__)",
                           env={"OMNIPKG_PINS": "cached==2.0"})
    assert pinned.stdout == "2.0\n"


def test_sha256_without_hashlib_gives_hashlibs_digests():
    for data in (b"", b"x", os.urandom(100_000)):
        assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    code = ("import sys; from omnipkg_hook.store import sha256; h = sha256(b'pip-omni'); h.update(b'!'); "
            "print('hashlib' in sys.modules, h.hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", hashlib.sha256(b"pip-omni!").hexdigest()]


def test_atomic_write_never_writes_through_what_is_in_tmp(tmp_path, monkeypatch):
    """Names in tmp/ are made with O_EXCL|O_NOFOLLOW: a planted link or a leftover file of the
    same name is skipped, never written through."""
    store = Store(str(tmp_path / "store"))
    os.makedirs(store.tmp)
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    names = iter([b"\x01" * 6, b"\x02" * 6, b"\x03" * 6])
    monkeypatch.setattr(os, "urandom", lambda n: next(names))
    os.symlink(outside, os.path.join(store.tmp, f"w-{os.getpid()}-{'01' * 6}"))
    with open(os.path.join(store.tmp, f"w-{os.getpid()}-{'02' * 6}"), "wb") as f:
        f.write(b"leftover")
    target = os.path.join(store.root, "bubbles", "x", "1.0", "k.json")
    write_atomic(store, target, b"{}\n", 0o644)
    assert outside.read_bytes() == b"keep"
    with open(target, "rb") as f:
        assert f.read() == b"{}\n"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert sorted(os.listdir(store.tmp)) == [f"w-{os.getpid()}-{'01' * 6}", f"w-{os.getpid()}-{'02' * 6}"]


def test_a_line_streamed_while_a_spinner_runs_starts_on_a_cleared_line(monkeypatch, capsys):
    """`run --matrix --stream` prints cells' lines while bubbles for later cells are still
    being made under a spinner: each line first clears the spinner's, never lands after it."""
    import io
    import sys
    import threading
    import time

    from omnipkg_pip.run.matrix import _pump

    monkeypatch.setattr(progress, "_quiet", False)
    monkeypatch.setattr(progress, "_tty", lambda: True)
    with progress.step("make 3 bubbles"):
        for n in range(3):
            deadline = time.monotonic() + 5
            while not progress._drawn[0] and time.monotonic() < deadline:
                time.sleep(0.01)
            assert progress._drawn[0]  # the spinner's line is on the terminal
            _pump(io.BytesIO(f"line {n}".encode()), "[rich=13.4.2]", sys.stderr, threading.Lock())
            assert not progress._drawn[0]
    err = capsys.readouterr().err
    for n in range(3):
        before = err[:err.index(f"[rich=13.4.2] line {n}\n")]
        assert before.endswith("\r\033[K"), repr(before[-40:])
    progress.above(lambda: sys.stderr.write("after\n"))  # no spinner: written as it is
    assert capsys.readouterr().err == "after\n"


def test_progress_steps_on_a_terminal_and_off_it(monkeypatch, capsys):
    monkeypatch.setattr(progress, "_quiet", False)
    with progress.step("fetch x"):
        pass
    assert capsys.readouterr().err == "pip-omni: fetch x ...\n"
    monkeypatch.setattr(progress, "_tty", lambda: True)
    step = progress.step("fetch y")
    with step:
        assert step.thread.is_alive()
    assert step.thread is None and capsys.readouterr().err.endswith("\r\033[K")
    step = progress.step("fetch z")
    with pytest.raises(KeyError):  # an error inside still stops the spinner, and is not swallowed
        with step:
            raise KeyError("z")
    assert step.thread is None and capsys.readouterr().err.endswith("\r\033[K")
    monkeypatch.setattr(progress, "_quiet", True)
    with progress.step("fetch q"):
        pass
    assert capsys.readouterr().err == ""
