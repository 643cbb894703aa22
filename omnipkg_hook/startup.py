"""What ``omnipkg_hook.pth`` runs at start-up when the decision is not cached, and the cache's writer.

The ``.pth`` line runs only when ``OMNIPKG_PINS`` is set and not empty, so an
interpreter without pins pays for one ``os.environ.get``. It calls
:func:`omnipkg_hook.finder.start`, which applies a cached decision, or else :func:`run`,
which applies the pins (:func:`omnipkg_hook.pins.from_environment`): a value that does
not parse, or a pin that cannot be satisfied, prints one line on stderr and the
interpreter starts without pins; with ``OMNIPKG_STRICT=1`` it prints the line and exits
with status 1. Running it again with the same value does nothing (a venv may process a
``.pth`` twice, and a worker calls it explicitly).

Every other failure -- ``MemoryError``, a bug, a broken or shadowed ``omnipkg_hook``
that cannot even be imported -- is caught by the ``.pth`` line itself, which holds a
``try`` statement in a string it ``exec``s only when ``OMNIPKG_PINS`` is set (~15 us to
compile; a ``.pth`` line cannot hold a ``try``). Its handler, compiled only when
something failed, prints one line: an error and exit status 1 with ``OMNIPKG_STRICT=1``
(strict never starts Python without its pins), else a warning, and the interpreter
starts without pins. :func:`run` called from Python (workers, tests) has the same
strict guard.

The start-up cache: a known ``OMNIPKG_PINS`` value is applied without resolving it again.
Resolving pins needs the requirement parser, PEP 440 and JSON, whose imports (``re``,
``enum``, ``typing``, ``json``...) cost ~10 ms: far over the 1 ms budget of a pinned
start-up. So the first start-up with a given value resolves as usual and then
:func:`omnipkg_hook.startcache.save` writes what it decided -- the route table, the ``.dist-info`` table, the exported
variables -- with :mod:`marshal` to ``<store>/cache/startup/<hash>.marshal``. The next
start-up with the same value, interpreter, working directory and ``sys.path`` reads it
back (:func:`omnipkg_hook.finder.load`), checks that nothing it depended on changed, and
applies it, importing only :mod:`omnipkg_hook.finder` (and ``fcntl`` for the leases).

What the entry depends on, checked on every use (a dozen or two ``stat`` calls):

- the mtime of every ``sys.path`` directory (installing or removing a distribution in
  the main environment adds or removes a ``.dist-info`` there),
- the mtime of ``bubbles/<name>`` and of each of its version directories, for every
  pinned name, and of each bubble manifest used (a bubble made, replaced or removed),
- that every routed top-level entry and ``.dist-info`` exists (the quick integrity check;
  anything missing takes the slow path, which repairs),
- the mtimes of the hook's own resolution code (an upgrade of pip-omni).

Anything unexpected -- no entry, a stale one, an unreadable file, a store that cannot be
written -- falls back to the normal path, which is always correct; the cache is never
the only way to a decision. ``pip-omni gc`` may delete ``cache/`` at any time.
"""

import os

from . import finder
from .finder import load
from .finder import store_root as _store_root  # noqa: F401 - omnipkg_pip.commands.run and tests use it here

__all__ = ["run", "resolve", "run_if_pinned", "load", "pth_line"]

_TRUE = ("1", "true", "yes", "on")


def run(*, exit_on_error: bool = True) -> None:
    """Apply ``OMNIPKG_PINS``. ``exit_on_error=False``: strict failures raise instead of exiting.

    A value seen before is applied from the start-up cache when nothing it depends on
    changed; otherwise it is resolved (and the decision cached).
    """
    _run(exit_on_error, cached=True)


def resolve() -> None:
    """:func:`run` after :func:`omnipkg_hook.finder.start` found no valid cached decision."""
    _run(True, cached=False)


