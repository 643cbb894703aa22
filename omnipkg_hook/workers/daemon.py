"""The worker daemon: one per user per store, keeping warm workers for many clients.

Started on demand by :class:`~omnipkg_hook.workers.DaemonClient` or by ``pip-omni daemon
start``, as ``python -E -c BOOT .../workers/_boot.py daemon --store S --runtime-base B
--detach``; the files it uses are described in :mod:`omnipkg_hook.workers.runtime`.
It never listens on a network port.

Life of a client connection: accept -> peer uid check -> HMAC handshake (no pickle
and at most 1 KiB read before it succeeds) -> requests (OPEN, KILL, STATUS, STOP,
PING; see :mod:`~omnipkg_hook.workers.protocol`). OPEN does not relay calls: the
daemon makes a socketpair, hands one end to the worker (ATTACH) and the other to the
client (FD), so the warm path is client <-> worker with nothing in between.

The pool of warm workers (zygotes, polling, idle expiry, the cap, KILL) is
:mod:`omnipkg_hook.workers.warm`.

Stopping (STOP, SIGTERM, SIGINT, or the socket file removed or replaced): stop
accepting, remove the socket and pid files, QUIT everything, wait ``quit_grace``, kill
what is left, release the lock. Clients dying at any point cost the daemon one thread.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, fields

from ..errors import OmnipkgError, WorkerError
from . import protocol as P
from .runtime import FileLock, Paths, load_key, peer_uid, read_rss
from .warm import WarmPool

__all__ = ["DaemonConfig", "Daemon", "AlreadyRunning", "main", "encode_error"]

MAX_PREAUTH_CONNECTIONS = 64


@dataclass
class DaemonConfig:
    """Settings of a daemon; used when this process is the one that starts it.

    Defaults come from ``OMNIPKG_DAEMON_IDLE_TIMEOUT`` (seconds),
    ``OMNIPKG_DAEMON_EXIT_TIMEOUT`` (seconds), ``OMNIPKG_DAEMON_MAX_WORKERS`` and
    ``OMNIPKG_DAEMON_ZYGOTES`` (0/1) when set. ``idle_timeout``: an idle worker exits;
    ``exit_timeout``: the daemon exits once it has had no worker and no client that long
    (0: never).
    """

    idle_timeout: float = 600.0
    exit_timeout: float = 300.0
    max_workers: int = 8
    zygotes: bool = sys.platform.startswith("linux")
    spawn_timeout: float = 120.0
    quit_grace: float = 5.0
    handshake_timeout: float = P.HANDSHAKE_TIMEOUT
    max_frame: int = P.MAX_FRAME
    poll_interval: float = 0.0  # 0: a quarter of idle_timeout, between 0.05 and 1 s

    @classmethod
    def from_env(cls, **overrides) -> DaemonConfig:
        env = os.environ
        values: dict = {}
        if env.get("OMNIPKG_DAEMON_IDLE_TIMEOUT"):
            values["idle_timeout"] = float(env["OMNIPKG_DAEMON_IDLE_TIMEOUT"])
        if env.get("OMNIPKG_DAEMON_EXIT_TIMEOUT"):
            values["exit_timeout"] = float(env["OMNIPKG_DAEMON_EXIT_TIMEOUT"])
        if env.get("OMNIPKG_DAEMON_MAX_WORKERS"):
            values["max_workers"] = int(env["OMNIPKG_DAEMON_MAX_WORKERS"])
        if env.get("OMNIPKG_DAEMON_ZYGOTES"):
            values["zygotes"] = env["OMNIPKG_DAEMON_ZYGOTES"] not in ("0", "false", "no", "")
        values.update(overrides)
        return cls(**values)

    @property
    def tick(self) -> float:
        """How often workers are polled (STAT) and expiry is checked."""
        if self.poll_interval > 0:
            return self.poll_interval
        return max(0.05, min(1.0, self.idle_timeout / 4))

    def to_argv(self) -> list[str]:
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            out += [f"--{f.name.replace('_', '-')}", str(int(value) if isinstance(value, bool) else value)]
        return out

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        defaults = cls.from_env()
        for f in fields(cls):
            kind = {"float": float, "int": int, "bool": lambda s: s not in ("0", "false", "no")}[
                f.type if isinstance(f.type, str) else f.type.__name__
            ]
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=getattr(defaults, f.name))

    @classmethod
    def from_args(cls, args) -> DaemonConfig:
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None) -> None:
        super().__init__(f"a daemon is already running (pid {pid})")
        self.pid = pid


def encode_error(exc: BaseException) -> bytes:
    """The ERROR body of a daemon reply: (class name, message, hint, remote fields)."""
    if isinstance(exc, OmnipkgError):
        remote = {k: getattr(exc, k) for k in ("remote_type", "remote_message", "remote_traceback") if hasattr(exc, k)}
        return P.dumps((type(exc).__name__, exc.message, exc.hint, remote))
    return P.dumps(("WorkerError", f"{type(exc).__name__}: {exc}", None, {}))


class Daemon:
    def __init__(self, paths: Paths, config: DaemonConfig) -> None:
        self.paths = paths
        self.config = config
        self.lock = threading.Lock()  # counters below; the pool has its own
        self.pool = WarmPool(paths.store, config, self.log, paths.log)
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.clients = 0
        self.preauth = 0
        self.started = time.time()
        self.idle_since: float | None = None  # no worker and no client since (monotonic)
        self._log_lock = threading.Lock()
        self._key_stat = None
        self._key = b""
        self._wake_r, self._wake_w = os.pipe()

    # -- start-up ------------------------------------------------------------------------

    def bind(self) -> None:
        """Take the lock, clear a crashed daemon's files, listen. Raises AlreadyRunning."""
        paths = self.paths.prepare()
        self._load_key()
        self.daemon_lock = FileLock(paths.lock)
        if not self.daemon_lock.acquire(blocking=False):
            raise AlreadyRunning(paths.read_pid())
        for stale in (paths.socket, paths.pid):
            try:
                os.unlink(stale)
                self.log(f"removed stale {stale} (a previous daemon did not exit cleanly)")
            except FileNotFoundError:
                pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is born 0600: no window with wider modes
        try:
            listener.bind(paths.socket)
        finally:
            os.umask(old)
        os.chmod(paths.socket, 0o600)
        listener.listen(64)
        self.listener = listener
        self.sock_ino = os.stat(paths.socket).st_ino
        tmp = paths.pid + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()}\n")
        os.replace(tmp, paths.pid)
        self.log(f"listening on {paths.socket} for store {paths.store} ({self.config})")

    def _load_key(self) -> bytes:
        try:
            st = os.stat(self.paths.key)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp is None or stamp != self._key_stat:
            self._key = load_key(self.paths.key, create=True)
            self._key_stat = stamp
        return self._key

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._log_lock:
            try:
                sys.stderr.write(f"{stamp} pip-omni daemon[{os.getpid()}]: {message}\n")
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    # -- the main loop -------------------------------------------------------------------

    def serve(self) -> int:
        if threading.current_thread() is threading.main_thread():  # tests run it in a thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda signum, frame: self.request_stop(f"signal {signum}"))
        threading.Thread(target=self._sweeper, name="sweeper", daemon=True).start()
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.listener:
                        try:
                            sock, _ = self.listener.accept()
                        except OSError:
                            continue
                        threading.Thread(target=self._client, args=(sock,), daemon=True).start()
        finally:
            self._shutdown()
        return 0

    def request_stop(self, reason: str) -> None:
        if not self.stopping.is_set():
            self.stop_reason = reason
            self.stopping.set()
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def _shutdown(self) -> None:
        self.log(f"stopping: {self.stop_reason}")
        try:
            if os.stat(self.paths.socket).st_ino == self.sock_ino:
                os.unlink(self.paths.socket)
        except OSError:
            pass
        self.listener.close()
        if self.paths.read_pid() == os.getpid():
            try:
                os.unlink(self.paths.pid)
            except OSError:
                pass
        self.pool.close(f"the daemon stopped ({self.stop_reason})")
        self.daemon_lock.release()
        self.log("stopped")

    # -- clients -------------------------------------------------------------------------

    def _client(self, sock: socket.socket) -> None:
        try:
            uid = peer_uid(sock)
            if uid is not None and uid != os.geteuid():
                self.log(f"refused a connection from uid {uid}")
                return
            with self.lock:
                if self.preauth >= MAX_PREAUTH_CONNECTIONS:
                    self.log("refused a connection: too many unauthenticated connections")
                    return
                self.preauth += 1
            conn = P.Connection(sock, self.config.max_frame)
            try:
                sock.settimeout(self.config.handshake_timeout)
                P.server_handshake(conn, self._load_key())
                sock.settimeout(None)
            except (EOFError, OSError, OmnipkgError) as e:
                self.log(f"refused a client: {type(e).__name__}: {e}")
                return
            finally:
                with self.lock:
                    self.preauth -= 1
            with self.lock:
                self.clients += 1
            try:
                self._serve_client(conn)
            finally:
                with self.lock:
                    self.clients -= 1
        except Exception:
            self.log("client thread failed:\n" + traceback.format_exc())
        finally:
            sock.close()

    def _serve_client(self, conn: P.Connection) -> None:
        while not self.stopping.is_set():
            try:
                kind, body = conn.recv()
            except (EOFError, OSError):
                return
            try:
                if kind == P.OPEN:
                    pins, python, _options = P.loads(body)
                    try:
                        sock, info = self.pool.open(tuple(pins), python)
                    except Exception as e:
                        conn.send(P.ERROR, encode_error(e))
                        continue
                    try:
                        conn.send_fds(P.FD, P.dumps(info), [sock.fileno()])
                    finally:
                        sock.close()
                elif kind == P.PING:
                    conn.send_obj(P.RESULT, {"pid": os.getpid(), "store": self.paths.store})
                elif kind == P.KILL:
                    wid, reason = P.loads(body)
                    conn.send_obj(P.RESULT, self.pool.kill(wid, reason))
                elif kind == P.STATUS:
                    conn.send_obj(P.RESULT, self.status())
                elif kind == P.STOP:
                    conn.send_obj(P.RESULT, {"pid": os.getpid()})
                    self.request_stop("asked by a client")
                    return
                else:
                    conn.send(P.ERROR, encode_error(WorkerError(f"unknown request {kind!r}")))
                    return
            except OSError:
                return

    # -- housekeeping --------------------------------------------------------------------

    def _sweeper(self) -> None:
        while not self.stopping.wait(self.config.tick):
            try:
                self._sweep()
            except Exception:
                self.log("sweep failed:\n" + traceback.format_exc())

    def _sweep(self) -> None:
        self.pool.sweep()
        self._expire()
        try:
            if os.stat(self.paths.socket).st_ino != self.sock_ino:
                self.request_stop("the socket file was replaced")
        except FileNotFoundError:
            self.request_stop("the socket file was removed")

    def _expire(self) -> None:
        """Stop once there has been no worker and no client for ``exit_timeout`` seconds."""
        with self.lock:
            busy = self.clients > 0 or self.preauth > 0
        busy = busy or self.pool.busy()
        now = time.monotonic()
        if busy:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = now
        elif 0 < self.config.exit_timeout <= now - self.idle_since:
            self.request_stop(f"no worker and no client for {now - self.idle_since:.0f} s "
                              f"(exit timeout {self.config.exit_timeout:g} s)")

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict:
        with self.lock:
            clients = self.clients
        return {
            "running": True,
            "pid": os.getpid(),
            "store": self.paths.store,
            "socket": self.paths.socket,
            "log": self.paths.log,
            "python": sys.executable,
            "uptime_seconds": round(time.time() - self.started, 3),
            "clients": clients,
            "rss_bytes": read_rss(os.getpid()),
            "config": {
                "idle_timeout": self.config.idle_timeout,
                "exit_timeout": self.config.exit_timeout,
                "max_workers": self.config.max_workers,
                "zygotes": self.config.zygotes,
            },
            **self.pool.status(),
        }


