"""A cell zygote kept between runs (omnipkg_pip/run/cellfork.py): reused by the next run
with the same key, replaced when its key or a file it imported changed, private to the
user, one client at a time, gone after its idle timeout; ^C reaches its cells."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from omnipkg_pip.run import cellfork, matrix

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cells are forked on Linux only")

PPID = ["-c", "import os, sys; print(os.getppid(), os.environ.get('WHO'), os.getcwd()); sys.exit(4)"]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited; our zombie until reaped
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, deadline: float = 60.0) -> bool:
    end = time.monotonic() + deadline
    while not _gone(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def setup(tmp_path):
    """A PYTHONPATH directory with a preloaded module, and a cell env for it."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "dep.py").write_text("V = 'one'\n")
    env = {**matrix.cell_env(str(tmp_path / "store")), "PYTHONPATH": str(lib), "OMNIPKG_MATRIX_KEEP": "30"}
    return tmp_path, lib, env


def _cell(env, cwd, code=PPID, preload=("dep",), keep=30.0, **kw):
    """One cell's (output, exit status, zygote) from a CellZygote used once and closed."""
    z = cellfork.CellZygote(sys.executable, env, str(cwd), list(preload), keep=keep).ready()
    try:
        r, w = os.pipe()
        pid = z.start([], code, None, out=w, err=w, **kw)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            out = f.read().decode()
        return out, z.wait(pid), z
    finally:
        z.close()


def _ppid(out: str) -> int:
    return int(out.split()[0])


def test_the_next_run_reuses_it_and_another_key_gets_another(setup):
    tmp, lib, env = setup
    (tmp / "sub").mkdir()  # before: the directory ("" on sys.path) is watched like the others
    out1, code, z = _cell(env, tmp)
    assert code == 4 and z.kept is not None
    first = _ppid(out1)
    assert first != os.getpid() and not _gone(first)
    out2, _, _ = _cell({**env, "_": "/bin/other", "SHLVL": "7"}, tmp)  # ignored by the key
    assert _ppid(out2) == first
    out3, _, _ = _cell({**env, "WHO": "x"}, tmp)  # another environment: another zygote
    assert _ppid(out3) != first and out3.split()[1] == "x"
    out4, _, _ = _cell(env, tmp / "sub")  # another directory: another zygote
    assert _ppid(out4) not in (first, _ppid(out3)) and out4.split()[2] == str(tmp / "sub")
    assert _ppid(_cell(env, tmp)[0]) == first  # all kept at once
    assert sorted(p for p, _ in cellfork.kept_zygotes()) == sorted({first, _ppid(out3), _ppid(out4)})


def test_each_cell_gets_exactly_the_clients_environment(setup):
    tmp, lib, env = setup
    out1, _, _ = _cell({**env, "_": "/bin/a", "SHLVL": "5"}, tmp)
    env = {k: v for k, v in env.items() if k != "SHLVL"}
    out, code, _ = _cell({**env, "_": "/bin/b"}, tmp,
                         code=["-c", "import os; print(os.getppid(), os.environ['_'], 'SHLVL' in os.environ)"])
    assert _ppid(out) == _ppid(out1)  # the same zygote: the key leaves those out
    assert out.split()[1:] == ["/bin/b", "False"]


@pytest.mark.parametrize("change", ["file added on PYTHONPATH", "preloaded module edited"])
def test_a_changed_file_gives_a_new_zygote(setup, change):
    tmp, lib, env = setup
    code = ["-c", "import os, dep; print(os.getppid(), dep.V)"]
    out1, _, _ = _cell(env, tmp, code=code)
    first = _ppid(out1)
    assert out1.split()[1] == "one"
    if change == "file added on PYTHONPATH":
        (lib / "newmod.py").write_text("")
    else:
        (lib / "dep.py").write_text("V = 'two!'\n")
    out2, _, _ = _cell(env, tmp, code=code)
    assert _ppid(out2) != first
    assert out2.split()[1] == ("one" if change == "file added on PYTHONPATH" else "two!")
    assert _wait_gone(first)  # the stale one said so and exited
    log = (tmp.parent / os.environ["OMNIPKG_RUNTIME_DIR"] / "cells" / "log").read_text()
    assert f"pip-omni zygote {first}: " in log and "changed since it started" in log


def test_keep_0_keeps_nothing(setup, runtime_dir, monkeypatch):
    tmp, lib, env = setup
    monkeypatch.setenv("OMNIPKG_MATRIX_KEEP", "0")
    out, code, z = _cell({**env, "OMNIPKG_MATRIX_KEEP": "0"}, tmp, keep=None)
    assert code == 4 and z.kept is None
    assert _wait_gone(_ppid(out))
    assert cellfork.kept_zygotes() == []
    cells = os.path.join(runtime_dir, "cells")
    assert not os.path.exists(cells) or not [n for n in os.listdir(cells) if n.endswith(".sock")]


