"""Progress on long work: a spinner on a terminal, one plain line per step otherwise.

``-q`` silences both; ``-v`` shows pip's own output instead of the spinner. Imports
``threading`` only when a spinner runs: ``install`` imports this module on its warm path.
"""

from __future__ import annotations

import os
import sys

__all__ = ["step", "say", "set_quiet", "above"]

_quiet = False
_spinning = False  # a spinner runs (a step inside one, or in another thread, shows none)
_drawn = [False]  # the spinner's line is on the terminal now (under _LOCK, made with the spinner)
_LOCK = None  # threading.Lock of the spinner's writes, made with the first spinner


def above(write) -> None:
    """Call ``write()`` (it writes whole lines to the terminal, as ``run --stream`` does) with
    the spinner's line cleared first: the spinner draws itself again below on its next tick."""
    lock = _LOCK
    if lock is None:
        write()
        return
    with lock:
        if _drawn[0]:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            _drawn[0] = False
        write()


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def say(message: str) -> None:
    """A plain progress line on stderr (unless quiet)."""
    if not _quiet:
        sys.stderr.write(message + "\n")  # one write: lines of threads do not interleave
        sys.stderr.flush()


def _tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


class step:
    """``with step(what):`` -- announce ``what`` for the duration of the block."""

    def __init__(self, what: str, *, verbose: int = 0) -> None:
        self.what, self.verbose = what, verbose
        self.stop = self.thread = None

    def __enter__(self) -> None:
        global _spinning, _LOCK
        if _quiet:
            return
        if self.verbose or not _tty():
            say(f"pip-omni: {self.what} ...")
            return
        if _spinning:  # one spinner at a time: the steps of bubbles made at once are under one
            return
        _spinning = True
        import threading
        import time

        if _LOCK is None:
            _LOCK = threading.Lock()
        lock = _LOCK
        stop = self.stop = threading.Event()
        start = time.monotonic()
        what = self.what

        def spin() -> None:
            frames = "|/-\\"
            i = 0
            while not stop.wait(0.1):
                with lock:
                    sys.stderr.write(f"\r{frames[i % 4]} {what} ({time.monotonic() - start:.0f}s)")
                    sys.stderr.flush()
                    _drawn[0] = True
                i += 1

        self.thread = threading.Thread(target=spin, daemon=True)
        self.thread.start()

    def __exit__(self, *exc) -> None:
        global _spinning
        if self.thread is None:
            return
        _spinning = False
        self.stop.set()
        self.thread.join()
        self.thread = None
        with _LOCK:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            _drawn[0] = False
