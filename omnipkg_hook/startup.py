"""What ``omnipkg_hook.pth`` (and, on Python 3.15+, ``omnipkg_hook.start``) runs at start-up.

The ``.pth`` line imports this module only when ``OMNIPKG_PINS`` is set and not empty,
so an interpreter without pins pays for one ``os.environ.get``. :func:`run` applies the
pins (:func:`omnipkg_hook.pins.from_environment`): a value that does not parse, or a pin
that cannot be satisfied, prints one line on stderr and the interpreter starts without
pins; with ``OMNIPKG_STRICT=1`` it prints the line and exits with status 1. Running it
again with the same value does nothing (a venv may process a ``.pth`` twice, and a
worker calls it explicitly).
"""

from __future__ import annotations

import os

__all__ = ["run", "run_if_pinned"]


def run(*, exit_on_error: bool = True) -> None:
    """Apply ``OMNIPKG_PINS``. ``exit_on_error=False``: strict failures raise instead of exiting."""
    from .pins import from_environment

    from_environment(exit_on_error=exit_on_error)


def run_if_pinned() -> None:
    """The PEP 829 ``.start`` entry point: like the ``.pth`` line, it checks the variable first."""
    if os.environ.get("OMNIPKG_PINS"):
        run()
