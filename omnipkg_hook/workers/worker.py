"""The worker process: a REPL-like loop that runs code for its clients.

``python -m omnipkg_hook.workers --fd N [--pins P]`` (or the same through
:data:`omnipkg_hook.workers.spawn.BOOT`) applies the pins with the hook's own
``omnipkg_hook.startup.run()`` before anything else, says READY (or why it could not
start) on the control socket ``N``, and then serves frames (see
:mod:`omnipkg_hook.workers.protocol`):

- the control connection comes from the owner (a :class:`WorkerPool` or the daemon);
  it may carry calls too (the pool's case) and alone may ATTACH new client
  connections, ask for STATs, or QUIT;
- every connection has its own namespace for ``execute``: a proxy is a REPL session;
  modules (``sys.modules``) are shared by all sessions of the worker;
- user ``sys.stdout``/``sys.stderr`` are captured per call and returned with the
  result. Output written to the file descriptors directly (C code, child processes)
  goes to the worker's stderr -- the caller's stderr for a pool, the daemon's log for
  the daemon. The protocol never runs over stdio, so nothing a user prints can corrupt it;
- ``SystemExit`` and ``KeyboardInterrupt`` raised by user code are errors for that call
  only; the worker goes on. SIGINT is ignored (a pool worker shares the terminal's
  process group with its owner, whose Ctrl-C is the owner's business);
- a result that cannot be pickled, or is over the frame limit, is an ERROR for that
  call; the worker goes on.

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import ast
import importlib
import io
import linecache
import os
import pickle
import selectors
import socket
import sys
import time
import traceback

from . import protocol as P

__all__ = ["WorkerLoop", "apply_pins", "describe_exception", "run_started", "worker_info"]

_THIS_FILE = __file__
_CODE_CACHE_SIZE = 512


def describe_exception(exc: BaseException, skip_file: str | None = _THIS_FILE) -> tuple[str, str, str]:
    """``(qualified type name, message, traceback text)``, leaving out this module's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == skip_file:
        tb = tb.tb_next
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    try:
        message = str(exc)
    except Exception as e:  # a broken __str__ must not take the worker down
        message = f"<str() failed: {e!r}>"
    try:
        text = "".join(traceback.format_exception(cls, exc, tb))
    except Exception as e:
        text = f"{name}: {message}\n<traceback could not be formatted: {e!r}>\n"
    return name, message, text


def apply_pins(pins: str | None) -> None:
    """Put ``pins`` in ``OMNIPKG_PINS`` (children inherit it) and let the hook apply them.

    ``pins=None`` keeps whatever the environment says. The hook runs strict here: at
    interpreter start-up a pin that cannot be satisfied is only a warning (the process
    starts unpinned), but a worker asked for a version must never quietly run another
    one, so any error of the hook propagates and the owner reports it to the client.
    """
    if pins is not None:
        if pins:
            os.environ["OMNIPKG_PINS"] = pins
        else:
            os.environ.pop("OMNIPKG_PINS", None)
    from omnipkg_hook.startup import run

    strict = os.environ.get("OMNIPKG_STRICT")
    os.environ["OMNIPKG_STRICT"] = "1"
    try:
        run(exit_on_error=False)
    finally:
        if strict is None:
            del os.environ["OMNIPKG_STRICT"]
        else:
            os.environ["OMNIPKG_STRICT"] = strict


class _Session:
    """One client connection and its namespace."""

    __slots__ = ("conn", "namespace", "control")

    def __init__(self, conn: P.Connection, control: bool) -> None:
        self.conn = conn
        self.namespace: dict | None = None
        self.control = control


