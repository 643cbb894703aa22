"""The calling side, shared by :class:`DaemonProxy` and :class:`WorkerPool`'s workers.

One :class:`Caller` owns one connection to a worker, i.e. one REPL session there, and
sends one request at a time (a lock serialises threads that share it). The warm path
is one ``sendall`` of a frame and one ``recv_into``; nothing else runs in between.

What happens when the worker goes away (the contract, tested):

- **during a call** (it crashed, was killed, timed out): that call raises
  :class:`WorkerCrashedError` (or :class:`WorkerTimeoutError`). It is never retried:
  it may have had effects. The next call starts a fresh worker.
- **between calls** (the daemon restarted or stopped it: idle expiry, the worker cap, a
  restart): the worker answers the next request with BYE, or the socket is already
  closed, so that request certainly did not run. If this session never used
  ``execute`` there is nothing to lose, and the caller reconnects and sends it again,
  transparently. If it did, its namespace is gone: that call raises
  :class:`WorkerCrashedError` saying so (nothing ran), and the next call gets a fresh
  session.
- after ``os.fork()`` the child's copies of callers drop their connections and start
  fresh sessions on first use; the parent's sessions are untouched.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import weakref

from ..errors import RemoteError, WorkerCrashedError, WorkerError, WorkerTimeoutError
from . import protocol as P
from .spawn import label

__all__ = ["ExecResult", "Caller"]

_DEFAULT = object()
_callers: weakref.WeakSet = weakref.WeakSet()


class ExecResult:
    """What ``execute`` returns: ``stdout``, ``stderr`` (str) and ``value`` (of the last
    expression, or None)."""

    __slots__ = ("stdout", "stderr", "value")

    def __init__(self, value, stdout: str, stderr: str) -> None:
        self.value = value
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"ExecResult(value={self.value!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"

    def __eq__(self, other):
        if not isinstance(other, ExecResult):
            return NotImplemented
        return (self.value, self.stdout, self.stderr) == (other.value, other.stdout, other.stderr)


class _Gone(Exception):
    """The worker left before reading the request (BYE, or a closed socket)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Caller:
    """``execute``/``call``/``ping`` over one worker connection.

    Subclasses provide ``_open() -> (Connection, info dict)`` and ``_kill(info, reason)``.
    """

    timeout: float | None = None

    def __init__(self, pins: tuple[str, ...], python: str, timeout: float | None = None) -> None:
        self.pins = pins
        self.python = python
        self.timeout = timeout
        self.info: dict = {}
        self._conn: P.Connection | None = None
        self._sock_timeout: float | None = None
        self._stateful = False
        self._closed = False
        self._lock = threading.Lock()
        _callers.add(self)

    def __repr__(self) -> str:
        pid = self.info.get("pid") if self._conn is not None else None
        return f"<{type(self).__name__} {label(self.pins)} pid={pid}>"

    @property
    def pid(self) -> int | None:
        """The worker's pid (connecting first if needed)."""
        with self._lock:
            if self._conn is None:
                self._connect()
            return self.info.get("pid")

    # -- to be provided ------------------------------------------------------------------

    def _open(self) -> tuple[P.Connection, dict]:
        raise NotImplementedError

    def _kill(self, info: dict, reason: str) -> None:
        raise NotImplementedError

    def _crash_details(self, info: dict) -> str:
        return ""

    # -- public --------------------------------------------------------------------------

    def execute(self, code: str, *, timeout=_DEFAULT) -> ExecResult:
        """Run ``code`` in this session's namespace; the value of its last expression,
        its stdout and stderr come back as an :class:`ExecResult`."""
        if not isinstance(code, str):
            raise TypeError(f"execute() takes source code as a str, not {type(code).__name__}")
        value, out, err = self._roundtrip(
            P.EXECUTE, P.dumps((code,)), self.timeout if timeout is _DEFAULT else timeout,
            "execute()", stateful=True,
        )
        return ExecResult(value, out, err)

    def call(self, target: str, /, *args, **kwargs):
        """``call("pkg.mod:func", *args, **kwargs)`` -> its return value. A target without a
        colon names something defined in this session by ``execute``. What the call
        prints is written to this process's ``sys.stdout``/``sys.stderr``."""
        value, out, err = self._roundtrip(
            P.CALL, P.dumps((target, args, kwargs)), self.timeout, "call()", stateful=":" not in target
        )
        if out:
            sys.stdout.write(out)
        if err:
            sys.stderr.write(err)
        return value

    def ping(self) -> int:
        """Round trip without running anything; returns the worker's pid."""
        return self._roundtrip(P.PING, P.dumps(()), self.timeout, "ping()", stateful=False)[0]

    def close(self) -> None:
        """Close this session (the worker forgets its namespace). Idempotent."""
        with self._lock:
            self._closed = True
            self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the round trip ------------------------------------------------------------------

    def _connect(self) -> P.Connection:
        if self._closed:
            raise WorkerError(f"{self!r} is closed")
        self._conn, self.info = self._open()
        self._sock_timeout = None
        self._stateful = False
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _roundtrip(self, kind: bytes, body: bytes, timeout, what: str, stateful: bool):
        with self._lock:
            for attempt in (1, 2):
                conn = self._conn or self._connect()
                if len(body) >= conn.max_frame:
                    raise WorkerError(
                        f"the request of {what} is {len(body)} bytes pickled, over the frame limit "
                        f"of {conn.max_frame} bytes; nothing was sent",
                        "pass a file path instead of the data, or raise max_frame",
                    )
                try:
                    return self._exchange(conn, kind, body, timeout, what, stateful)
                except _Gone as gone:
                    lost_state = self._stateful
                    self._drop()
                    if lost_state or attempt == 2:
                        detail = (
                            "its namespace from earlier execute() calls is gone"
                            if lost_state else "it left again at once"
                        )
                        raise WorkerCrashedError(
                            f"the worker for {label(self.pins)} went away between calls "
                            f"({gone.reason}); {detail}. This {what} did not run.",
                            "call again: the next call gets a fresh worker session",
                        ) from None
            raise AssertionError("unreachable")

    def _exchange(self, conn: P.Connection, kind, body, timeout, what, stateful):
        if timeout != self._sock_timeout:
            conn.sock.settimeout(timeout)
            self._sock_timeout = timeout
        try:
            conn.send(kind, body)
        except (BrokenPipeError, ConnectionResetError):
            raise _Gone(self._bye_reason(conn)) from None
        except socket.timeout:
            self._timed_out(what, timeout)
        except BaseException:
            self._drop()  # a frame may be half sent: this session cannot be trusted
            raise
        if stateful:
            self._stateful = True
        try:
            rkind, rbody = conn.recv()
        except socket.timeout:
            self._timed_out(what, timeout)
        except (EOFError, OSError) as e:
            self._drop()
            info = self.info
            raise WorkerCrashedError(
                f"the worker for {label(self.pins)} (pid {info.get('pid')}) died during {what}"
                f"{self._crash_details(info)}",
                "the call did not complete; the next call starts a fresh worker "
                "(its stderr, or the daemon's log, may say why it died)",
            ) from (e if isinstance(e, P.ProtocolError) else None)
        except BaseException:  # KeyboardInterrupt while waiting: the reply would come later
            self._drop()
            self._abandoned()
            raise
        if rkind == P.RESULT:
            try:
                return P.loads(rbody)
            except Exception as e:
                raise WorkerError(
                    f"the result of {what} cannot be unpickled here: {type(e).__name__}: {e}",
                    "return plain data (str, numbers, lists, dicts) or types importable in this process",
                ) from e
        if rkind == P.ERROR:
            err = _remote(self, what, rbody)
            raise err
        if rkind == P.BYE:
            (reason,) = P.loads(rbody)
            raise _Gone(reason)
        self._drop()
        raise WorkerCrashedError(f"the worker for {label(self.pins)} answered {what} with {rkind!r}")

    def _bye_reason(self, conn: P.Connection) -> str:
        """The worker closed its end: read the BYE it may have left before going."""
        try:
            conn.sock.setblocking(False)
            kind, body = conn.recv()
            if kind == P.BYE:
                return P.loads(body)[0]
        except Exception:
            pass
        return "its connection was closed"

    def _timed_out(self, what: str, timeout) -> None:
        info = self.info
        self._drop()
        self._kill(info, f"{what} timed out after {timeout:g} s")
        raise WorkerTimeoutError(
            f"{what} on the worker for {label(self.pins)} (pid {info.get('pid')}) took longer "
            f"than {timeout:g} s; the worker was killed",
            "the next call starts a fresh worker; raise the timeout if the work is legitimately slow",
        ) from None

    def _abandoned(self) -> None:
        """The caller stopped waiting for a reply (Ctrl-C); the pool kills its own worker."""

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self._conn is not None:
            self._conn.close()  # our copy of the fd only; the parent's session goes on
        self._conn = None
        self._stateful = False


def _remote(caller: Caller, what: str, body) -> RemoteError:
    name, message, text, out, err = P.loads(body)
    e = RemoteError(
        f"{name}: {message}", remote_type=name, remote_message=message, remote_traceback=text,
        stdout=out, stderr=err,
    )
    e.__cause__ = _RemoteTraceback(text)
    return e


class _RemoteTraceback(Exception):
    """Shows the worker's traceback above the local one (as concurrent.futures does)."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\n" + self.tb.rstrip() + "\n\n(the traceback above comes from the worker process)"


def _reset_after_fork() -> None:
    for caller in list(_callers):
        caller._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
