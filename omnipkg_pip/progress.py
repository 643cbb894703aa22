"""Progress on long work: a spinner on a terminal, one plain line per step otherwise.

``-q`` silences both; ``-v`` shows pip's own output instead of the spinner.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

__all__ = ["step", "say", "set_quiet"]

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def say(message: str) -> None:
    """A plain progress line on stderr (unless quiet)."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def _tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


@contextlib.contextmanager
def step(what: str, *, verbose: int = 0):
    """Announce ``what`` for the duration of the block."""
    if _quiet:
        yield
        return
    if verbose or not _tty():
        say(f"pip-omni: {what} ...")
        yield
        return
    stop = threading.Event()
    start = time.monotonic()

    def spin() -> None:
        frames = "|/-\\"
        i = 0
        while not stop.wait(0.1):
            sys.stderr.write(f"\r{frames[i % 4]} {what} ({time.monotonic() - start:.0f}s)")
            sys.stderr.flush()
            i += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
