"""Cells forked from a zygote: the owner's side of ``runner --zygote``.

A cell of ``pip-omni run --matrix`` or of ``pytest --omnipkg-matrix`` is a whole run of a
program with its pins. Started as a new interpreter, each cell pays the interpreter's
start, ``import pytest`` and pytest's plugins again (about half of a small suite's cell).
:class:`CellZygote` starts one process per interpreter instead (``runner --zygote``, under
that interpreter through ``_boot.py``, with the caller's environment and directory) that
imports those once, and forks every cell from it (see
:mod:`omnipkg_hook.workers.runner` and :func:`omnipkg_hook.workers.zygote.serve_cells`).
A cell so made is a child of the zygote, with the descriptors the owner handed over as
its stdout and stderr; the zygote reports how it ended.

Only on Linux (fork without exec is unsafe with macOS's system frameworks), and never
across interpreters: a zygote only forks cells of its own interpreter. A cell whose pins
reroute a module the zygote has imported (an axis over pytest, pluggy or iniconfig) is
refused by its child before it runs anything; :meth:`CellZygote.start` then returns None
and the caller starts that cell the slow way. ``OMNIPKG_MATRIX_FORK=0`` turns forking off.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading

from omnipkg_hook.errors import WorkerCrashedError
from omnipkg_hook.workers import protocol as P
from omnipkg_hook.workers import spawn

__all__ = ["CellZygote", "enabled", "preload_for"]


def enabled() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork") and \
        os.environ.get("OMNIPKG_MATRIX_FORK", "1").strip().lower() not in ("0", "false", "no", "off")


def preload_for(target: list[str]) -> list[str]:
    """What a zygote for ``target`` imports ahead: pytest for a pytest run, else nothing."""
    if target[:2] in (["-m", "pytest"], ["-m", "py.test"]):
        return ["pytest"]
    return []


class CellZygote:
    """One interpreter's zygote of cells; thread-safe. ``env``: as :func:`spawn.worker_env`
    makes it. Started at once; :meth:`ready` waits for it (the caller does other work in
    the meantime) and raises :class:`OmnipkgError` when it could not start -- the caller
    then starts its cells the slow way."""

    def __init__(self, python: str, env: dict, cwd: str | None, preload: list[str], timeout: float = 60.0) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = ["--zygote", "--fd", str(theirs.fileno())]
        for name in preload:
            args += ["--preload", name]
        try:
            popen = subprocess.Popen(spawn.command(python, "runner", args), pass_fds=[theirs.fileno()], env=env,
                                     cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.proc = spawn.Process(P.Connection(ours), popen.pid, popen, "zygote-process", f"cell zygote of {python}")
        self.timeout = timeout
        self._started = threading.Lock()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._replies: queue.Queue = queue.Queue()
        self._ended: dict[int, int | None] = {}
        self._cond = threading.Condition()
        self._dead = False
        self._reader: threading.Thread | None = None

    def ready(self) -> CellZygote:
        with self._started:
            if self._reader is None and self._error is None:
                try:
                    info = self.proc.wait_ready(self.timeout)
                    if not info.get("fork_safe"):
                        raise WorkerCrashedError(f"{info.get('threads')} threads ran in the {self.proc.what} after "
                                                 "its imports; forking would be unsafe")
                except BaseException as e:
                    self._error = e
                    self.close()
                else:
                    self._reader = threading.Thread(target=self._read, name="cell-zygote", daemon=True)
                    self._reader.start()
            if self._error is not None:
                raise self._error
        return self

    def _read(self) -> None:
        try:
            while True:
                kind, body = self.proc.conn.recv()
                if kind == P.EXITED:
                    pid, status = P.loads(body)
                    with self._cond:
                        self._ended[pid] = status
                        self._cond.notify_all()
                elif kind == P.RESULT:
                    self._replies.put(P.loads(body)[0])
                else:
                    self._replies.put(spawn.remote_error("the cell zygote could not fork", body))
        except (EOFError, OSError):
            pass
        with self._cond:
            self._dead = True
            self._cond.notify_all()
        self._replies.put(WorkerCrashedError(f"the {self.proc.what} exited{self.proc.exit_status(0.1)}"))

    def start(self, pins: list[str], target: list[str], source: bytes | None, *, out: int, err: int,
              env: dict | None = None, extra: dict[str, int] | None = None) -> int | None:
        """Fork a cell writing to ``out``/``err`` (the caller closes its copies); its pid, or
        None when the cell must be started the slow way. ``extra``: an environment variable
        naming each descriptor passed along (the pytest plugin's report pipe)."""
        notice_r, notice_w = os.pipe()
        names = list(extra or {})
        spec = {"pins": ",".join(pins), "target": list(target), "source": source, "env": dict(env or {}),
                "fd_env": {name: i for i, name in enumerate(names)}}
        try:
            with self._lock:
                self.proc.conn.send_fds(P.FORK, P.dumps(spec), [out, err, notice_w, *(extra[n] for n in names)])
                reply = self._replies.get()
        except OSError as e:
            os.close(notice_r)
            raise WorkerCrashedError(f"the {self.proc.what} is gone: {e}") from None
        finally:
            os.close(notice_w)
        if isinstance(reply, BaseException):
            os.close(notice_r)
            raise reply
        with os.fdopen(notice_r, "rb") as f:  # closed by the child when the program starts
            refused = f.read()
        if refused:
            self.wait(reply)
            return None
        return reply

    def wait(self, pid: int) -> int:
        """The cell's exit status (a signal as 128 + N); 1 with a line on stderr if the zygote died first."""
        with self._cond:
            while pid not in self._ended and not self._dead:
                self._cond.wait()
            status = self._ended.pop(pid, None)
        if status is None:
            print(f"pip-omni: the cell process {pid} lost its zygote; its exit status is unknown", file=sys.stderr)
            return 1
        return 128 - status if status < 0 else status

    def close(self) -> None:
        """QUIT; the zygote exits at once (its cells have ended, or go on as orphans)."""
        try:
            self.proc.conn.send_obj(P.QUIT, ("done",))
        except OSError:
            self.proc.kill()
        self.proc.close()
