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
socket and runs :class:`~omnipkg_hook.workers.worker.WorkerLoop`. The zygote reaps its
children (SIGCHLD) and logs abnormal exits to stderr. Linux; on macOS the owners do
not use zygotes (fork without exec is unsafe with system frameworks there).
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import sys
import threading

from . import protocol as P
from .worker import describe_exception, run_started, worker_info

__all__ = ["serve", "preload", "thread_count"]


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


def _reap(signum, frame) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:
            os.write(2, f"pip-omni zygote {os.getpid()}: worker {pid} died of signal {os.WTERMSIG(status)}\n".encode())


def serve(control: P.Connection, info: dict) -> int:
    done, failed = preload()
    gc.collect()
    if hasattr(gc, "freeze"):
        gc.freeze()
    threads = thread_count()
    info.update(preloaded=done, preload_errors=failed, threads=threads, fork_safe=threads == 1)
    try:
        control.send_obj(P.READY, info)
    except OSError:
        return 1
    if threads == 1:
        signal.signal(signal.SIGCHLD, _reap)
    while True:
        try:
            kind, body = control.recv()
        except (EOFError, OSError):
            return 0
        if kind == P.FORK and threads == 1:
            fd = control.take_fd()
            try:
                pid = _fork(control, fd)
            except OSError as e:
                control.send(P.ERROR, P.dumps(("OSError", f"fork failed: {e}", "", "", "")))
                continue
            control.send_obj(P.RESULT, (pid,))
        elif kind == P.QUIT:
            return 0
        else:
            control.send(P.ERROR, P.dumps(("ProtocolError", f"zygote cannot handle {kind!r}", "", "", "")))


def _fork(control: P.Connection, fd: int) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        os.close(fd)
        return pid
    code = 1
    try:  # the child: never return into the zygote's loop
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        sock = socket.socket(fileno=fd)
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
