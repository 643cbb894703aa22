"""A zygote: a process that has applied one pin set, imported the pinned packages, and
forks ready workers on request (a fork costs a few ms; a fresh interpreter 60+ ms).

Started like a worker with ``--zygote``; after ``startup.run()`` it imports every
top-level name the finder routes (``omnipkg_hook.finder.FINDER.routes``), freezes the
heap for the garbage collector (fewer copy-on-write pages in the children), and says
READY with ``fork_safe``: forking is only safe in a single-threaded process, so if an
import started a thread (counted in ``/proc/self/task`` where it exists), the zygote
says so and its owner spawns workers for this pin set the slow way instead. A failed
preload import is reported in READY (``preload_errors``) and on stderr; the workers
then fail the same way when user code imports that name, with the real traceback.

Protocol: FORK (with one fd, the new worker's control socket) -> RESULT ``(pid,)``;
QUIT or EOF -> exit. The child closes the zygote's socket, says READY on its own
socket and runs :class:`~omnipkg_hook.workers.worker.WorkerLoop`. To keep a fork out
of the way, the zygote keeps one *spare* child forked ahead of time (made once the
daemon has been quiet for ``SPARE_DELAY``), blocked until a FORK hands it its control
socket; a spare costs only the pages it has written since the fork, and it exits with
the zygote. The zygote reaps its
children (SIGCHLD) and logs abnormal exits to stderr. Linux; on macOS the owners do
not use zygotes (fork without exec is unsafe with system frameworks there).

:func:`serve_cells` is the same zygote for whole runs (``pip-omni run --matrix`` cells and
the pytest plugin's cells, started as ``runner --zygote``): it has applied no pins and
preloads what every cell imports first (pytest), and a FORK carries the cell (pins,
program) and its descriptors. Its child leaves the zygote's loop and runs ``cell``, which
ends the process as ``python`` ends, minus the teardown (``runner._end_cell``: threads joined,
``atexit``, files flushed, ``SystemExit``'s status, then ``os._exit``). The zygote reports every child's end as EXITED ``(pid, status)``
(status < 0: killed by that signal), sent from its loop, never from a signal handler.
While it waits for FORKs a cell zygote also compiles ahead (COMPILE ``{"wheels": [path, ...],
"cells": n}`` with each wheel's file as a descriptor, no answer): the ``.py`` files of the
wheels its owner is making bubbles of, each wheel read whole when the frame comes (a bubble's
wheels are removed once it is made), its sources taken from the archive in one step and
compiled one file a step, only while no request is waiting, into
:data:`omnipkg_hook.uncompiled.PRECOMPILED` (keyed by each source's sha256), so that cells
forked after import those sources without compiling them (bubbles ``pip-omni run`` makes
have no ``.pyc`` yet). It stops once it has forked ``n`` cells for this owner (the owner's
cells in all), pauses while only the last is to come and its siblings take every core
(:meth:`_Ahead.worth`), and each new owner starts with none. A wheel is untrusted here: a member is read up to
:data:`_Ahead.MAX_FILE` bytes, at most :data:`_Ahead.MAX_TOTAL` per owner, an archive or
source that fails is skipped, nothing is written, and a code object is only ever used for
source bytes of the same sha256.
:func:`serve_kept` is that zygote kept between runs: it listens on a unix socket and serves
one client after another, each after checking that nothing it imported changed
(:func:`fingerprint`; the policy is in ``omnipkg_pip/run/cellfork.py``).
"""

from __future__ import annotations

import gc
import importlib
import os
import select
import signal
import socket
import sys
import threading

from . import protocol as P
from .worker import describe_exception, run_started, worker_info

__all__ = ["serve", "serve_cells", "serve_kept", "fingerprint", "changed_since", "preload", "thread_count", "SPARE_DELAY"]

SPARE_DELAY = 0.05  # seconds of quiet before the zygote forks its next spare worker


def thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def preload() -> tuple[list[str], dict[str, str]]:
    """Import every routed top-level name; return (imported, {name: error})."""
    try:
        from omnipkg_hook.finder import FINDER
    except ImportError:  # no hook in this build: nothing is pinned, nothing to preload
        return [], {}
    done, failed = [], {}
    for name in sorted(FINDER.routes):
        try:
            importlib.import_module(name)
            done.append(name)
        except BaseException as e:
            kind, message, text = describe_exception(e, None)
            failed[name] = f"{kind}: {message}"
            sys.stderr.write(f"pip-omni zygote {os.getpid()}: preloading {name!r} failed:\n{text}")
    return done, failed


def _ended():
    """``(pid, wait status)`` of every child that has ended, reaped without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _reap(signum, frame) -> None:
    for pid, status in _ended():
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
            os.write(2, f"pip-omni zygote {os.getpid()}: worker {pid} died of signal {os.WTERMSIG(status)}\n".encode())


class _Spare:
    """A child forked ahead of time; it waits on ``conn`` for its control socket."""

    def __init__(self, pid: int, conn: P.Connection) -> None:
        self.pid = pid
        self.conn = conn


def _ready(control: P.Connection, info: dict, load) -> int | None:
    """Preload, freeze the heap, say READY; the thread count, None if the owner is gone."""
    done, failed = load()
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()
    threads = thread_count()
    info.update(preloaded=done, preload_errors=failed, threads=threads, fork_safe=threads == 1)
    try:
        control.send_obj(P.READY, info)
    except OSError:
        return None
    return threads


def serve(control: P.Connection, info: dict) -> int:
    threads = _ready(control, info, preload)
    if threads is None:
        return 1
    if threads == 1:
        signal.signal(signal.SIGCHLD, _reap)
    spare: _Spare | None = None
    while True:
        if threads == 1 and spare is None and not control.pending():
            # fork the next spare once the daemon has been quiet for a moment, so that
            # the fork does not compete with the worker just handed out for the CPU
            if not select.select([control.sock], [], [], SPARE_DELAY)[0]:
                spare = _fork_spare(control)
                continue
        try:
            kind, body = control.recv()
        except (EOFError, OSError):
            return 0
        if kind == P.FORK and threads == 1:
            fd = control.take_fd()
            pid = None
            if spare is not None:
                try:
                    spare.conn.send_fds(P.ATTACH, b"", [fd])
                    pid = spare.pid
                    os.close(fd)
                except OSError:  # the spare died: fork one now
                    pass
                spare.conn.close()
                spare = None
            if pid is None:
                try:
                    pid = _fork_now(control, fd)
                except OSError as e:
                    os.close(fd)
                    control.send(P.ERROR, P.dumps(("OSError", f"fork failed: {e}", "", "", "")))
                    continue
            control.send_obj(P.RESULT, (pid,))
        elif kind == P.QUIT:
            return 0
        else:
            control.send(P.ERROR, P.dumps(("ProtocolError", f"zygote cannot handle {kind!r}", "", "", "")))


def _fork_now(control: P.Connection, fd: int) -> int:
    """Fork a worker whose control socket is ``fd``."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(fd)
        return pid
    _child(parent, control, lambda: fd)


def _fork_spare(control: P.Connection) -> _Spare | None:
    """Fork a worker that waits for its control socket (the next FORK hands it over)."""
    parent = os.getpid()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = os.fork()
    except OSError as e:
        sys.stderr.write(f"pip-omni zygote {parent}: cannot fork a spare worker: {e}\n")
        ours.close()
        theirs.close()
        return None
    if pid:
        theirs.close()
        return _Spare(pid, P.Connection(ours))
    ours.close()

    def wait_for_fd() -> int:
        waiter = P.Connection(theirs, fds=True)
        try:
            waiter.recv()
            return waiter.take_fd()
        except (EOFError, OSError):
            os._exit(0)  # the zygote is gone: so are we
        finally:
            waiter.close()

    _child(parent, control, wait_for_fd)


