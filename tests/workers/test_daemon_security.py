"""Who may talk to the daemon: directory and file modes, peer uid, the key, pre-auth abuse."""

from __future__ import annotations

import os
import pickle
import select
import socket
import stat
import struct
import threading

import pytest
from conftest import linux_only

from omnipkg_hook.errors import DaemonError
from omnipkg_hook.workers import DaemonClient, DaemonProxy
from omnipkg_hook.workers import protocol as P
from omnipkg_hook.workers.daemon import Daemon, DaemonConfig
from omnipkg_hook.workers.runtime import Paths, load_key, peer_uid, secure_dir

pytestmark = pytest.mark.timeout(60)


def _mode(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_modes_of_everything_the_daemon_makes(daemons):
    client = daemons.client()
    paths = daemons.paths
    assert _mode(paths.base) == 0o700
    assert _mode(paths.dir) == 0o700
    assert stat.S_ISSOCK(os.lstat(paths.socket).st_mode)
    assert _mode(paths.socket) == 0o600
    assert _mode(paths.key) == 0o600
    assert _mode(paths.log) == 0o600
    assert paths.read_pid() == client.ping()["pid"] == daemons.pid()
    assert os.lstat(paths.socket).st_uid == os.geteuid()


@linux_only
def test_no_network_port(daemons):
    client = daemons.client()
    pid = client.ping()["pid"]
    inodes = {os.stat(f"/proc/{pid}/fd/{fd}").st_ino for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            assert int(row.split()[9]) not in inodes, f"the daemon has an {table} socket: {row}"


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701])
def test_runtime_dir_with_loose_mode_is_refused(runtime, mode):
    os.makedirs(runtime)
    os.chmod(runtime, mode)
    with pytest.raises(DaemonError, match=f"has mode {mode:04o}; it must be 0700"):
        secure_dir(runtime)