def test_it_exits_when_idle(setup, monkeypatch):
    tmp, lib, env = setup
    monkeypatch.setenv("OMNIPKG_MATRIX_KEEP", "0.5")
    out, _, z = _cell({**env, "OMNIPKG_MATRIX_KEEP": "0.5"}, tmp, keep=None)
    assert z.kept is not None
    assert _wait_gone(_ppid(out))
    assert cellfork.kept_zygotes() == []
    out2, code, _ = _cell({**env, "OMNIPKG_MATRIX_KEEP": "0.5"}, tmp, keep=None)  # a new one takes its place
    assert code == 4 and _ppid(out2) != _ppid(out)


def test_a_busy_zygote_is_not_waited_for(setup):
    tmp, lib, env = setup
    a = cellfork.CellZygote(sys.executable, env, str(tmp), ["dep"], keep=30).ready()
    try:
        out, code, b = _cell(env, tmp)  # a holds the kept one: b starts its own, private
        assert code == 4 and b.kept is None and a.kept is not None
        assert _ppid(out) != a.proc.pid
        assert _wait_gone(_ppid(out))
        r, w = os.pipe()
        pid = a.start([], PPID, None, out=w, err=w)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            assert _ppid(f.read().decode()) == a.proc.pid
        assert a.wait(pid) == 4
    finally:
        a.close()


def _key_paths(env, cwd):
    kept = cellfork._Kept(cellfork.zygote_key(sys.executable, env, str(cwd), ["dep"]))
    return kept


def test_a_place_that_is_not_private_gets_one_line_and_a_private_zygote(setup, runtime_dir, capfd):
    tmp, lib, env = setup
    os.makedirs(os.path.join(runtime_dir, "cells"), mode=0o700)
    os.chmod(os.path.join(runtime_dir, "cells"), 0o755)
    out, code, z = _cell(env, tmp)
    err = capfd.readouterr().err
    assert code == 4 and z.kept is None
    lines = [ln for ln in err.splitlines() if ln.startswith("pip-omni:")]
    assert len(lines) == 1 and "mode 0755" in lines[0] and "zygote of their own" in lines[0], err
    assert _wait_gone(_ppid(out))


@pytest.mark.parametrize("what", ["a socket others may use", "a regular file"])
def test_a_socket_file_not_ours_and_private_is_refused(setup, capfd, what):
    tmp, lib, env = setup
    kept = _key_paths(env, tmp)
    kept.check()  # makes the directories
    if what == "a regular file":
        with open(kept.socket, "w") as f:
            f.write("x")
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(kept.socket)
        os.chmod(kept.socket, 0o666)
        s.close()
    before = os.lstat(kept.socket)
    out, code, z = _cell(env, tmp)
    err = capfd.readouterr().err
    assert code == 4 and z.kept is None
    lines = [ln for ln in err.splitlines() if ln.startswith("pip-omni:")]
    assert len(lines) == 1 and repr(kept.socket) in lines[0] and "not a private socket" in lines[0], err
    after = os.lstat(kept.socket)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)  # left as it was


def test_a_client_that_goes_away_takes_its_cells_with_it(setup, tmp_path):
    tmp, lib, env = setup
    z = cellfork.CellZygote(sys.executable, env, str(tmp), ["dep"], keep=30).ready()
    r, w = os.pipe()
    pid = z.start([], ["-c", "import os, time; print(os.getpid(), flush=True); time.sleep(120)"], None,
                  out=w, err=w)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        assert int(f.readline()) == pid
        z.close()  # hang up while the cell runs
        assert _wait_gone(pid)
    assert not _gone(z.proc.pid)  # the zygote itself is kept
    assert cellfork.stop_kept() == [z.proc.pid]
    assert _wait_gone(z.proc.pid)


SLEEPER = """\
import os, sys, time, lib
here = os.path.dirname(os.path.abspath(__file__))
open(os.path.join(here, "pid-" + lib.V), "w").write(f"{os.getpid()} {os.getppid()}")
try:
    time.sleep(120)
except KeyboardInterrupt:
    open(os.path.join(here, "ki-" + lib.V), "w").write("KeyboardInterrupt")
    raise
"""


