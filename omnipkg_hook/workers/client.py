"""Talking to the daemon: :class:`DaemonClient` and :class:`DaemonProxy`.

``DaemonClient()`` connects to the daemon of the store (``OMNIPKG_STORE``, else
pyproject.toml, else the default), starting it detached if none runs. Two clients
starting it at once are serialised by ``start.lock``; the daemon itself refuses to run
twice (its ``lock``), so at most one daemon per store ever listens. The client checks
the daemon's uid as the daemon checks the client's, and both prove knowledge of the
per-user key (see :mod:`omnipkg_hook.workers.protocol`).

``DaemonProxy(client, "rich==13.5.3")`` asks the daemon for a connection to the
worker of those pins (started now if needed: a pin that cannot be satisfied raises
here) and then talks to that worker directly. Each proxy is its own REPL session in
the shared worker: ``execute`` namespaces are per proxy, imported modules are per
worker. What happens when workers or the daemon go away is described in
:mod:`omnipkg_hook.workers.remote`; in short, when the daemon restarts while a proxy
is held, the proxy reconnects by itself on its next call (starting the daemon again if
need be) unless that would silently lose the namespace built by earlier ``execute``
calls, in which case that one call raises :class:`WorkerCrashedError` (without running)
and the following calls work on a fresh session.

A :class:`DaemonClient` reconnects likewise: every daemon request is idempotent
except STOP, which is never retried and never starts a daemon.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref

from .. import errors
from ..errors import DaemonError, WorkerError
from . import protocol as P
from . import spawn
from .daemon import DaemonConfig
from .remote import Caller
from .runtime import FileLock, Paths, load_key, peer_uid

__all__ = ["DaemonClient", "DaemonProxy", "daemon_pid", "start_daemon"]

_clients: weakref.WeakSet = weakref.WeakSet()


def daemon_pid(paths: Paths) -> int | None:
    """The pid of the daemon of ``paths`` if one runs (its lock is held), else None."""
    if not os.path.isdir(paths.dir):
        return None
    if FileLock(paths.lock).held_elsewhere():
        return paths.read_pid() or -1
    return None


def start_daemon(paths: Paths, config: DaemonConfig, timeout: float = 60.0) -> int:
    """Start the daemon of ``paths`` detached unless one runs; its pid."""
    paths.prepare()
    lock = FileLock(paths.start_lock)
    if not lock.acquire(timeout=timeout):
        raise DaemonError(
            f"timed out waiting for another process to start the daemon ({paths.start_lock})",
            f"see its log: {paths.log}",
        )
    try:
        pid = daemon_pid(paths)
        if pid is not None:
            return pid
        env = spawn.worker_env(os.environ, paths.store)
        cmd = spawn.command(
            sys.executable, "daemon",
            ["--store", paths.store, "--runtime-base", paths.base, "--detach", *config.to_argv()],
            isolate_env=True,
        )
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd="/", env=env,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise DaemonError(f"the daemon did not start within {timeout:g} s", f"see its log: {paths.log}") from None
        if proc.returncode != 0:
            text = (proc.stderr or proc.stdout).strip()
            raise DaemonError(
                f"the daemon did not start: {text.splitlines()[-1] if text else f'exit status {proc.returncode}'}",
                f"full output above the last line: {text[-2000:]!r}; its log: {paths.log}",
            )
        words = proc.stdout.split()
        return int(words[1]) if len(words) >= 2 and words[1].isdigit() else -1
    finally:
        lock.release()


def _daemon_error(body) -> Exception:
    name, message, hint, remote = P.loads(body)
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.OmnipkgError)):
        cls = WorkerError
    try:
        err = cls(message, hint, **remote) if remote else cls(message, hint)
    except TypeError:
        err = WorkerError(message, hint)
    if isinstance(err, errors.RemoteError) and err.remote_traceback:
        from .remote import _RemoteTraceback

        err.__cause__ = _RemoteTraceback(err.remote_traceback)
    return err


class DaemonClient:
    """A connection to the daemon of one store (started on demand when ``start``).

    Lifetime: a daemon this client starts is detached and outlives the script, so the next
    script finds its warm workers. While a client is open the daemon stays; once it has had
    no worker and no client for its exit timeout (``DaemonConfig.exit_timeout``, default
    300 s, ``OMNIPKG_DAEMON_EXIT_TIMEOUT``; 0 = never) it exits by itself. Idle workers
    leave after ``idle_timeout`` (default 600 s). ``close()`` ends this connection (the
    daemon stays); ``stop()`` stops the daemon and its workers now.
    """

    def __init__(
        self,
        store: str | None = None,
        *,
        runtime_dir: str | None = None,
        start: bool = True,
        config: DaemonConfig | None = None,
        authkey: bytes | None = None,
        timeout: float = 60.0,
    ) -> None:
        if store is None:
            from ..store import find_store

            store = find_store()
        self.paths = Paths(store, runtime_dir).prepare()
        self.store = self.paths.store
        self.config = config if config is not None else DaemonConfig.from_env()
        self.max_frame = self.config.max_frame
        self.timeout = timeout
        self._start = start
        self._authkey = authkey
        self._conn: P.Connection | None = None
        self._lock = threading.Lock()
        self.daemon_pid: int | None = None
        with self._lock:
            self._connect(start)
        _clients.add(self)

    def __repr__(self) -> str:
        return f"<DaemonClient store={self.store!r} daemon pid={self.daemon_pid}>"

    # -- connection ----------------------------------------------------------------------

    def _dial(self) -> P.Connection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.paths.socket)
            uid = peer_uid(sock)
            if uid is not None and uid != os.geteuid():
                raise DaemonError(
                    f"the daemon socket {self.paths.socket!r} is served by uid {uid}, not by you",
                    "remove the runtime directory's contents, or set OMNIPKG_RUNTIME_DIR",
                )
            conn = P.Connection(sock, self.max_frame, fds=True)
            key = self._authkey if self._authkey is not None else load_key(self.paths.key)
            try:
                P.client_handshake(conn, key)
            except P.AuthenticationError as e:
                raise DaemonError(
                    f"the daemon at {self.paths.socket!r} and this client do not share a key: {e}",
                    f"if {self.paths.key!r} was replaced, restart the daemon: `pip-omni daemon stop`",
                ) from None
            except P.ProtocolError as e:
                raise DaemonError(
                    f"the daemon at {self.paths.socket!r} broke off the handshake: {e}",
                    "a daemon of another pip-omni version may be running: `pip-omni daemon stop`",
                ) from None
            except EOFError:
                raise DaemonError(
                    f"the daemon at {self.paths.socket!r} closed the connection during the handshake",
                    f"see its log: {self.paths.log}",
                ) from None
            sock.settimeout(None)
            return conn
        except BaseException:
            sock.close()
            raise

    def _connect(self, start: bool) -> P.Connection:
        try:
            conn = self._dial()
        except (FileNotFoundError, ConnectionRefusedError):
            if not start:
                raise DaemonError(
                    f"no daemon is running for the store {self.store!r}",
                    "start it with `pip-omni daemon start` (DaemonClient() starts it by default)",
                ) from None
            start_daemon(self.paths, self.config, self.timeout)
            conn = self._dial()
        self._conn = conn
        self.daemon_pid = None
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, kind: bytes, obj, *, start: bool, retry: bool = True, timeout: float | None = None):
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn or self._connect(start)
                try:
                    conn.sock.settimeout(timeout)
                    conn.send_obj(kind, obj)
                    rkind, body = conn.recv()
                except (EOFError, OSError) as e:
                    self._drop()
                    if isinstance(e, socket.timeout):
                        raise DaemonError(f"the daemon did not answer within {timeout:g} s",
                                          f"see its log: {self.paths.log}") from None
                    if retry and attempt == 1:
                        continue
                    raise DaemonError(
                        f"lost the connection to the daemon ({type(e).__name__}: {e})",
                        f"see its log: {self.paths.log}",
                    ) from None
                fd = conn.take_fd() if rkind == P.FD else None
                if rkind == P.ERROR:
                    raise _daemon_error(body)
                return rkind, body, fd
            raise AssertionError("unreachable")

    # -- requests ------------------------------------------------------------------------

    def open_worker(self, pins: tuple[str, ...], python: str) -> tuple[socket.socket, dict]:
        """A new session with the worker of (pins, python): our end of its socket and its info."""
        rkind, body, fd = self._request(
            P.OPEN, (tuple(pins), python, {}), start=self._start, timeout=self.config.spawn_timeout + 30
        )
        if fd is None:
            raise DaemonError(f"the daemon answered OPEN with {rkind!r} and no connection")
        sock = socket.socket(fileno=fd)
        sock.setblocking(True)
        return sock, P.loads(body)

    def kill_worker(self, worker_id: str, reason: str = "") -> bool:
        return P.loads(self._request(P.KILL, (worker_id, reason), start=False, timeout=self.timeout)[1])

    def ping(self) -> dict:
        info = P.loads(self._request(P.PING, (), start=self._start, timeout=self.timeout)[1])
        self.daemon_pid = info.get("pid")
        return info

    def status(self) -> dict:
        """The daemon's status (the shape is documented in ``omnipkg_pip.commands.daemon``)."""
        return P.loads(self._request(P.STATUS, (), start=False, timeout=self.timeout)[1])

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the daemon and wait until it (and its workers) are gone. Never retried."""
        try:
            self._request(P.STOP, (), start=False, retry=False, timeout=self.timeout)
        except DaemonError:
            if daemon_pid(self.paths) is None:
                return False
            raise
        finally:
            with self._lock:
                self._drop()
        deadline = time.monotonic() + timeout
        while daemon_pid(self.paths) is not None:
            if time.monotonic() > deadline:
                raise DaemonError(f"the daemon did not stop within {timeout:g} s", f"see its log: {self.paths.log}")
            time.sleep(0.02)
        return True

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._conn is not None:
            self._conn.close()  # our copy of the fd only
        self._conn = None


class DaemonProxy(Caller):
    """A session with the daemon's worker for some pins: ``execute``, ``call``, ``ping``.

    ``DaemonProxy(client, "rich==13.5.3")``, ``DaemonProxy(client, "a==1", "b==2")`` or
    ``DaemonProxy(client, ["a==1", "b==2"])``; ``timeout`` (seconds, default None) bounds
    each call, waiting behind other sessions of the same worker included; when it passes
    the worker is killed (its other sessions' calls fail with WorkerCrashedError) and
    the call raises WorkerTimeoutError.
    """

    def __init__(self, client: DaemonClient, *pins, python: str | None = None, timeout: float | None = None) -> None:
        super().__init__(spawn.canonical_pins(pins), spawn.resolve_python(python), timeout)
        self.client = client
        with self._lock:
            self._connect()

    def _open(self):
        sock, info = self.client.open_worker(self.pins, self.python)
        return P.Connection(sock, self.client.max_frame), info

    def _kill(self, info: dict, reason: str) -> None:
        try:
            self.client.kill_worker(info["id"], reason)
        except DaemonError:  # the daemon is gone: the worker is ours to stop
            try:
                os.kill(info["pid"], signal.SIGKILL)
            except OSError:
                pass


def _reset_after_fork() -> None:
    for client in list(_clients):
        client._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
