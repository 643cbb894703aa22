"""The worker daemon: one per user per store, keeping warm workers for many clients.

Started on demand by :class:`~omnipkg_hook.workers.DaemonClient` or by ``pip-omni daemon
start`` as ``python -E -c BOOT <dir> daemon --store S --runtime-base B --detach``; the
files it uses are described in :mod:`omnipkg_hook.workers.runtime`. It never listens
on a network port.

Life of a client connection: accept -> peer uid check -> HMAC handshake (no pickle
and at most 1 KiB read before it succeeds) -> requests (OPEN, KILL, STATUS, STOP,
PING; see :mod:`~omnipkg_hook.workers.protocol`). OPEN does not relay calls: the
daemon makes a socketpair, hands one end to the worker (ATTACH) and the other to the
client (FD), so the warm path is client <-> worker with nothing in between.

The pool: one worker per (pins, interpreter). A new worker is forked by the zygote of
its pin set (started, with the pins applied and the pinned packages imported, the
first time the pin set is asked for) or spawned when zygotes are off or unsafe.
Every ``tick`` the daemon asks each worker for its STATs (an unanswered STAT means
the worker is busy). A worker with no clients, idle longer than ``idle_timeout``, is
asked to QUIT; when a new worker would go over ``max_workers``, one is asked to QUIT
too: one without sessions if there is one, else an idle one, the least recently used
first. A QUIT worker finishes its current call, says BYE to its clients and
exits; after ``quit_grace`` seconds it is killed. KILL (a client's call timed out)
kills at once. A dead worker is noticed by its reader thread (EOF on its control
socket), logged with its exit status, and replaced on the next OPEN. Zygotes with no
live worker expire after ``idle_timeout`` as well.

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
from collections import OrderedDict
from dataclasses import dataclass, fields

from ..errors import OmnipkgError, WorkerError
from . import protocol as P
from . import spawn
from .runtime import FileLock, Paths, load_key, peer_uid, read_rss

__all__ = ["DaemonConfig", "Daemon", "AlreadyRunning", "main", "encode_error"]

MAX_PREAUTH_CONNECTIONS = 64


@dataclass
class DaemonConfig:
    """Settings of a daemon; used when this process is the one that starts it.

    Defaults come from ``OMNIPKG_DAEMON_IDLE_TIMEOUT`` (seconds),
    ``OMNIPKG_DAEMON_MAX_WORKERS`` and ``OMNIPKG_DAEMON_ZYGOTES`` (0/1) when set.
    """

    idle_timeout: float = 600.0
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


class _Worker:
    def __init__(self, wid: str, key: tuple) -> None:
        self.id = wid
        self.key = key
        self.pins, self.python = key
        self.proc: spawn.Process | None = None
        self.via = "spawn"
        self.state = "starting"  # -> ready -> leaving -> dead
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.created = time.time()
        self.last_open = time.monotonic()
        self.opens = 0
        self.stats: dict = {}
        self.stat_time: float | None = None
        self.stat_sent: float | None = None
        self.quit_sent: float | None = None
        self.send_lock = threading.Lock()
        self.gone = threading.Event()  # set by its reader thread when the worker has exited

    def idle(self, now: float) -> float | None:
        """Seconds since its last call ended, per its last STAT; None while it looks busy
        (a STAT unanswered for more than 0.2 s: the worker is inside a call)."""
        if self.stat_time is None or (self.stat_sent is not None and now - self.stat_sent > 0.2):
            return None
        return self.stats.get("idle", 0.0) + (now - self.stat_time)

    def last_active(self, now: float) -> float:
        idle = self.idle(now)
        return max(now if idle is None else now - idle, self.last_open)


class _Zygote:
    def __init__(self, key: tuple, proc: spawn.Process) -> None:
        self.key = key
        self.proc = proc
        self.forks = 0
        self.last_used = time.monotonic()
        self.created = time.time()


class Daemon:
    def __init__(self, paths: Paths, config: DaemonConfig) -> None:
        self.paths = paths
        self.config = config
        self.lock = threading.Lock()
        self.workers: OrderedDict[tuple, _Worker] = OrderedDict()  # least recently opened first
        self.leaving: dict[str, _Worker] = {}
        self.by_id: dict[str, _Worker] = {}
        self.zygotes: dict[tuple, _Zygote] = {}
        self.no_zygote: dict[tuple, str] = {}
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.clients = 0
        self.preauth = 0
        self.started = time.time()
        self._seq = 0
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
        with self.lock:
            workers = list(self.workers.values()) + list(self.leaving.values())
            zygotes = list(self.zygotes.values())
        reason = f"the daemon stopped ({self.stop_reason})"
        for w in workers:
            self._quit(w, reason)
        for z in zygotes:
            try:
                z.proc.conn.send_obj(P.QUIT, (reason,))
            except OSError:
                pass
        deadline = time.monotonic() + self.config.quit_grace
        for w in workers:
            if w.proc is not None and not w.gone.wait(max(0.0, deadline - time.monotonic())):
                w.proc.kill()
        for z in zygotes:
            _wait_gone(z.proc, deadline)
            z.proc.close()
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
                        sock, info = self.open(tuple(pins), python)
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
                    conn.send_obj(P.RESULT, self.kill(wid, reason))
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

    # -- the pool ------------------------------------------------------------------------

    def open(self, pins: tuple, python: str) -> tuple[socket.socket, dict]:
        """A new client connection to the worker for (pins, python), starting it if needed."""
        key = (spawn.canonical_pins(pins), python)
        for _attempt in range(3):
            w = self._worker_for(key)
            if not w.ready.wait(self.config.spawn_timeout + 10):
                raise WorkerError(f"the worker for {spawn.label(w.pins)} is still not ready")
            if w.error is not None:
                raise w.error
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with w.send_lock:
                    w.proc.conn.send_fds(P.ATTACH, b"", [theirs.fileno()])
            except OSError:
                ours.close()
                self._forget(w)
                continue
            finally:
                theirs.close()
            with self.lock:
                w.last_open = time.monotonic()
                w.opens += 1
                # the next STAT will count this session; until then, count it ourselves
                w.stats = {**w.stats, "clients": w.stats.get("clients", 0) + 1}
            return ours, self._public(w)
        raise WorkerError(f"the worker for {spawn.label(key[0])} keeps dying as soon as it starts",
                          f"see the daemon's log: {self.paths.log}")

    def _worker_for(self, key: tuple) -> _Worker:
        with self.lock:
            if self.stopping.is_set():
                raise WorkerError("the daemon is stopping", "try again in a moment")
            w = self.workers.get(key)
            if w is not None and w.state in ("starting", "ready"):
                self.workers.move_to_end(key)
                return w
            self._make_room()
            self._seq += 1
            w = _Worker(f"w{self._seq}", key)
            self.workers[key] = w
            self.by_id[w.id] = w
        self._start(w)
        return w

    def _start(self, w: _Worker) -> None:
        try:
            proc = None
            if self.config.zygotes and w.key not in self.no_zygote:
                z = self._zygote(w.key)
                if z is not None:
                    try:
                        proc = spawn.fork_from(z.proc)
                        w.via = "zygote"
                        z.forks += 1
                        z.last_used = time.monotonic()
                    except WorkerError as e:
                        self.log(f"zygote for {spawn.label(w.pins)} failed ({e}); spawning instead")
                        self._drop_zygote(z)
            if proc is None:
                proc = self._spawn(w.key)
            w.proc = proc
            proc.wait_ready(self.config.spawn_timeout)
            with self.lock:
                w.state = "ready"
                w.stat_time = time.monotonic()
                w.stats = {"idle": 0.0, "clients": 0, "calls": 0}
            threading.Thread(target=self._reader, args=(w,), name=f"reader-{w.id}", daemon=True).start()
            self.log(f"worker {w.id} pid {proc.pid} ready for {spawn.label(w.pins, w.python)} via {w.via}")
        except BaseException as e:
            w.error = e if isinstance(e, OmnipkgError) else WorkerError(f"{type(e).__name__}: {e}")
            self.log(f"worker {w.id} for {spawn.label(w.pins)} could not start: {e}")
            self._forget(w)
            if w.proc is not None:
                w.proc.kill()
                w.proc.close()
        finally:
            w.ready.set()

    def _spawn(self, key: tuple, zygote: bool = False) -> spawn.Process:
        pins, python = key
        return spawn.spawn(
            python, pins, store=self.paths.store, zygote=zygote, isolate_env=True, cwd="/",
            max_frame=self.config.max_frame,
        )

    def _zygote(self, key: tuple) -> _Zygote | None:
        with self.lock:
            z = self.zygotes.get(key)
        if z is not None:
            if z.proc.alive():
                return z
            self._drop_zygote(z)
        proc = self._spawn(key, zygote=True)
        try:
            info = proc.wait_ready(self.config.spawn_timeout)
        except BaseException:
            proc.close()
            raise
        if not info.get("fork_safe"):
            reason = f"{info.get('threads')} threads were running after its imports; forking would be unsafe"
            self.log(f"no zygote for {spawn.label(key[0])}: {reason}")
            with self.lock:
                self.no_zygote[key] = reason
            proc.kill()
            proc.close()
            return None
        z = _Zygote(key, proc)
        with self.lock:
            self.zygotes[key] = z
            excess = len(self.zygotes) - self.config.max_workers
            victims = sorted(
                (v for k, v in self.zygotes.items() if k not in self.workers and v is not z),
                key=lambda v: v.last_used,
            )[: max(0, excess)]
        for v in victims:
            self._drop_zygote(v)
        self.log(f"zygote pid {proc.pid} ready for {spawn.label(key[0])}; preloaded {info.get('preloaded')}")
        return z

    def _drop_zygote(self, z: _Zygote) -> None:
        with self.lock:
            if self.zygotes.get(z.key) is z:
                del self.zygotes[z.key]
        try:
            z.proc.conn.send_obj(P.QUIT, ("dropped",))
        except OSError:
            pass
        if not _wait_gone(z.proc, time.monotonic() + 1.0):
            z.proc.kill()
        z.proc.close()

    def _forget(self, w: _Worker) -> None:
        with self.lock:
            w.state = "dead"
            if self.workers.get(w.key) is w:
                del self.workers[w.key]
            self.leaving.pop(w.id, None)
            self.by_id.pop(w.id, None)

    def _reader(self, w: _Worker) -> None:
        """Read STAT answers until EOF, which is the worker's death (its sentinel)."""
        conn = w.proc.conn
        try:
            while True:
                kind, body = conn.recv()
                if kind == P.RESULT:
                    stats = P.loads(body)
                    with self.lock:
                        w.stats, w.stat_time, w.stat_sent = stats, time.monotonic(), None
                else:
                    self.log(f"worker {w.id} sent an unexpected {kind!r}")
        except (EOFError, OSError):
            pass
        except Exception:
            self.log(f"reader of worker {w.id} failed:\n{traceback.format_exc()}")
        self._forget(w)
        status = w.proc.exit_status(wait=self.config.quit_grace + 1)
        with w.send_lock:
            w.proc.close()
        w.gone.set()
        self.log(f"worker {w.id} pid {w.proc.pid} ({spawn.label(w.pins)}) exited{status}")

    def _quit(self, w: _Worker, reason: str) -> None:
        """Ask a worker to leave after its current call (killed after quit_grace)."""
        with self.lock:
            if w.state == "dead" or w.quit_sent is not None:
                return
            if self.workers.get(w.key) is w:
                del self.workers[w.key]
            w.state = "leaving"
            w.quit_sent = time.monotonic()
            self.leaving[w.id] = w
        self.log(f"worker {w.id} pid {w.proc.pid if w.proc else '?'}: leaving ({reason})")
        if w.proc is None:
            return
        try:
            with w.send_lock:
                w.proc.conn.send_obj(P.QUIT, (reason,))
        except OSError:
            w.proc.kill()

    def kill(self, wid: str, reason: str) -> bool:
        with self.lock:
            w = self.by_id.get(wid)
        if w is None or w.proc is None or w.state == "dead":
            return False
        self.log(f"killing worker {w.id} pid {w.proc.pid}: {reason}")
        self._forget(w)
        w.proc.kill()
        return True

    def _make_room(self) -> None:
        """At the cap, ask the least valuable worker to leave (called with the lock held)."""
        now = time.monotonic()
        live = [w for w in self.workers.values() if w.state in ("starting", "ready")]
        excess = len(live) + 1 - self.config.max_workers
        candidates = sorted(
            (w for w in live if w.state == "ready"),
            key=lambda w: (w.stats.get("clients", 0) > 0, w.idle(now) is None, w.last_active(now)),
        )
        reason = f"evicted: the daemon's cap of {self.config.max_workers} workers was reached"
        for w in candidates[: max(0, excess)]:
            # _quit takes the lock itself; we hold it, so do its bookkeeping inline
            del self.workers[w.key]
            w.state = "leaving"
            w.quit_sent = now
            self.leaving[w.id] = w
            threading.Thread(target=self._send_quit, args=(w, reason), daemon=True).start()

    def _send_quit(self, w: _Worker, reason: str) -> None:
        self.log(f"worker {w.id} pid {w.proc.pid}: leaving ({reason})")
        try:
            with w.send_lock:
                w.proc.conn.send_obj(P.QUIT, (reason,))
        except OSError:
            w.proc.kill()

    # -- housekeeping --------------------------------------------------------------------

    def _sweeper(self) -> None:
        while not self.stopping.wait(self.config.tick):
            try:
                self._sweep()
            except Exception:
                self.log("sweep failed:\n" + traceback.format_exc())

    def _sweep(self) -> None:
        now = time.monotonic()
        cfg = self.config
        stat, expire, kill, zygotes_out = [], [], [], []
        with self.lock:
            for w in self.workers.values():
                if w.state != "ready":
                    continue
                idle = w.idle(now)
                if (
                    idle is not None and idle >= cfg.idle_timeout
                    and w.stats.get("clients", 1) == 0 and now - w.last_open >= cfg.idle_timeout
                ):
                    expire.append(w)
                elif w.stat_sent is None:
                    w.stat_sent = now
                    stat.append(w)
            for w in self.leaving.values():
                if w.quit_sent is not None and now - w.quit_sent > cfg.quit_grace:
                    kill.append(w)
            live_keys = {k for k, w in self.workers.items() if w.state in ("starting", "ready")}
            for key, z in self.zygotes.items():
                if key in live_keys:
                    z.last_used = now
                elif now - z.last_used >= cfg.idle_timeout or (z.proc.popen and z.proc.popen.poll() is not None):
                    zygotes_out.append(z)
        for w in stat:
            try:
                with w.send_lock:
                    w.proc.conn.send(P.STAT)
            except OSError:
                pass
        for w in expire:
            self._quit(w, f"idle for more than {cfg.idle_timeout:g} s")
        for w in kill:
            self.log(f"worker {w.id} pid {w.proc.pid} did not leave within {cfg.quit_grace:g} s; killing it")
            self._forget(w)
            w.proc.kill()
        for z in zygotes_out:
            self.log(f"zygote pid {z.proc.pid} for {spawn.label(z.key[0])}: expired")
            self._drop_zygote(z)
        try:
            if os.stat(self.paths.socket).st_ino != self.sock_ino:
                self.request_stop("the socket file was replaced")
        except FileNotFoundError:
            self.request_stop("the socket file was removed")

    # -- status --------------------------------------------------------------------------

    def _public(self, w: _Worker) -> dict:
        return {"id": w.id, "pid": w.proc.pid, "pins": list(w.pins), "python": w.python, "via": w.via}

    def status(self) -> dict:
        now = time.monotonic()
        with self.lock:
            workers = list(self.workers.values()) + list(self.leaving.values())
            zygotes = list(self.zygotes.values())
            clients = self.clients
            no_zygote = {spawn.label(k[0]): v for k, v in self.no_zygote.items()}
        out_workers = []
        for w in workers:
            pid = w.proc.pid if w.proc is not None else None
            idle = w.idle(now) if w.state == "ready" else None
            out_workers.append({
                "id": w.id,
                "pid": pid,
                "pins": list(w.pins),
                "python": w.python,
                "python_version": (w.proc.info.get("version") if w.proc is not None else None),
                "state": "busy" if w.state == "ready" and idle is None else w.state,
                "via": w.via,
                "clients": w.stats.get("clients", 0),
                "calls": w.stats.get("calls", 0),
                "idle_seconds": None if idle is None else round(idle, 3),
                "age_seconds": round(time.time() - w.created, 3),
                "rss_bytes": read_rss(pid) if pid else None,
            })
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
                "max_workers": self.config.max_workers,
                "zygotes": self.config.zygotes,
            },
            "workers": out_workers,
            "zygotes": [
                {
                    "pid": z.proc.pid,
                    "pins": list(z.key[0]),
                    "python": z.key[1],
                    "forks": z.forks,
                    "preloaded": z.proc.info.get("preloaded", []),
                    "age_seconds": round(time.time() - z.created, 3),
                    "rss_bytes": read_rss(z.proc.pid),
                }
                for z in zygotes
            ],
            "no_zygote": no_zygote,
        }


def _wait_gone(proc: spawn.Process, deadline: float) -> bool:
    """Wait until ``proc`` exits (or ``deadline``); kill it if it has not. True if it left."""
    while True:
        if not proc.alive():
            return True
        if time.monotonic() >= deadline:
            proc.kill()
            if proc.popen is not None:
                try:
                    proc.popen.wait(2.0)
                except Exception:
                    pass
            return False
        time.sleep(0.01)


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