def _child(parent: int, control: P.Connection, get_fd) -> None:
    """The forked child: become a worker; never return into the zygote's loop."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        sock = socket.socket(fileno=get_fd())
        info = worker_info("forked")
        info["zygote"] = parent
        code = run_started(P.Connection(sock, control.max_frame, fds=True), info)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve_cells(control: P.Connection, info: dict, load, cell) -> int:
    """Fork one child per FORK ``(body, fds)``; the child returns ``cell(body, fds)``.

    In the zygote this returns only when the owner goes (EOF, QUIT): 0. In a child it
    returns the cell's exit status (or raises the cell's ``SystemExit``)."""
    threads = _ready(control, info, load)
    if threads is None:
        return 1
    loop = _Cells(threads, cell, info["pid"])
    try:
        return loop.serve(control)[1]
    finally:
        loop.close()


def serve_kept(listener: socket.socket, info: dict, load, cell, *, idle: float, lock_path: str) -> int:
    """:func:`serve_cells` for one client after another, kept between runs.

    ``listener``: the bound, listening AF_UNIX socket its first client made (and connects
    to next). One client is served at a time, each as :func:`serve_cells` serves its
    owner: READY (or, when a file it imported or a ``sys.path`` directory changed since it
    started, an ERROR ``StaleZygote`` naming it, and the zygote exits), then FORKs. A peer
    of another uid is refused. EOF: the client's cells still running are killed, the next
    client is accepted. QUIT: exit (``pip-omni daemon stop``). No client for ``idle``
    seconds: exit, unless a client holds ``lock_path`` (it is about to connect)."""
    from .runtime import FileLock, peer_uid

    listener.listen(8)  # again, here: a connection carries the credentials of who last listened
    done, failed = load()
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()
    threads = thread_count()
    info.update(preloaded=done, preload_errors=failed, threads=threads, fork_safe=threads == 1, kept=True)
    stamp = fingerprint()
    loop = _Cells(threads, cell, info["pid"], [listener])
    me = os.getpid()
    try:
        while True:
            if not select.select([listener], [], [], idle)[0]:
                if FileLock(lock_path).acquire(blocking=False):  # held until this process ends
                    return 0
                continue
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            uid = peer_uid(conn)
            if uid is not None and uid != os.geteuid():
                sys.stderr.write(f"pip-omni zygote {me}: refused a client of uid {uid}\n")
                conn.close()
                continue
            control = P.Connection(conn, fds=True)
            changed = changed_since(stamp)
            if changed:
                sys.stderr.write(f"pip-omni zygote {me}: {changed} changed since it started; exiting\n")
                try:
                    control.send(P.ERROR, P.dumps(("StaleZygote", f"{changed} changed since the zygote started",
                                                   "", "", "")))
                except OSError:
                    pass
                return 0
            try:
                control.send_obj(P.READY, {**info, "served": loop.served})
            except OSError:
                control.close()
                continue
            how, code = loop.serve(control)
            if how == "child":
                return code
            loop.ahead.clear()  # what one client's bubbles need is not the next one's
            loop.kill_live()
            control.close()
            if how == "quit":
                return 0
    finally:
        if os.getpid() == me:
            loop.close()
            listener.close()


def fingerprint() -> dict[str, tuple | None]:
    """``(mtime_ns, size, inode)`` of every imported module's file, every package
    directory and every ``sys.path`` entry (``""``: the current directory)."""
    paths = {p or os.getcwd() for p in sys.path if isinstance(p, str)}
    for module in list(sys.modules.values()):
        f = getattr(module, "__file__", None)
        if isinstance(f, str):
            paths.add(f)
        where = getattr(module, "__path__", None)
        if isinstance(where, list):
            paths.update(p for p in where if isinstance(p, str))
    return {p: _stat(p) for p in paths}


def _stat(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def changed_since(stamp: dict) -> str | None:
    """The first path whose stat differs from ``stamp`` (quoted), else None."""
    for path, old in stamp.items():
        if _stat(path) != old:
            return repr(path)
    return None


class _Ahead:
    """What a cell zygote compiles ahead for its owner's cells (COMPILE; see the module docstring)."""

    MAX_FILE = 1 << 20  # a larger source is left to the cell that imports it (rich's largest: 0.1 MiB)
    MAX_TOTAL = 16 << 20  # source bytes read for one owner
    MAX_WHEEL = 32 << 20  # a larger archive is left to the cells (rich's: 0.24 MiB)
    MAX_QUEUED = 64 << 20  # archive bytes held at once, read and not yet taken apart

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        from collections import deque

        self.wheels: deque = deque()
        # sha256 of a source -> [member name, bytes, {wheels that have it}, is a package, in-degree]
        self.items: dict[bytes, list] = {}
        self.order: list[bytes] | None = None  # the items' keys, the next to compile last
        self.seen: set[str] = set()
        self.scanned: dict = {}  # (module, is a package, source bytes) -> what it imports (_imported_by_siblings)
        self.read = 0
        self.cells = None  # the owner's cells in all: once that many are forked, compiling helps none
        self.forks = 0
        done = sys.modules.get("omnipkg_hook.uncompiled")
        if done is not None:
            done.PRECOMPILED.clear()

    def add(self, body: bytes, fds: list[int] = ()) -> None:
        """COMPILE: ``body`` names the wheels, ``fds`` are their files, opened by the owner
        (they may be gone from their directory before this zygote has time to read them).
        Each is read now, up to :data:`MAX_WHEEL` bytes, and closed."""
        try:
            request = P.loads(body)
            wheels, cells = request["wheels"], request.get("cells")
            if not isinstance(wheels, list) or len(wheels) != len(fds):
                wheels = ()
        except Exception:  # the owner's own frame: a wrong one is ignored, as nothing depends on it
            wheels = ()
            cells = None
        try:
            if isinstance(cells, int):
                self.cells = cells
            for path, fd in zip(wheels, fds):
                name = os.path.basename(path) if isinstance(path, str) else None
                if name is None or name in self.seen or self._all_forked():  # told late: every cell has started
                    continue
                with open(fd, "rb", closefd=False) as f:
                    data = f.read(self.MAX_WHEEL + 1)
                if len(data) <= self.MAX_WHEEL and len(data) + sum(len(w[1]) for w in self.wheels) <= self.MAX_QUEUED:
                    self.seen.add(name)
                    self.wheels.append((name, data))
        except OSError:  # not a file to read: its cells compile what they import
            pass
        finally:
            for fd in fds:
                os.close(fd)

    def forked(self, body: bytes | None = None) -> None:
        """A cell has started (``body``: its FORK request). What only its own wheels hold is
        of no use to the cells still to come: dropped, as everything is after the last cell."""
        self.forks += 1
        if self._all_forked():  # compiling now would only take the cores from the cells
            self.wheels.clear()
            self.items.clear()
            self.order = None
            return
        if body is None or not self.busy():
            return
        try:
            pins = {_pinned(text) for text in P.loads(body)["pins"]} - {None}
        except Exception:  # the owner's own frame: nothing depends on reading it here
            return
        gone = {name for name in self.seen if _wheel_of(name) in pins}
        if not gone:
            return
        self.wheels = type(self.wheels)(w for w in self.wheels if w[0] not in gone)
        for key in [k for k, item in self.items.items() if not item[2] - gone]:
            del self.items[key]
        for item in self.items.values():
            item[2] -= gone
        self.order = None

    def _all_forked(self) -> bool:
        return self.cells is not None and self.forks >= self.cells

    def busy(self) -> bool:
        return bool(self.items) or bool(self.wheels)

    def worth(self, live: int) -> bool:
        """Whether to compile now, with ``live`` cells running: while two cells or more are
        still to come (a source they share, compiled here once, spares a compile in each), or
        while a core is free of cells. For the last cell alone, on cores its running siblings
        keep busy, compiling here only moves the work to a worse time: the cell would do it
        itself later, when the others have ended and a core is idle."""
        if not self.busy():
            return False
        if self.cells is None or self.cells - self.forks >= 2:
            return True
        return live < (os.cpu_count() or 1)

    def pending(self) -> list[str]:
        """The member names still to compile, the next first."""
        return [self.items[k][0] for k in reversed(self._order())]

    def _order(self) -> list[bytes]:
        """A source several of the owner's wheels share first (compiled once here, it spares a
        compile in each of their cells), then packages, then by in-degree (see :meth:`_sources`)."""
        if self.order is None:
            self.order = sorted(self.items, key=lambda k: (-len(self.items[k][2]), not self.items[k][3],
                                                           -self.items[k][4], self.items[k][0]), reverse=True)
        return self.order

    def step(self) -> None:
        """Read the next wheel queued (every wheel is read before anything is compiled, so that
        the order sees them all), else compile one more source file."""
        from hashlib import sha256

        from omnipkg_hook.uncompiled import PRECOMPILED

        if self.wheels:
            wheel, archive = self.wheels.popleft()
            for name, data, package, wanted in self._sources(archive):
                key = sha256(data).digest()
                if key in PRECOMPILED:
                    continue
                item = self.items.get(key)
                if item is None:
                    self.items[key] = [name, data, {wheel}, package, wanted]
                else:
                    item[2].add(wheel)
                    item[3] = item[3] or package
                    item[4] = max(item[4], wanted)
            self.order = None
            return
        order = self._order()
        if not order:
            return
        key = order.pop()
        name, data = self.items.pop(key)[:2]
        try:
            PRECOMPILED[key] = compile(data, name, "exec", dont_inherit=True)
        except Exception:  # a syntax error is the cell's to report, with its real file name
            pass

    def _sources(self, archive: bytes) -> list[tuple[str, bytes, bool, int]]:
        """The wheel's sources a cell is likely to import, as ``(member name, bytes, is a
        package, in-degree)``: packages' ``__init__``, and each module some sibling imports
        at its top level (``^import``/``^from ... import`` lines; its in-degree is how many
        do); one no sibling imports there (a leaf such as ``rich.progress``) is left to the
        cell. [] for a bad archive."""
        import zipfile
        from io import BytesIO

        found = {}
        try:
            with zipfile.ZipFile(BytesIO(archive)) as zf:
                for info in zf.infolist():
                    module = _module_of(info)
                    if module is None:
                        continue
                    if self.read + info.file_size > self.MAX_TOTAL:
                        self.wheels.clear()  # enough for this owner
                        break
                    with zf.open(info) as f:
                        data = f.read(self.MAX_FILE + 1)
                    self.read += len(data)
                    if len(data) <= self.MAX_FILE:
                        found[module[0]] = (info.filename, data, module[1])
        except Exception:  # not a readable zip, a damaged member: the ingest says what is wrong with it
            return []
        wanted = _imported_by_siblings(found, self.scanned)
        return [(name, data, package, wanted[m]) for m, (name, data, package) in found.items()
                if package or wanted[m]]