class WorkerLoop:
    """Serve EXECUTE/CALL/PING on every connection, one request at a time."""

    def __init__(self, control: P.Connection, info: dict) -> None:
        self.info = info
        self.selector = selectors.DefaultSelector()
        self.sessions: dict[int, _Session] = {}
        self.calls = 0
        self.last_end = time.monotonic()
        self.started = self.last_end
        self.running = True
        self._code: dict[str, tuple] = {}
        self._code_seq = 0
        self._dispatch = {
            P.CALL: self._call,
            P.EXECUTE: self._execute,
            P.PING: self._ping,
        }
        self._control = control
        self._add(control, control=True)

    # -- connections ---------------------------------------------------------------------

    def _add(self, conn: P.Connection, control: bool = False) -> None:
        session = _Session(conn, control)
        self.sessions[conn.fileno()] = session
        self.selector.register(conn.sock, selectors.EVENT_READ, session)

    def _drop(self, session: _Session) -> None:
        fd = session.conn.fileno()
        if fd >= 0:
            self.sessions.pop(fd, None)
            try:
                self.selector.unregister(session.conn.sock)
            except (KeyError, ValueError):
                pass
        session.conn.close()
        session.namespace = None
        if session.control:
            self.leave("its owner closed the control connection (the daemon or pool stopped)")

    def leave(self, reason: str) -> None:
        """Tell every client why we go (BYE), then stop serving."""
        body = P.dumps((reason,))
        for session in list(self.sessions.values()):
            if not session.control:
                try:
                    session.conn.send(P.BYE, body)
                except OSError:
                    pass
            session.conn.close()
        self.sessions.clear()
        self.running = False

    # -- the loop ------------------------------------------------------------------------

    def serve(self) -> None:
        select = self.selector.select
        while self.running:
            for key, _ in select():
                session = key.data
                self._serve(session)
                if not self.running:
                    return

    def _serve(self, session: _Session) -> None:
        conn = session.conn
        while True:
            try:
                kind, body = conn.recv()
            except (EOFError, OSError):  # ProtocolError is an OSError too
                self._drop(session)
                return
            handler = self._dispatch.get(kind)
            try:
                if handler is not None:
                    handler(session, body)
                elif session.control:
                    self._control_message(session, kind, body)
                else:
                    raise P.ProtocolError(f"unexpected frame type {kind!r}")
            except OSError:  # the client went away (EPIPE) or broke the protocol
                self._drop(session)
                return
            if not self.running or not conn.pending():
                return

    def _control_message(self, session: _Session, kind: bytes, body) -> None:
        conn = session.conn
        if kind == P.ATTACH:
            fd = conn.take_fd()
            sock = socket.socket(fileno=fd)
            sock.setblocking(True)
            self._add(P.Connection(sock, conn.max_frame))
        elif kind == P.STAT:
            now = time.monotonic()
            conn.send_obj(P.RESULT, {
                "calls": self.calls,
                "idle": now - self.last_end,
                "clients": sum(1 for s in self.sessions.values() if not s.control),
                "age": now - self.started,
            })
        elif kind == P.QUIT:
            (reason,) = P.loads(body)
            self.leave(reason)
        else:
            raise P.ProtocolError(f"unexpected control frame {kind!r}")

    # -- requests ------------------------------------------------------------------------

    def _reply(self, conn: P.Connection, value, out: str, err: str, what: str) -> None:
        try:
            payload = P.dumps((value, out, err))
        except BaseException as e:
            kind = type(value)
            self._error(conn, "PicklingError", (
                f"the result of {what} is a {kind.__module__}.{kind.__qualname__} that cannot be "
                f"pickled ({type(e).__name__}: {e}); return something picklable instead "
                f"(a str, a number, a dict...), e.g. its repr()"
            ), "", out, err)
            return
        if len(payload) + 1 > conn.max_frame:
            self._error(conn, "OverflowError", (
                f"the result of {what} is {len(payload)} bytes pickled, over the frame limit of "
                f"{conn.max_frame} bytes"
            ), "", out, err)
            return
        conn.send(P.RESULT, payload)

    def _error(self, conn: P.Connection, name: str, message: str, text: str, out: str, err: str) -> None:
        conn.send(P.ERROR, P.dumps((name, message, text or f"{name}: {message}\n", out, err)))

    def _run(self, conn: P.Connection, what: str, fn, *args) -> None:
        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            value = fn(*args)
        except BaseException as e:
            sys.stdout, sys.stderr = saved
            self.last_end = time.monotonic()
            name, message, text = describe_exception(e)
            self._error(conn, name, message, text, out.getvalue(), err.getvalue())
            return
        sys.stdout, sys.stderr = saved
        self.last_end = time.monotonic()
        self._reply(conn, value, out.getvalue(), err.getvalue(), what)

    def _ping(self, session: _Session, body) -> None:
        session.conn.send(P.RESULT, P.dumps((self.info.get("pid"), "", "")))

    def _call(self, session: _Session, body) -> None:
        self.calls += 1
        self._run(session.conn, "call()", self._invoke, session, body)

    def _invoke(self, session: _Session, body):
        try:
            target, args, kwargs = P.loads(body)
        except Exception as e:
            raise pickle.UnpicklingError(
                f"cannot unpickle the call's arguments in the worker: {type(e).__name__}: {e}"
            ) from e
        fn = self._resolve(session, target)
        return fn(*args, **kwargs)

    def _resolve(self, session: _Session, target: str):
        """``"pkg.mod:attr.path"`` imports ``pkg.mod``; a plain ``"name.attr"`` is looked up
        in this session's ``execute`` namespace."""
        if not isinstance(target, str) or not target:
            raise TypeError(f"call target must be 'module:function' or a name, not {target!r}")
        modname, sep, path = target.partition(":")
        if sep:
            if not modname or not path:
                raise ValueError(f"call target {target!r} must look like 'package.module:function'")
            obj = sys.modules.get(modname) or importlib.import_module(modname)
            parts = path.split(".")
        else:
            parts = target.split(".")
            namespace = session.namespace or {}
            if parts[0] not in namespace:
                raise NameError(
                    f"name {parts[0]!r} is not defined in this session; "
                    f"define it with execute() or use 'module:function'"
                )
            obj = namespace[parts[0]]
            parts = parts[1:]
        for part in parts:
            obj = getattr(obj, part)
        return obj

    def _execute(self, session: _Session, body) -> None:
        self.calls += 1
        if session.namespace is None:
            session.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self._run(session.conn, "execute()", self._exec, session.namespace, body)

    def _exec(self, namespace: dict, body):
        (code,) = P.loads(body)
        compiled = self._code.get(code) if isinstance(code, str) else None
        if compiled is None:
            compiled = self._compile(code)
        statements, expression = compiled
        if statements is not None:
            exec(statements, namespace)
        if expression is not None:
            return eval(expression, namespace)
        return None

    def _compile(self, code):
        """Statements, and the last statement as an expression when it is one (like a REPL)."""
        if not isinstance(code, str):
            raise TypeError(f"execute() takes source code as a str, not {type(code).__name__}")
        self._code_seq += 1
        filename = f"<execute-{self._code_seq}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        expression = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expression = compile(ast.Expression(tree.body.pop().value), filename, "eval")
        statements = compile(tree, filename, "exec") if tree.body else None
        if len(self._code) >= _CODE_CACHE_SIZE:
            self._code.clear()
        self._code[code] = (statements, expression)
        return statements, expression


def run_started(control: P.Connection, info: dict) -> int:
    """Say READY and serve until the owner goes; the tail of every worker's life."""
    try:
        control.send_obj(P.READY, info)
    except OSError:
        return 1
    WorkerLoop(control, info).serve()
    return 0


def worker_info(mode: str) -> dict:
    return {
        "pid": os.getpid(),
        "mode": mode,
        "python": sys.executable,
        "version": ".".join(map(str, sys.version_info[:3])),
        "pins": os.environ.get("OMNIPKG_PINS", ""),
        "protocol": P.MAGIC[:-1].decode(),
    }
