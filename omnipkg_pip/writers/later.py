"""Compile later: the ``.pyc`` of the bubbles a ``pip-omni run`` made, compiled after it, detached.

``pip-omni run`` makes its on-demand bubbles with ``install --no-compile`` (their dists are
published without ``.pyc`` and marked pending, :mod:`omnipkg_pip.writers.bytecode`; the
hook imports them from their sources meanwhile, writing nothing, :mod:`omnipkg_hook.uncompiled`),
so the program starts sooner. When the program has ended, :func:`start` runs
``python -m omnipkg_pip store compile --python PY --background`` the way ``git gc --auto``
detaches: a new session, stdin from ``/dev/null``, stdout and stderr appended to
``<store>/cache/compile-later.log``, at low priority (``os.nice``). It is a writer like any
other (``bytecode.compile_pending``: the writer lock per dist, each dist checked under it),
so two at once compile each dist once, and one killed midway leaves its marks for the next
compile or install to finish.

While one runs it holds a shared ``flock`` on ``<store>/cache/compile-later.lock``, taken
by :func:`start` before the process exists and inherited by it, so :func:`wait` (an
exclusive lock: benchmarks, tests, CI) never misses one that is starting. Each background
compile appends one JSON line to the log (:func:`records`): what it compiled, its wall and
CPU seconds.

``OMNIPKG_RUN_COMPILE=now`` restores compiling before the program runs; so does a platform
without ``fcntl``/sessions (Windows), where nothing is detached (:func:`compile_now`).
"""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import OmnipkgError

__all__ = ["compile_now", "start", "wait", "records", "run_background", "LOG", "LOCK"]

LOG = ("cache", "compile-later.log")
LOCK = ("cache", "compile-later.lock")
_ENV = "OMNIPKG_RUN_COMPILE"


def compile_now() -> bool:
    """Whether ``pip-omni run`` compiles its bubbles before the program (``OMNIPKG_RUN_COMPILE=now``,
    or no way to detach here) rather than after it, in the background (``later``, the default)."""
    value = os.environ.get(_ENV, "").strip().lower()
    if value not in ("", "now", "later"):
        raise OmnipkgError(f"{_ENV}={os.environ[_ENV]!r} is not understood",
                           "use `now` (compile before the program runs) or `later` (the default: after it, "
                           "in the background)")
    return value == "now" or os.name != "posix"


def _open(store_root: str, parts: tuple[str, str], flags: int) -> int:
    cache = os.path.join(store_root, parts[0])
    os.makedirs(cache, exist_ok=True)
    return os.open(os.path.join(cache, parts[1]),
                   flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)


def start(store_root: str, python: str, env: dict) -> None:
    """Start the background compile of interpreter ``python``'s pending dists in the store at
    ``store_root`` (``env``: the environment the bubbles were made in). Returns at once."""
    import fcntl
    import subprocess

    log = _open(store_root, LOG, os.O_WRONLY | os.O_APPEND)
    lock = _open(store_root, LOCK, os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)  # held by the child from its first instant (pass_fds)
        subprocess.Popen(
            [sys.executable, "-m", "omnipkg_pip", "store", "compile", "--python", python, "--background"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(lock,), start_new_session=True,
            env={**{k: v for k, v in env.items() if k != "OMNIPKG_PINS"}, "OMNIPKG_STORE": store_root},
            cwd=os.path.abspath(os.sep),  # as a daemon: holds no directory of the user's
        )
    finally:
        os.close(log)
        os.close(lock)  # the child's copy keeps the shared lock until it exits


def wait(store_root: str, timeout: float | None = None) -> bool:
    """Wait until no background compile started in ``store_root`` runs; False on ``timeout``."""
    import fcntl
    import time

    try:
        fd = os.open(os.path.join(store_root, *LOCK), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return True  # none was ever started
    try:
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if end is not None and time.monotonic() > end:
                    return False
                time.sleep(0.02)
    finally:
        os.close(fd)


def records(store_root: str) -> list[dict]:
    """The JSON lines background compiles wrote to the log (other lines, e.g. errors, skipped)."""
    import json

    try:
        with open(os.path.join(store_root, *LOG), encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("compile-later"):
            out.append(rec)
    return out


_ROUNDS = 8  # marks a run published while this one worked are taken too, a few rounds at most


def run_background(store, interpreter) -> list[str]:
    """The background compile itself (``store compile --background``): at low priority, every
    pending dist of ``interpreter`` main does not serve, until none is left; one JSON line on stdout."""
    import json
    import time

    from .. import environment
    from . import bytecode

    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    t0, c0 = time.perf_counter(), os.times()
    from . import deferred

    stored = deferred.complete(store, interpreter)  # first: what the run left to store after it
    main = environment.installed(interpreter, store)
    done: list[str] = []
    for _ in range(_ROUNDS):
        more = bytecode.compile_pending(store, interpreter, main)
        if not more:
            break
        done += more
    c1 = os.times()
    cpu = sum(c1[:4]) - sum(c0[:4])  # this process and the compilers it waited for
    print(json.dumps({"compile-later": True, "pid": os.getpid(), "python": interpreter.version,
                      "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "compiled": [os.path.relpath(d, store.root) for d in done], "stored": stored,
                      "seconds": round(time.perf_counter() - t0, 3), "cpu_seconds": round(cpu, 3)}), flush=True)
    return done