def _run(exit_on_error: bool, cached: bool) -> None:
    value = os.environ.get("OMNIPKG_PINS", "")
    try:
        if cached and finder.from_cache(value):
            return
        from .pins import from_environment

        from_environment(exit_on_error=exit_on_error, cache=True)
    except BaseException as e:  # MemoryError, a bug, an interrupt: strict never starts without its pins
        if not exit_on_error or os.environ.get("OMNIPKG_STRICT", "").strip().lower() not in _TRUE:
            raise
        _strict_exit(value, e)


def _strict_exit(value: str, e: BaseException) -> None:
    """One line on stderr and ``os._exit(1)`` (SystemExit from a .pth line would not stop site).
    The ``.pth`` line's own handler prints the same line (it cannot import this module)."""
    try:
        line = (f"pip-omni: error: OMNIPKG_PINS={value!r} cannot be applied: {type(e).__name__}: {e}"
                "; OMNIPKG_STRICT=1 stops here").encode("utf-8", "replace")
    except BaseException:  # not even memory to format it
        line = b"pip-omni: error: OMNIPKG_PINS cannot be applied (out of memory); OMNIPKG_STRICT=1 stops here"
    try:
        os.write(2, line + b"\n")
    finally:
        os._exit(1)


# -- the .pth line ------------------------------------------------------------------------

# What the .pth line execs when OMNIPKG_PINS is set, and its handler, compiled only when
# something failed: it cannot count on this package (which may be what failed), so it
# uses os and sys alone. omnipkg_hook/data/omnipkg_hook.pth is pth_line() (a test checks).
# A venv may process the .pth twice: sys._omnipkg_hook_start_failed records the value
# reported, and finder.start() applies nothing once it is set (a second try must not pin
# after a warning that said "starting without pins").
_PTH_TRY = "try:import omnipkg_hook.finder as f;f.start()\nexcept BaseException as e:exec(h)"
_PTH_HANDLER = """\
import os, sys
s = os.environ.get("OMNIPKG_STRICT", "").strip().lower() in ("1", "true", "yes", "on")
if not (s or isinstance(e, Exception)):
    raise
v = os.environ.get("OMNIPKG_PINS")
try:
    m = sys.modules.get("omnipkg_hook.finder")
    if m is not None and not s:
        m.FINDER.set_routes({}, {})
        m.uninstall()
except BaseException:
    pass
if s or getattr(sys, "_omnipkg_hook_start_failed", None) != v:
    sys._omnipkg_hook_start_failed = v
    try:
        w = ("pip-omni: %s: OMNIPKG_PINS=%r cannot be applied: %s: %s%s" % (
            ("warning", "error")[s], v, type(e).__name__, e,
            ("; starting without pins (set OMNIPKG_STRICT=1 to make this fatal)", "; OMNIPKG_STRICT=1 stops here")[s],
        )).encode("utf-8", "replace")
    except BaseException:
        w = b"pip-omni: error: OMNIPKG_PINS cannot be applied (out of memory); OMNIPKG_STRICT=1 stops here"
    try:
        os.write(2, w + b"\\n")
    except OSError:
        pass
if s:
    os._exit(1)
"""


def pth_line() -> str:
    """The line of ``omnipkg_hook.pth``: one ``os.environ.get`` when ``OMNIPKG_PINS`` is unset.

    A venv's site-packages is often processed twice (``lib`` and its ``lib64`` link): once
    :func:`omnipkg_hook.finder.start` has run, the second run is a dict lookup and a
    ``getattr``, not another ``exec``. (The finder may be loaded without ``start`` having
    run: ``site.main()`` called after ``import omnipkg_hook``.)
    """
    return ('import os, sys; os.environ.get("OMNIPKG_PINS") and not getattr(sys.modules.get("omnipkg_hook.finder"), '
            f'"started", False) and exec({_PTH_TRY!r}, {{"h": {_PTH_HANDLER!r}}})\n')


def run_if_pinned() -> None:
    """The PEP 829 ``.start`` entry point: like the ``.pth`` line, it checks the variable first."""
    if os.environ.get("OMNIPKG_PINS"):
        run()