def test_runtime_dir_that_is_a_symlink_is_refused(runtime, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    os.symlink(target, runtime)
    with pytest.raises(DaemonError, match="is not a directory"):
        secure_dir(runtime)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a directory owned by someone else")
def test_runtime_dir_owned_by_another_user_is_refused(runtime):
    os.makedirs(runtime, mode=0o700)
    os.chown(runtime, 65534, 65534)
    with pytest.raises(DaemonError, match="belongs to uid 65534"):
        secure_dir(runtime)


def test_loose_key_file_is_refused(runtime):
    secure_dir(runtime)
    key = os.path.join(runtime, "key")
    load_key(key)
    os.chmod(key, 0o644)
    with pytest.raises(DaemonError, match="mode 0600"):
        load_key(key)


def test_key_is_created_once_atomically_under_a_race(runtime):
    secure_dir(runtime)
    key = os.path.join(runtime, "key")
    results = []
    threads = [threading.Thread(target=lambda: results.append(load_key(key))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results[0]) == 32
    assert [f for f in os.listdir(runtime) if f != "key"] == []


def test_a_wrong_key_is_refused_and_the_daemon_carries_on(daemons):
    good = daemons.client()
    proxy = DaemonProxy(good)
    with pytest.raises(DaemonError, match="do not share a key"):
        DaemonClient(daemons.store, runtime_dir=daemons.runtime, start=False, authkey=b"w" * 32)
    assert proxy.execute("6 * 7").value == 42
    assert DaemonProxy(daemons.client()).execute("1").value == 1


def _raw(paths: Paths) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(paths.socket)
    return s


def _closed(s: socket.socket) -> bool:
    """The daemon closed this connection (EOF or reset), after sending whatever it sent."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True


ABUSE = {
    "oversized header": struct.pack(">I", 2**31) + b"a" + b"x" * 100,
    "just over the pre-auth cap": struct.pack(">I", P.PREAUTH_MAX_FRAME + 1) + b"a" * (P.PREAUTH_MAX_FRAME + 1),
    "truncated header": b"\x00\x00",
    "truncated body": struct.pack(">I", 65) + b"a" + b"x" * 10,
    "zero length": b"\x00\x00\x00\x00",
    "wrong type": P.frame(P.OPEN, b"x" * 64),
    "answer of the wrong size": P.frame(b"a", b"x" * 10),
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(ABUSE))
def test_malformed_pre_auth_input_is_refused_without_harm(daemons, name):
    client = daemons.client()
    proxy = DaemonProxy(client)
    s = _raw(daemons.paths)
    kind, body = P.Connection(s).recv()
    assert kind == b"h" and body.startswith(P.MAGIC)
    try:
        s.sendall(ABUSE[name])
    except (BrokenPipeError, ConnectionResetError):
        pass
    if name.startswith("truncated"):
        s.shutdown(socket.SHUT_WR)
    assert _closed(s)
    s.close()
    assert proxy.execute("'still here'").value == "still here"
    assert client.status()["running"]


def test_no_pickle_is_read_before_authentication(daemons, tmp_path):
    """A pickle that would create a file if anyone unpickled it, sent in place of ANSWER."""
    client = daemons.client()
    marker = tmp_path / "pwned"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    s = _raw(daemons.paths)
    P.Connection(s).recv()
    s.sendall(P.frame(b"a", pickle.dumps(Boom())[:64].ljust(64, b".")))
    assert _closed(s)
    s2 = _raw(daemons.paths)
    P.Connection(s2).recv()
    s2.sendall(P.frame(P.OPEN, pickle.dumps(Boom())))
    assert _closed(s2)
    assert not marker.exists()
    assert client.ping()["pid"] == daemons.pid()


def test_a_silent_connection_blocks_no_one(daemons):
    client = daemons.client(handshake_timeout=120)
    proxy = DaemonProxy(client)
    silent = [_raw(daemons.paths) for _ in range(5)]
    half = _raw(daemons.paths)
    half.sendall(b"\x00\x00\x00")  # a header that never completes
    assert DaemonProxy(daemons.client()).execute("1").value == 1
    assert proxy.call("builtins:len", "abc") == 3
    for s in silent + [half]:  # ... served while those were all still pending
        # the CHALLENGE may still be on its way under load: wait for it, then read it
        assert select.select([s], [], [], 60)[0], "no CHALLENGE within 60 s"
        s.setblocking(False)
        assert s.recv(4096)[4:5] == b"h"  # the CHALLENGE, and the connection is still open
        with pytest.raises(BlockingIOError):
            s.recv(1)
        s.close()


def test_handshake_timeout_drops_a_stalled_peer(daemons):
    daemons.client(handshake_timeout=0.3)
    s = _raw(daemons.paths)
    P.Connection(s).recv()
    assert _closed(s)  # the daemon gave up on us (the socket's own timeout is 10 s)


def test_peer_uid_of_a_socketpair_is_ours():
    a, b = socket.socketpair()
    assert peer_uid(a) == os.geteuid()
    a.close()
    b.close()


def test_daemon_refuses_a_peer_with_another_uid(wstore, runtime, monkeypatch):
    """SO_PEERCRED says another uid: closed before the challenge (in-process daemon)."""
    from omnipkg_hook.workers import daemon as daemon_module

    paths = Paths(wstore, runtime)
    d = Daemon(paths, DaemonConfig(zygotes=False, quit_grace=1.0))
    d.bind()
    t = threading.Thread(target=d.serve, daemon=True)
    t.start()
    try:
        monkeypatch.setattr(daemon_module, "peer_uid", lambda sock: os.geteuid() + 1)
        s = _raw(paths)
        assert s.recv(100) == b""  # no CHALLENGE at all
        s.close()
        monkeypatch.undo()
        monkeypatch.setenv("OMNIPKG_RUNTIME_DIR", runtime)
        c = DaemonClient(wstore, runtime_dir=runtime, start=False)
        assert c.ping()["pid"] == os.getpid()
        c.close()
    finally:
        d.request_stop("test over")
        t.join(10)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_another_uid_cannot_even_reach_the_socket(daemons):
    daemons.client()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(daemons.paths.socket)
                os.write(w, b"connected")
            except PermissionError:
                os.write(w, b"refused")
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 20) == b"refused"
    os.waitpid(pid, 0)
    os.close(r)


def test_stale_socket_and_pid_files_are_cleaned_up(daemons):
    paths = daemons.paths.prepare()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(paths.socket)  # bound, never listening: connect() is refused, like a dead daemon's
    stale.close()
    with open(paths.pid, "w") as f:
        f.write(f"{os.getpid()}\n")  # a pid that is alive, but not a daemon
    assert os.path.exists(paths.socket)
    client = daemons.client()
    pid = client.ping()["pid"]
    assert pid != os.getpid() and paths.read_pid() == pid
    assert DaemonProxy(client).execute("1").value == 1
    with open(paths.log) as f:
        assert "removed stale" in f.read()


def test_daemon_killed_with_sigkill_leaves_files_that_do_not_block(daemons):
    import signal

    client = daemons.client()
    proxy = DaemonProxy(client)
    worker = proxy.pid
    old = client.ping()["pid"]
    os.kill(old, signal.SIGKILL)
    from conftest import process_gone, wait_for

    wait_for(lambda: process_gone(old), what="the daemon to die")
    assert os.path.exists(daemons.paths.socket)  # left behind
    wait_for(lambda: process_gone(worker), what="its orphaned worker to leave")
    fresh = DaemonClient(daemons.store, runtime_dir=daemons.runtime, config=daemons.config())
    assert fresh.ping()["pid"] not in (old, None)
    assert DaemonProxy(fresh).execute("2").value == 2
    fresh.close()
