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

**Kept between runs.** A zygote's start (an interpreter, ``import pytest``: ~120 ms) is most
of a warm matrix run's own cost, so the zygote outlives the run and the next run that would
start an identical one connects to it instead:

- *Key*: :func:`zygote_key` -- the interpreter (as named, its real path and that file's
  stat), the directory, the preloads, the umask, the cells' whole environment but
  :data:`KEY_IGNORES`, and omnipkg_hook's version and location. Each cell gets exactly the
  client's environment (the runner replaces ``os.environ``), so what the key leaves out is
  still right in the cell.
- *Staleness*: before serving a client the zygote stats every imported module's file,
  package directory and ``sys.path`` entry (the current directory for ``""``); one that
  changed (mtime_ns, size, inode) makes it answer ``StaleZygote`` and exit, and the client
  starts a new one. A new file in the current directory or on ``sys.path`` therefore costs
  the next run one zygote start.
- *Where and who*: ``<runtime>/cells/<key>.sock`` under the daemon's runtime directory
  (:mod:`omnipkg_hook.workers.runtime`: private 0700 directories of the user, checked; a
  socket that is not a 0600 socket of the user's is refused), stderr in ``<runtime>/cells/log``.
  The zygote refuses a peer of another uid, the client one whose zygote is not the user's.
  Started detached (its own session, stdin/stdout ``/dev/null``), so it never holds the
  terminal. One client at a time: the client holds ``<key>.lock`` while it uses it; a run
  that finds it held starts a private zygote (never waits). Any refusal: one line on
  stderr and a private zygote, as when nothing is kept.
- *Lifetime*: it exits after ``OMNIPKG_MATRIX_KEEP`` seconds (default 300) without a client
  (``0``: not kept, a private zygote per run); a client that hangs up while its cells run
  gets them killed. :func:`stop_kept` (``pip-omni daemon stop``) stops them all.
- *^C*: the cells of a kept zygote are not in the terminal's process group, so the client
  forwards SIGINT to them (:meth:`CellZygote.interrupt`) and waits for them to end.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections import deque

from omnipkg_hook.errors import WorkerCrashedError
from omnipkg_hook.workers import protocol as P
from omnipkg_hook.workers import spawn

__all__ = ["CellZygote", "enabled", "preload_for", "keep_seconds", "zygote_key", "kept_zygotes", "stop_kept"]


def enabled() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork") and \
        os.environ.get("OMNIPKG_MATRIX_FORK", "1").strip().lower() not in ("0", "false", "no", "off")


# Standard-library modules every pytest session imports after pytest's own plugins (its
# ``debugging`` plugin: pdb with cmd, code, codeop; ``faulthandler``): a cell would import
# the very same files, and a standard-library module already imported is nothing a program
# can tell from one it imported itself, but for ``sys.modules``. Not ``readline``: pytest
# imports it early on purpose, so that it attaches to the session's own stdio.
PYTEST_STDLIB = ("pdb", "faulthandler")
# What applying a cell's pins and pytest's metadata scans import of the hook (standard
# library only); ``python`` with ``OMNIPKG_PINS`` imports them at start-up too.
HOOK = ("omnipkg_hook.finder", "omnipkg_hook.distributions")


def preload_for(target: list[str]) -> list[str]:
    """What a zygote for ``target`` imports ahead: for a pytest run pytest (and its plugins),
    the standard-library modules every session imports and the hook's modules a pinned
    cell imports; for any other ``-m`` target ``runpy`` (which ``python -m`` imports
    before the module); else nothing."""
    if target[:2] in (["-m", "pytest"], ["-m", "py.test"]):
        return ["pytest", "runpy", *PYTEST_STDLIB, *HOOK]
    if target[:1] == ["-m"]:
        return ["runpy"]
    return []


KEEP_DEFAULT = 300.0  # seconds a kept zygote waits for its next client
# What a kept zygote's key leaves out of the environment: shell bookkeeping that no
# interpreter reads at start-up and that differs between otherwise equal runs (``_``: the
# command the shell ran, ``OLDPWD``: the previous directory, ``SHLVL``: the shell's depth).
# Each cell gets the client's whole environment anyway (the runner replaces it).
KEY_IGNORES = ("_", "OLDPWD", "SHLVL")


def keep_seconds() -> float:
    """``OMNIPKG_MATRIX_KEEP`` (seconds a zygote is kept after a run; 0: not kept)."""
    text = os.environ.get("OMNIPKG_MATRIX_KEEP", "").strip()
    if not text:
        return KEEP_DEFAULT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        print(f"pip-omni: OMNIPKG_MATRIX_KEEP={text!r} is not a number of seconds; no zygote is kept "
              "(hint: set it to 0 or a number of seconds)", file=sys.stderr)
        return 0.0
    return value


def _umask() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def zygote_key(python: str, env: dict, cwd: str | None, preload: list[str]) -> str:
    """What makes two zygotes' states differ, hashed: the interpreter (as named, its real
    path and that file's stat), the directory, the preloads, the umask, the environment
    but :data:`KEY_IGNORES`, and this package's version and location."""
    import json

    import omnipkg_hook
    from omnipkg_hook.store import sha256

    real = os.path.realpath(python)
    st = os.stat(real)
    parts = {
        "python": [os.path.abspath(python), real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns],
        "cwd": os.path.abspath(cwd or os.getcwd()),
        "preload": list(preload),
        "umask": _umask(),
        "env": sorted((k, v) for k, v in env.items() if k not in KEY_IGNORES),
        "ours": [omnipkg_hook.__version__, spawn.PACKAGE_DIR],
    }
    return sha256(json.dumps(parts, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()


class _Kept:
    """Where a kept zygote of one key lives: ``<runtime>/cells/<key>.sock`` and ``.lock``
    (held by the client using it), its stderr in ``<runtime>/cells/log``."""

    def __init__(self, key: str) -> None:
        from omnipkg_hook.workers import runtime

        self.dir = os.path.join(runtime.runtime_base(), "cells")
        self.socket = os.path.join(self.dir, key[:32] + ".sock")
        self.lock = runtime.FileLock(os.path.join(self.dir, key[:32] + ".lock"))
        self.log = os.path.join(self.dir, "log")

    def check(self) -> None:
        """The directories are the user's own and private; the socket (if any) too."""
        import stat

        from omnipkg_hook.errors import DaemonError
        from omnipkg_hook.workers import runtime

        runtime.secure_dir(os.path.dirname(self.dir))
        runtime.secure_dir(self.dir)
        if len(os.fsencode(self.socket)) >= runtime.MAX_SOCKET_PATH:
            raise DaemonError(f"socket path {self.socket!r} is too long for a unix socket")
        try:
            st = os.lstat(self.socket)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise DaemonError(f"{self.socket!r} is not a private socket of yours "
                              f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})")


def _peer_pid(sock: socket.socket) -> int:
    """The pid of the kept zygote at the other end (it listens itself, so a connection
    carries its credentials); OSError if it is not the user's own process."""
    import struct

    from omnipkg_hook.workers import runtime

    uid = runtime.peer_uid(sock)
    if uid is not None and uid != os.geteuid():
        raise OSError(f"its process belongs to uid {uid}")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)[0]


def kept_zygotes(base: str | None = None) -> list[tuple[int, str]]:
    """``(pid, socket)`` of every live kept zygote under the runtime directory ``base``."""
    import glob

    from omnipkg_hook.workers import runtime

    found = []
    for path in sorted(glob.glob(os.path.join(base or runtime.runtime_base(), "cells", "*.sock"))):
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != os.geteuid():
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            found.append((_peer_pid(sock), path))
        except OSError:  # gone (its socket file stays until the next run replaces it)
            pass
        finally:
            sock.close()
    return found


def stop_kept(base: str | None = None, *, kill: bool = False, timeout: float = 5.0) -> list[int]:
    """SIGTERM every kept zygote under ``base`` and wait (``timeout``) until it is gone
    (``kill``: SIGKILL one that is not); the pids stopped. Their running cells go on."""
    import select
    import signal

    stopped = []
    for pid, _path in kept_zygotes(base):
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            fd = None
        try:
            os.kill(pid, signal.SIGTERM)
            if fd is not None and not select.select([fd], [], [], timeout)[0] and kill:
                os.kill(pid, signal.SIGKILL)
                select.select([fd], [], [], timeout)
            stopped.append(pid)
        except OSError:
            pass
        finally:
            if fd is not None:
                os.close(fd)
    return stopped


class CellZygote:
    """One interpreter's zygote of cells; thread-safe. ``env``: as :func:`spawn.worker_env`
    makes it. Started at once; :meth:`ready` waits for it (the caller does other work in
    the meantime) and raises :class:`OmnipkgError` when it could not start -- the caller
    then starts its cells the slow way.

    ``keep`` (default :func:`keep_seconds`): > 0 reuses the zygote an earlier run kept for
    the same key (see the module docstring), or starts one that is kept that long after
    this run; 0 starts a private one, ended by :meth:`close`."""

    def __init__(self, python: str, env: dict, cwd: str | None, preload: list[str], timeout: float = 60.0,
                 keep: float | None = None) -> None:
        self.python, self.env, self.cwd, self.preload = python, dict(env), cwd, list(preload)
        self.umask = _umask()  # a zygote started later (a stale kept one's successor) gets it too, not the
        # writer lock's: bubbles may be made in this process meanwhile (omnipkg_pip/run/ondemand.py)
        self.keep = keep_seconds() if keep is None else keep
        self.kept: _Kept | None = None
        self.proc = self._attach() if self.keep > 0 else None
        if self.proc is None:
            self.proc = self._private()
        self.timeout = timeout
        self._started = threading.Lock()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._replies: deque = deque()  # FORK replies, in order, under _cond
        self._ended: dict[int, int | None] = {}
        self._done: dict[int, int] = {}  # pid -> read end of its "program ended" pipe
        self._live: set[int] = set()
        self._cond = threading.Condition()
        self._dead = False
        self._reader: threading.Thread | None = None

    def _private(self) -> spawn.Process:
        self.kept = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        import subprocess

        args = ["--zygote", "--fd", str(theirs.fileno())]
        for name in self.preload:
            args += ["--preload", name]
        try:
            popen = subprocess.Popen(spawn.command(self.python, "runner", args), pass_fds=[theirs.fileno()],
                                     env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     umask=self.umask)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return spawn.Process(P.Connection(ours), popen.pid, popen, "zygote-process", f"cell zygote of {self.python}")

    def _attach(self) -> spawn.Process | None:
        """Connect to the kept zygote of this key, or start it; None: use a private one
        (it is busy, or its place is not private: said on stderr)."""
        from omnipkg_hook.errors import OmnipkgError

        try:
            kept = _Kept(zygote_key(self.python, self.env, self.cwd, self.preload))
            kept.check()
            if not kept.lock.acquire(blocking=False):
                return None  # another run uses it: never wait
        except (OmnipkgError, OSError) as e:
            message = getattr(e, "message", None) or str(e)
            print(f"pip-omni: {message}; this run's cells use a zygote of their own", file=sys.stderr)
            return None
        self.kept = kept
        try:
            proc = self._connect(kept)
            return proc if proc is not None else self._start_kept(kept)
        except OSError as e:
            kept.lock.release()
            self.kept = None
            print(f"pip-omni: cannot keep a cell zygote at {kept.socket!r} ({e}); this run's cells use a zygote "
                  "of their own", file=sys.stderr)
            return None

    def _connect(self, kept: _Kept) -> spawn.Process | None:
        """The kept zygote, connected and checked to be the user's; None if there is none."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(kept.socket)
        except (FileNotFoundError, ConnectionRefusedError):  # none, or it died: a new one
            sock.close()
            return None
        except OSError:
            sock.close()
            raise
        try:
            pid = _peer_pid(sock)
        except OSError:
            sock.close()
            raise
        return spawn.Process(P.Connection(sock), pid, None, "zygote-kept",
                             f"kept cell zygote of {self.python}")

    def _start_kept(self, kept: _Kept) -> spawn.Process:
        """Start the zygote of this key detached (its own session, stderr to the log);
        the listening socket is made here, so the connection waits in its backlog."""
        import subprocess  # here, not at import: a run that finds its zygote kept starts nothing

        try:
            os.unlink(kept.socket)  # a dead zygote's; we hold the lock
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        log = -1
        try:
            listener.bind(kept.socket)
            os.chmod(kept.socket, 0o600)  # the directory is 0700 meanwhile
            listener.listen(8)
            log = os.open(kept.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            args = ["--zygote", "--listen-fd", str(listener.fileno()), "--keep", repr(self.keep),
                    "--lock", kept.lock.path]
            for name in self.preload:
                args += ["--preload", name]
            popen = subprocess.Popen(spawn.command(self.python, "runner", args), pass_fds=[listener.fileno()],
                                     env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=log, start_new_session=True, umask=self.umask)
        finally:
            listener.close()
            if log >= 0:
                os.close(log)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(kept.socket)
        except OSError:
            sock.close()
            popen.kill()
            raise
        return spawn.Process(P.Connection(sock), popen.pid, popen, "zygote-kept",
                             f"kept cell zygote of {self.python}")

    def ready(self) -> CellZygote:
        with self._started:
            if self._reader is None and self._error is None:
                try:
                    info = self._wait_ready()
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

    def _wait_ready(self) -> dict:
        from omnipkg_hook.errors import RemoteError

        try:
            return self.proc.wait_ready(self.timeout)
        except RemoteError as e:
            if self.kept is None or e.remote_type != "StaleZygote":
                raise
        self.proc.close()  # it has exited (a file it imported changed): a new one, still under our lock
        self.proc = self._start_kept(self.kept)
        return self.proc.wait_ready(self.timeout)

    def _read(self) -> None:
        try:
            while True:
                kind, body = self.proc.conn.recv()
                if kind == P.EXITED:
                    pid, status = P.loads(body)
                    with self._cond:
                        self._ended[pid] = status
                        self._live.discard(pid)
                        self._cond.notify_all()
                elif kind == P.RESULT:
                    self._reply(P.loads(body)[0])
                else:
                    self._reply(spawn.remote_error("the cell zygote could not fork", body))
        except (EOFError, OSError):
            pass
        with self._cond:
            self._dead = True
            self._cond.notify_all()
        self._reply(WorkerCrashedError(f"the {self.proc.what} exited{self.proc.exit_status(0.1)}"))

    def _reply(self, value) -> None:
        with self._cond:
            self._replies.append(value)
            self._cond.notify_all()

    def _next_reply(self):
        with self._cond:
            while not self._replies:
                self._cond.wait()
            return self._replies.popleft()

    def start(self, pins: list[str], target: list[str], source: bytes | None, *, out: int, err: int,
              env: dict | None = None, extra: dict[str, int] | None = None) -> int | None:
        """Fork a cell writing to ``out``/``err`` (the caller closes its copies); its pid, or
        None when the cell must be started the slow way. ``extra``: an environment variable
        naming each descriptor passed along (the pytest plugin's report pipe)."""
        notice_r, notice_w = os.pipe()
        done_r, done_w = os.pipe()
        names = list(extra or {})
        spec = {"pins": ",".join(pins), "target": list(target), "source": source, "env": {**self.env, **(env or {})},
                "fd_env": {name: i for i, name in enumerate(names)}, "done": True}
        try:
            with self._lock:
                self.proc.conn.send_fds(P.FORK, P.dumps(spec),
                                        [out, err, notice_w, done_w, *(extra[n] for n in names)])
                reply = self._next_reply()
                if isinstance(reply, int):
                    self._track(reply)
        except OSError as e:
            os.close(notice_r)
            os.close(done_r)
            raise WorkerCrashedError(f"the {self.proc.what} is gone: {e}") from None
        finally:
            os.close(notice_w)
            os.close(done_w)
        if isinstance(reply, BaseException):
            os.close(notice_r)
            os.close(done_r)
            raise reply
        with os.fdopen(notice_r, "rb") as f:  # closed by the child when the program starts
            refused = f.read()
        if refused:
            os.close(done_r)
            self.wait(reply)
            return None
        with self._cond:
            self._done[reply] = done_r
        return reply

    def compile_ahead(self, wheels: list[str], cells: int) -> None:
        """Ask the zygote to compile the ``.py`` files of ``wheels`` while it waits, for the
        ``cells`` cells it will fork (see :mod:`omnipkg_hook.workers.zygote`). The files go
        opened, as descriptors: a bubble's wheels are removed once it is made, which may be
        before the zygote has read them. No answer; nothing is lost if it cannot: the cells
        compile what they import."""
        if self._error is not None or self._dead:
            return
        paths, fds = [], []
        try:
            for path in wheels:
                try:
                    fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
                except OSError:
                    continue
                paths.append(path)
            for i in range(0, len(fds), 4):  # a frame carries a few descriptors (protocol._MAX_FDS)
                with self._lock:
                    self.proc.conn.send_fds(P.COMPILE, P.dumps({"wheels": paths[i:i + 4], "cells": cells}),
                                            fds[i:i + 4])
        except OSError:
            pass
        finally:
            for fd in fds:
                os.close(fd)

    def program_ended(self, pid: int) -> None:
        """Wait until the program of cell ``pid`` has returned (or raised), before its
        interpreter's shutdown (``atexit``, module teardown: tens of ms in a forked cell,
        whose writes to the zygote's pages are copied), or until the cell has exited.
        The cell may still write output and its exit status is not known yet: :meth:`wait`
        for that. Callers that run cells N at a time start the next one now."""
        with self._cond:
            fd = self._done.pop(pid, None)
        if fd is None:
            return
        try:
            while os.read(fd, 512):  # EOF: closed by the child, or by its exit
                pass
        except OSError:
            pass
        finally:
            os.close(fd)

    def _track(self, pid: int) -> None:
        with self._cond:
            if pid not in self._ended:
                self._live.add(pid)

    def wait(self, pid: int) -> int:
        """The cell's exit status (a signal as 128 + N); 1 with a line on stderr if the zygote died first."""
        with self._cond:
            while pid not in self._ended and not self._dead:
                self._cond.wait()
            status = self._ended.pop(pid, None)
            done = self._done.pop(pid, None)
        if done is not None:
            os.close(done)
        if status is None:
            print(f"pip-omni: the cell process {pid} lost its zygote; its exit status is unknown", file=sys.stderr)
            return 1
        return 128 - status if status < 0 else status

    def interrupt(self) -> None:
        """^C: SIGINT to this run's live cells of a kept zygote (a private zygote's cells are
        in the terminal's process group and got it already)."""
        import signal

        if self.kept is not None:
            self._signal_live(signal.SIGINT)

    def kill_cells(self) -> None:
        """SIGKILL this run's live cells (the caller gives up on them: its session ended
        before it waited for them)."""
        import signal

        self._signal_live(signal.SIGKILL)

    def _signal_live(self, signum: int) -> None:
        with self._cond:
            live = list(self._live)
        for pid in live:
            try:
                os.kill(pid, signum)
            except OSError:
                pass

    def close(self) -> None:
        """A private zygote: QUIT, it exits at once (its cells have ended, or go on as
        orphans). A kept one: hang up (it kills this run's cells still running and waits
        for the next run) and free it for the next client."""
        if self.kept is not None:
            try:  # shutdown, not only close: our reader thread is in recv() on it
                self.proc.conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.proc.close()
            self.kept.lock.release()
            return
        try:
            self.proc.conn.send_obj(P.QUIT, ("done",))
        except OSError:
            self.proc.kill()
        self.proc.close()
