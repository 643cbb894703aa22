"""The daemon's pool of warm workers: one per (pins, interpreter), zygotes, expiry, the cap.

A new worker is forked by the zygote of its pin set (started, with the pins applied
and the pinned packages imported, the first time the pin set is asked for) or spawned
when zygotes are off or unsafe. :meth:`WarmPool.open` gives the daemon a new client
connection to a worker: a socketpair whose other end the worker got as ATTACH.

:meth:`WarmPool.sweep` runs every ``tick``: it asks each worker for its STATs (an
unanswered STAT means the worker is busy); a worker with no sessions, idle longer than
``idle_timeout``, is asked to QUIT. When a new worker would go over ``max_workers``,
one is asked to QUIT too: one without sessions if there is one, else an idle one, the
least recently used first. A QUIT worker finishes its current call, says BYE to its
clients and exits; after ``quit_grace`` seconds it is killed. :meth:`WarmPool.kill` (a
client's call timed out) kills at once. A dead worker is noticed by its reader thread
(EOF on its control socket: the sentinel), logged with its exit status, and replaced
on the next open. Zygotes with no live worker expire after ``idle_timeout`` as well.
"""

from __future__ import annotations

import socket
import threading
import time
import traceback
from collections import OrderedDict

from ..errors import OmnipkgError, WorkerError
from . import protocol as P
from . import spawn
from .runtime import read_rss

__all__ = ["WarmPool"]


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


class WarmPool:
    """Warm workers and zygotes of one daemon; thread-safe (one lock, short sections)."""

    def __init__(self, store: str, config, log, log_path: str = "") -> None:
        self.store = store
        self.config = config
        self.log = log
        self.log_path = log_path
        self.lock = threading.Lock()
        self.workers: OrderedDict[tuple, _Worker] = OrderedDict()  # least recently opened first
        self.leaving: dict[str, _Worker] = {}
        self.by_id: dict[str, _Worker] = {}
        self.zygotes: dict[tuple, _Zygote] = {}
        self.no_zygote: dict[tuple, str] = {}
        self.closed = False
        self._seq = 0

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
                # the next STAT will count this session; until then, count it ourselves
                w.stats = {**w.stats, "clients": w.stats.get("clients", 0) + 1}
            return ours, self._public(w)
        raise WorkerError(f"the worker for {spawn.label(key[0])} keeps dying as soon as it starts",
                          f"see the daemon's log: {self.log_path}")

    def _worker_for(self, key: tuple) -> _Worker:
        with self.lock:
            if self.closed:
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
            python, pins, store=self.store, zygote=zygote, isolate_env=True, cwd="/",
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
        w.proc.wait_dead(5.0)  # answer once it is gone: the caller's next call reconnects cleanly
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

    def busy(self) -> bool:
        """Whether any worker is starting, ready, busy or still leaving (the daemon's exit timeout waits)."""
        with self.lock:
            return bool(self.workers or self.leaving)

    def sweep(self) -> None:
        """Poll workers (STAT), expire idle ones and zygotes, kill who ignored QUIT."""
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

    def _public(self, w: _Worker) -> dict:
        return {"id": w.id, "pid": w.proc.pid, "pins": list(w.pins), "python": w.python, "via": w.via}

    def status(self) -> dict:
        """``workers``, ``zygotes`` and ``no_zygote`` of the daemon's status (see the CLI docs)."""
        now = time.monotonic()
        with self.lock:
            workers = list(self.workers.values()) + list(self.leaving.values())
            zygotes = list(self.zygotes.values())
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

    def close(self, reason: str) -> None:
        """Refuse new workers, QUIT every worker and zygote, kill what has not left
        after ``quit_grace``."""
        with self.lock:
            self.closed = True
            workers = list(self.workers.values()) + list(self.leaving.values())
            zygotes = list(self.zygotes.values())
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