def _norm(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(text) -> tuple[str, str] | None:
    """``NAME==VERSION`` -> ``(normalized name, version)``; None for any other pin."""
    name, sep, version = str(text).partition("==")
    return (_norm(name.strip()), version.strip()) if sep and "=" not in version else None


def _wheel_of(path: str) -> tuple[str, str] | None:
    """``(normalized name, version)`` of a wheel file's name."""
    parts = os.path.basename(path).split("-")
    return (_norm(parts[0]), parts[1]) if len(parts) in (5, 6) and path.endswith(".whl") else None


def _module_of(info) -> tuple[str, bool] | None:
    """``(dotted module name, is a package)`` of a ``.py`` member a bubble's dist imports from
    (top level, or under ``*.data/purelib|platlib/``; not ``*.dist-info``, not ``__pycache__``),
    of a size the zip declares within :data:`_Ahead.MAX_FILE`; else None."""
    parts = info.filename.split("/")
    if not info.filename.endswith(".py") or info.file_size > _Ahead.MAX_FILE or "__pycache__" in parts:
        return None
    if parts[0].endswith(".data"):
        if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
            return None
        parts = parts[2:]
    elif parts[0].endswith(".dist-info"):
        return None
    parts[-1] = parts[-1][:-3]
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


_IMPORT_LINE = None  # re.Pattern, compiled on first use


def _imported_by_siblings(found: dict, seen: dict | None = None) -> dict[str, int]:
    """``{module: how many other modules of ``found`` import it on a line of their own top level}``.
    ``seen``: what a module of the same name and bytes imports, from an earlier call (the
    versions of a project share most of their sources: each is scanned once)."""
    from collections import Counter

    count: Counter = Counter()
    for module, (_name, data, package) in found.items():
        key = (module, package, data)
        targets = seen.get(key) if seen is not None else None
        if targets is None:
            targets = _imports_of(module, package, data)
            if seen is not None:
                seen[key] = targets
        for target in targets:
            if target != module and target in found:
                count[target] += 1
    return count


def _imports_of(module: str, package: bool, data: bytes) -> set[str]:
    """The modules ``data`` (module ``module``) imports on a line of its own top level."""
    global _IMPORT_LINE
    import re

    if _IMPORT_LINE is None:
        _IMPORT_LINE = re.compile(
            rb"^(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\(?([\w, \t]*)|import[ \t]+([\w., \t]+))", re.M)
    here = module.split(".") if package else module.split(".")[:-1]
    targets: set[str] = set()
    for dots, name, names, plain in _IMPORT_LINE.findall(data):
        if plain:  # import a.b.c, d as e
            for item in plain.split(b","):
                words = item.split()
                if words:
                    path = words[0].decode("ascii", "replace").split(".")
                    targets.update(".".join(path[:k]) for k in range(1, len(path) + 1))
            continue
        level = len(dots)
        if level - 1 > len(here):
            continue
        base = here[:len(here) - level + 1] if level else []
        target = base + (name.decode("ascii", "replace").split(".") if name else [])
        targets.add(".".join(target))
        for item in names.split(b","):  # from . import submodule
            words = item.split()
            if words:
                targets.add(".".join([*target, words[0].decode("ascii", "replace")]))
    return targets


class _Cells:
    """The forking loop shared by :func:`serve_cells` and :func:`serve_kept`."""

    def __init__(self, threads: int, cell, pid: int, close_in_child=()) -> None:
        self.threads = threads
        self.cell = cell
        self.pid = pid
        self.close_in_child = list(close_in_child)
        self.live: set[int] = set()
        self.served = 0
        self.ahead = _Ahead()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the wakeup fd does the work
        signal.set_wakeup_fd(self.wake_w)

    def serve(self, control: P.Connection) -> tuple[str, int]:
        """``("end"|"quit", 0)`` in the zygote when the owner goes; ``("child", status)`` in a cell."""
        self.served += 1
        while True:
            if control.pending():
                ready = [control.sock]
            else:  # nothing waits: compile ahead, one file between two looks
                ready = select.select([control.sock, self.wake_r], [], [], 0 if self.ahead.worth(len(self.live)) else None)[0]
                if not ready:
                    self.ahead.step()
                    continue
            if self.wake_r in ready:
                os.read(self.wake_r, 512)
                self.report_exits(control)
            if control.sock not in ready:
                continue
            try:
                kind, body = control.recv()
            except (EOFError, OSError):
                return "end", 0
            if kind == P.QUIT:
                return "quit", 0
            if kind == P.COMPILE:
                fds, control.fds = control.fds, []
                self.ahead.add(body, fds)
                continue
            if kind != P.FORK or self.threads != 1:
                what = "forks nothing: threads were running after its imports" if kind == P.FORK else f"cannot handle {kind!r}"
                control.send(P.ERROR, P.dumps(("ProtocolError", f"zygote {what}", "", "", "")))
                continue
            fds, control.fds = control.fds, []
            try:
                pid = os.fork()
            except OSError as e:
                control.send(P.ERROR, P.dumps(("OSError", f"fork failed: {e}", "", "", "")))
                pid = -1
            if pid == 0:  # the cell: out of the zygote for good
                signal.set_wakeup_fd(-1)
                for fd in (self.wake_r, self.wake_w):
                    os.close(fd)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                control.close()
                for sock in self.close_in_child:
                    sock.close()
                return "child", self.cell(body, fds)
            for fd in fds:
                os.close(fd)
            if pid > 0:
                self.live.add(pid)
                self.ahead.forked(body)
                try:
                    control.send_obj(P.RESULT, (pid,))
                except OSError:
                    return "end", 0

    def report_exits(self, control: P.Connection) -> None:
        for pid, status in _ended():
            self.live.discard(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            try:
                control.send_obj(P.EXITED, (pid, code))
            except OSError:
                pass

    def kill_live(self) -> None:
        """The owner went away: end its cells still running (and reap them)."""
        for pid in self.live:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        self.live.clear()
        for _ in _ended():
            pass

    def close(self) -> None:
        if os.getpid() == self.pid:
            signal.set_wakeup_fd(-1)
