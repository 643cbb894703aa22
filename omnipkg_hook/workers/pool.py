"""Workers owned by the calling process, without a daemon.

::

    with WorkerPool() as pool:
        w = pool.get("rich==13.5.3")          # started now: a bad pin fails here, clearly
        w.execute("import rich; rich.__file__").value
        w.call("rich:get_console")            # (returns the value; prints go to our stdout)

One worker per (pins, interpreter), started with the caller's environment and working
directory (so ``call("mymodule:f")`` finds what ``python`` would find there). Its
control socket is also its one session, so a pool worker has one namespace. A worker
that crashes or times out is started again on the next call; the timeout kills it.
Workers end with :meth:`WorkerPool.close` (idempotent), when the pool is garbage
collected, or when this process exits (their control socket closes, they leave).
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import weakref

from ..errors import WorkerError
from . import protocol as P
from . import spawn
from .remote import Caller

__all__ = ["WorkerPool", "PooledWorker"]


class PooledWorker(Caller):
    """A worker of a :class:`WorkerPool`: ``execute``, ``call``, ``ping``, ``pid``, ``stop``."""

    def __init__(self, pool: WorkerPool, pins: tuple[str, ...], python: str) -> None:
        super().__init__(pins, python, pool.timeout)
        self._pool = pool
        self._proc: spawn.Process | None = None

    def _open(self):
        pool = self._pool
        if pool._closed:
            raise WorkerError("the WorkerPool is closed")
        self._reap()
        proc = spawn.spawn(
            self.python, self.pins, store=pool.store, env=pool.env, cwd=pool.cwd, max_frame=pool.max_frame
        )
        self._proc = proc
        info = proc.wait_ready(pool.start_timeout)
        return proc.conn, info

    def _kill(self, info: dict, reason: str) -> None:
        if self._proc is not None:
            self._proc.kill()

    def _abandoned(self) -> None:
        self._kill(self.info, "abandoned")

    def _crash_details(self, info: dict) -> str:
        return self._proc.exit_status() if self._proc is not None else ""

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.close()
            if proc.popen is not None and proc.popen.poll() is None:
                try:
                    proc.popen.wait(1.0)
                except Exception:
                    proc.kill()
                    proc.popen.wait()

    def stop(self, wait: float = 1.0) -> None:
        """Stop this worker: it leaves after its current call, or is killed after ``wait``
        seconds (a call pending in another thread then fails with WorkerCrashedError).
        Idempotent; the handle is closed afterwards."""
        self._shutdown()
        self._finish(wait)

    def _shutdown(self) -> None:
        self._closed = True
        conn = self._conn
        if conn is not None:
            try:
                conn.sock.shutdown(socket.SHUT_WR)  # the worker reads EOF and leaves
            except OSError:
                pass

    def _finish(self, wait: float) -> None:
        proc = self._proc
        if proc is not None and proc.popen is not None:
            try:
                proc.popen.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.popen.wait()
        if self._lock.acquire(blocking=False):
            try:
                self._drop()
                if self._proc is not None:
                    self._proc.close()
                    self._proc = None
            finally:
                self._lock.release()

    def _after_fork(self) -> None:
        super()._after_fork()
        self._proc = None  # the parent's child, not ours


class WorkerPool:
    """Spawn and stop workers owned by this process, keyed by (pins, interpreter)."""

    def __init__(
        self,
        *,
        store: str | None = None,
        timeout: float | None = None,
        start_timeout: float = 120.0,
        max_frame: int = P.MAX_FRAME,
        env: dict | None = None,
        cwd: str | None = None,
    ) -> None:
        if store is None:
            from ..store import find_store

            store = find_store()
        self.store = os.path.abspath(store)
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.max_frame = max_frame
        self.env = env
        self.cwd = cwd
        self._closed = False
        self._lock = threading.Lock()
        self._workers: dict[tuple, PooledWorker] = {}
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def __repr__(self) -> str:
        return f"<WorkerPool store={self.store!r} workers={len(self._workers)}>"

    def get(self, *pins, python: str | None = None) -> PooledWorker:
        """The worker for these pins (started now if it is not running)."""
        key = (spawn.canonical_pins(pins), spawn.resolve_python(python))
        with self._lock:
            if self._closed:
                raise WorkerError("the WorkerPool is closed")
            worker = self._workers.get(key)
            if worker is None or worker._closed:
                worker = self._workers[key] = PooledWorker(self, *key)
        worker.pid  # noqa: B018 -- start it now, so a bad pin fails at get()
        return worker

    def workers(self) -> list[PooledWorker]:
        with self._lock:
            return [w for w in self._workers.values() if not w._closed]

    def stop(self, *pins, python: str | None = None) -> None:
        key = (spawn.canonical_pins(pins), spawn.resolve_python(python))
        with self._lock:
            worker = self._workers.pop(key, None)
        if worker is not None:
            worker.stop()

    def close(self) -> None:
        """Stop every worker. Idempotent."""
        with self._lock:
            self._closed = True
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _stop_all(workers: dict) -> None:
    items = list(workers.values())
    workers.clear()
    for worker in items:
        worker._shutdown()  # each worker reads EOF on its control socket and leaves ...
    for worker in items:
        worker._finish(1.0)  # ... or is killed after a second