def test_ctrl_c_reaches_the_cells_of_a_kept_zygote(omni_venv, libs, wheelhouse, tmp_path):
    (tmp_path / "prog.py").write_text(SLEEPER)
    args = [str(omni_venv.path / "bin" / "pip-omni"), "run", "--matrix", "lib=1.0,2.0,3.0", "--jobs", "3",
            "--no-index", "-f", str(wheelhouse), "--json", "--", "prog.py"]
    env = {**omni_venv.env, "OMNIPKG_RUNTIME_DIR": os.environ["OMNIPKG_RUNTIME_DIR"]}
    # its own session: the terminal's ^C would reach nothing but pip-omni itself
    # (and ^C handled as a shell's foreground job would: not ignored, even if it is here)
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = {}
    deadline = time.monotonic() + 240
    while len(pids) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        for v in ("1.0", "2.0", "3.0"):
            p = tmp_path / f"pid-{v}"
            if v not in pids and p.exists() and p.read_text():
                pids[v] = [int(x) for x in p.read_text().split()]
        time.sleep(0.05)
    assert len({ppid for _, ppid in pids.values()}) == 1  # forked from one zygote, a kept one
    zygote = next(iter(pids.values()))[1]
    assert os.getpgid(zygote) != os.getpgid(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    for v, (pid, _) in pids.items():
        assert (tmp_path / f"ki-{v}").read_text() == "KeyboardInterrupt"  # as python ends on ^C
        assert _wait_gone(pid, 30)
    assert not _gone(zygote)


def test_a_second_matrix_run_reuses_the_zygote(omni_venv, libs, wheelhouse, tmp_path):
    prog = "import os, lib; print('cell', lib.V, os.getppid())\n"
    (tmp_path / "prog.py").write_text(prog)
    env = {**omni_venv.env, "OMNIPKG_RUNTIME_DIR": os.environ["OMNIPKG_RUNTIME_DIR"]}
    seen = []
    for _ in range(2):
        proc = subprocess.run([str(omni_venv.path / "bin" / "pip-omni"), "run", "--matrix", "lib=1.0,2.0",
                               "--no-index", "-f", str(wheelhouse), "--stream", "--", "prog.py"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        found = {line.split()[-2]: int(line.split()[-1]) for line in proc.stdout.splitlines() if " cell " in line}
        assert found.keys() == {"1.0", "2.0"} and len(set(found.values())) == 1, proc.stdout
        seen.append(next(iter(found.values())))
    assert seen[0] == seen[1] and not _gone(seen[0])
    cli = str(omni_venv.path / "bin" / "pip-omni")
    status = subprocess.run([cli, "daemon", "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 3, status.stderr  # no daemon runs: the cell zygote is listed all the same
    (listed,) = json.loads(status.stdout)["cell_zygotes"]
    assert listed["pid"] == seen[0] and listed["socket"].startswith(os.environ["OMNIPKG_RUNTIME_DIR"])
    text = subprocess.run([cli, "daemon", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert f"kept cell zygote pid {seen[0]} " in text.stdout, text.stdout
    stop = subprocess.run([str(omni_venv.path / "bin" / "pip-omni"), "daemon", "stop", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(stop.stdout)["cell_zygotes"] == [seen[0]], stop.stderr
    assert _wait_gone(seen[0])


SLEEPY_TEST = """\
import os, signal, time, lib

def test_sleeps():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    open(os.path.join(here, "pid-" + lib.V), "w").write(f"{os.getpid()} {os.getppid()}")
    try:
        time.sleep(120)
    except KeyboardInterrupt:
        cleanup = float(os.environ.get("CLEANUP_" + lib.V.replace(".", "_"), "0"))
        if cleanup:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second ^C is not for this cleanup
            open(os.path.join(here, "stopping-" + lib.V), "w").close()
            time.sleep(cleanup)
        open(os.path.join(here, "ki-" + lib.V), "w").write("KeyboardInterrupt")
        raise
"""


def _sleepy_session(venv, wheelhouse, tmp_path, **env):
    """``pytest --omnipkg-matrix lib=1.0,2.0`` of :data:`SLEEPY_TEST`, in a session of its own."""
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_sleepy.py").write_text(SLEEPY_TEST)
    env = {**venv.env, "OMNIPKG_RUNTIME_DIR": os.environ["OMNIPKG_RUNTIME_DIR"], "PIP_FIND_LINKS": str(wheelhouse),
           **env}
    return subprocess.Popen([str(venv.python), "-m", "pytest", "--omnipkg-matrix", "lib=1.0,2.0",
                             "--omnipkg-jobs", "2", "-q", "suite"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_reaches_the_plugins_cells_of_a_kept_zygote(venv_with_pytest, libs, wheelhouse, tmp_path):
    proc = _sleepy_session(venv_with_pytest, wheelhouse, tmp_path)
    pids = {}
    deadline = time.monotonic() + 240
    while len(pids) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        for v in ("1.0", "2.0"):
            p = tmp_path / f"pid-{v}"
            if v not in pids and p.exists() and p.read_text():
                pids[v] = [int(x) for x in p.read_text().split()]
        time.sleep(0.05)
    zygote = next(iter(pids.values()))[1]
    assert {ppid for _, ppid in pids.values()} == {zygote} and os.getpgid(zygote) != os.getpgid(proc.pid)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err  # pytest's "interrupted"
    for v, (pid, _) in pids.items():
        assert (tmp_path / f"ki-{v}").read_text() == "KeyboardInterrupt"
        assert _wait_gone(pid, 30)


def test_a_second_ctrl_c_still_waits_for_the_plugins_cells(venv_with_pytest, libs, wheelhouse, tmp_path):
    """^C, then ^C again while the cells are still cleaning up (the first cell is the slower
    to stop): the session still waits for them (before, the interrupted join let it close
    the kept zygote's connection, which killed the cells mid-cleanup on CPython < 3.13)."""
    proc = _sleepy_session(venv_with_pytest, wheelhouse, tmp_path, CLEANUP_1_0="3", CLEANUP_2_0="0.2")

    def wait_for(prefix: str) -> None:
        deadline = time.monotonic() + 240
        while not all((tmp_path / f"{prefix}-{v}").exists() for v in ("1.0", "2.0")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)

    wait_for("pid")
    proc.send_signal(signal.SIGINT)
    wait_for("stopping")  # both cells are in their cleanup now
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out + err  # pytest's "interrupted"
    for v in ("1.0", "2.0"):
        assert (tmp_path / f"ki-{v}").read_text() == "KeyboardInterrupt"  # their cleanup ran to its end


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to connect as another uid")
def test_the_zygote_refuses_a_peer_of_another_uid(setup, runtime_dir):
    tmp, lib, env = setup
    out, _, z = _cell(env, tmp)
    kept = z.kept
    os.chmod(runtime_dir, 0o711)  # let uid 65534 reach the socket: only the zygote's check is left
    os.chmod(kept.dir, 0o711)
    os.chmod(kept.socket, 0o666)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.connect(kept.socket)
            s.settimeout(30)
            os.write(w, s.recv(100) or b"EOF")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read()
    assert os.waitpid(child, 0)[1] == 0
    assert got == b"EOF"  # closed, no READY
    log = open(os.path.join(kept.dir, "log")).read()
    assert f"pip-omni zygote {_ppid(out)}: refused a client of uid 65534" in log
    os.chmod(kept.socket, 0o600)
    os.chmod(kept.dir, 0o700)
    os.chmod(runtime_dir, 0o700)
    assert _ppid(_cell(env, tmp)[0]) == _ppid(out)  # and it still serves its user


# A run's imports (sys.modules at exit), the command run as the console script runs it.
_MODULES = ("import json, sys; from omnipkg_pip.cli import main; rc = main(sys.argv[1:]); "
            "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules))); sys.exit(rc)")
# What a run whose cells a kept zygote forks has no use for: it starts no process and
# hashes its key without OpenSSL (hashlib's first import loads it).
_NOT_WHEN_KEPT = {"subprocess", "_posixsubprocess", "hashlib", "_hashlib", "queue"}


def test_a_run_whose_zygote_is_kept_imports_no_process_machinery(omni_venv, libs, wheelhouse, tmp_path):
    env = {**omni_venv.env, "OMNIPKG_RUNTIME_DIR": os.environ["OMNIPKG_RUNTIME_DIR"]}
    args = [str(omni_venv.python), "-c", _MODULES, "run", "--matrix", "lib=1.0,2.0", "--no-index", "-f",
            str(wheelhouse), "--", "-c", "import lib; print(lib.V)"]
    imported = []
    for _ in range(2):
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert [line.split()[:3] for line in proc.stdout.splitlines() if line.startswith("lib=")] == \
            [["lib=1.0", HERE_VERSION, "0"], ["lib=2.0", HERE_VERSION, "0"]], proc.stdout
        imported.append(set(json.loads(proc.stderr.rsplit("MODULES ", 1)[1])))
    assert "subprocess" in imported[0]  # the first run started the zygote
    assert not imported[1] & _NOT_WHEN_KEPT, sorted(imported[1] & _NOT_WHEN_KEPT)


HERE_VERSION = ".".join(map(str, sys.version_info[:3]))


def test_the_key_hashes_as_hashlib_does(tmp_path):
    import hashlib

    from omnipkg_hook.workers import runtime

    paths = runtime.Paths(str(tmp_path), str(tmp_path / "rt"))
    assert paths.dir.endswith("d-" + hashlib.sha256(os.fsencode(str(tmp_path))).hexdigest()[:12])