# -- the process -------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m omnipkg_hook.workers.daemon")
    parser.add_argument("--store", required=True)
    parser.add_argument("--runtime-base", default=None)
    parser.add_argument("--detach", action="store_true")
    DaemonConfig.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    paths = Paths(args.store, args.runtime_base)
    config = DaemonConfig.from_args(args)
    os.environ.pop("OMNIPKG_PINS", None)
    os.environ["OMNIPKG_STORE"] = paths.store
    if args.detach:
        return _detach(paths, config)
    daemon = Daemon(paths, config)
    try:
        daemon.bind()
    except AlreadyRunning as e:
        print(f"running {e.pid}", flush=True)
        return 0
    print(f"ok {os.getpid()}", flush=True)
    os.chdir("/")
    return daemon.serve()


def _detach(paths: Paths, config: DaemonConfig) -> int:
    """Double fork; the first process reports the daemon's start-up (``ok PID``,
    ``running PID`` or the error) and exits when the daemon is listening."""
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(pid, 0)
        message = b"".join(chunks).decode("utf-8", "replace")
        if message.startswith(("ok ", "running ")):
            print(message.strip(), flush=True)
            return 0
        sys.stderr.write(message or f"the daemon exited during start-up; see {paths.log}\n")
        return 1
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    try:
        paths.prepare()
        _rotate(paths.log)
        fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)
        os.chdir("/")
        daemon = Daemon(paths, config)
        daemon.bind()
    except AlreadyRunning as e:
        os.write(w, f"running {e.pid}\n".encode())
        os._exit(0)
    except BaseException as e:
        text = str(e) if isinstance(e, OmnipkgError) else traceback.format_exc()
        os.write(w, f"the daemon could not start: {text}\n".encode())
        os._exit(1)
    os.write(w, f"ok {os.getpid()}\n".encode())
    os.close(w)
    return daemon.serve()


def _rotate(log: str, limit: int = 1 << 20) -> None:
    try:
        if os.path.getsize(log) > limit:
            os.replace(log, log + ".1")
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
