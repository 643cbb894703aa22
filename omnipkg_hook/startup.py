"""What ``omnipkg_hook.pth`` (and, on Python 3.15+, ``omnipkg_hook.start``) runs at start-up.

The ``.pth`` line imports this module only when ``OMNIPKG_PINS`` is set and not empty,
so an interpreter without pins pays for one ``os.environ.get``. :func:`run` applies the
pins (:func:`omnipkg_hook.pins.from_environment`): a value that does not parse, or a pin
that cannot be satisfied, prints one line on stderr and the interpreter starts without
pins; with ``OMNIPKG_STRICT=1`` it prints the line and exits with status 1. Running it
again with the same value does nothing (a venv may process a ``.pth`` twice, and a
worker calls it explicitly). A value seen before is applied from a cache in the store
(:mod:`omnipkg_hook._startcache`) without importing the resolver: ~1 ms instead of ~15.
"""

from __future__ import annotations

import os
import sys

__all__ = ["run", "run_if_pinned"]


def run(*, exit_on_error: bool = True) -> None:
    """Apply ``OMNIPKG_PINS``. ``exit_on_error=False``: strict failures raise instead of exiting.

    A value seen before is applied from :mod:`omnipkg_hook._startcache` when nothing it
    depends on changed; otherwise it is resolved (and the decision cached).
    """
    value = os.environ.get("OMNIPKG_PINS", "")
    if "omnipkg_hook.pins" not in sys.modules:  # once the pins module runs, it alone decides
        from . import _startcache

        if value == _startcache.applied or (value.strip() and _startcache.load(value)):
            return
    from .pins import from_environment

    from_environment(exit_on_error=exit_on_error, cache=True)


def run_if_pinned() -> None:
    """The PEP 829 ``.start`` entry point: like the ``.pth`` line, it checks the variable first."""
    if os.environ.get("OMNIPKG_PINS"):
        run()
