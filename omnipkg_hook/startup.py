"""What ``omnipkg_hook.pth`` (and, on Python 3.15+, ``omnipkg_hook.start``) runs at start-up.

The ``.pth`` line imports this module only when ``OMNIPKG_PINS`` is set and not empty,
so an interpreter without pins pays for one ``os.environ.get``. :func:`run` applies the
pins (:func:`omnipkg_hook.pins.from_environment`): a value that does not parse, or a pin
that cannot be satisfied, prints one line on stderr and the interpreter starts without
pins; with ``OMNIPKG_STRICT=1`` it prints the line and exits with status 1. Running it
again with the same value does nothing (a venv may process a ``.pth`` twice, and a
worker calls it explicitly).

The start-up cache: a known ``OMNIPKG_PINS`` value is applied without resolving it again.
Resolving pins needs the requirement parser, PEP 440 and JSON, whose imports (``re``,
``enum``, ``typing``, ``json``...) cost ~10 ms: far over the 1 ms budget of a pinned
start-up. So the first start-up with a given value resolves as usual and then writes
what it decided -- the route table, the ``.dist-info`` table, the exported variables --
with :mod:`marshal` to ``<store>/cache/startup/<hash>.marshal``. The next start-up with
the same value, interpreter, working directory and ``sys.path`` reads it back, checks
that nothing it depended on changed, and applies it, importing only ``os``, ``sys``,
``marshal`` (all loaded already) and :mod:`omnipkg_hook.finder` (plus ``fcntl`` for the leases).

What the entry depends on, checked on every use (a few dozen ``stat`` calls):

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

This module and :mod:`omnipkg_hook.finder` are all that a cached start-up imports, so neither
uses ``from __future__ import annotations`` (a real import of ``__future__``; annotations
here are written to work at run time on 3.9).
"""

import marshal
import os
import sys

__all__ = ["run", "run_if_pinned", "load", "save"]


def run(*, exit_on_error: bool = True) -> None:
    """Apply ``OMNIPKG_PINS``. ``exit_on_error=False``: strict failures raise instead of exiting.

    A value seen before is applied from the start-up cache when nothing it depends on
    changed; otherwise it is resolved (and the decision cached).
    """
    value = os.environ.get("OMNIPKG_PINS", "")
    try:
        if "omnipkg_hook.pins" not in sys.modules:  # once the pins module runs, it alone decides
            if value == applied:
                return
            if applied is None and value.strip() and load(value):  # switching pins purges: not here
                return
        from .pins import from_environment

        from_environment(exit_on_error=exit_on_error, cache=True)
    except BaseException as e:  # MemoryError, a bug, an interrupt: strict never starts without its pins
        if not exit_on_error or os.environ.get("OMNIPKG_STRICT", "").strip().lower() not in ("1", "true", "yes", "on"):
            raise
        _strict_exit(value, e)


def _strict_exit(value: str, e: BaseException) -> None:
    """One line on stderr and ``os._exit(1)`` (SystemExit from a .pth line would not stop site)."""
    try:
        line = (f"pip-omni: error: OMNIPKG_PINS={value!r} cannot be applied: {type(e).__name__}: {e}"
                "; OMNIPKG_STRICT=1 stops here").encode("utf-8", "replace")
    except BaseException:  # not even memory to format it
        line = b"pip-omni: error: OMNIPKG_PINS cannot be applied (out of memory); OMNIPKG_STRICT=1 stops here"
    try:
        os.write(2, line + b"\n")
    finally:
        os._exit(1)


def run_if_pinned() -> None:
    """The PEP 829 ``.start`` entry point: like the ``.pth`` line, it checks the variable first."""
    if os.environ.get("OMNIPKG_PINS"):
        run()


# -- the cache ------------------------------------------------------------------------------

FORMAT = 2

applied = None  # the OMNIPKG_PINS value the cache applied in this process (str or None)
path_added = []  # bin dirs it put on PATH
leased = {}  # dist dir -> fd of its lease (omnipkg_hook.leases adopts them)


_PRIME = (1 << 127) - 1


def _digest(text: str) -> str:
    """A file name for ``text``: its bytes as one integer modulo a Mersenne prime, done in C
    (a byte loop in Python cost ~50 us of the start-up; ``hash()`` is salted per process).
    Collisions only cost a miss: the entry holds the whole key and is checked against it."""
    return f"{int.from_bytes(text.encode('utf-8', 'surrogatepass'), 'little') % _PRIME:032x}"


def _store_root() -> "str | None":
    """``store.find_store()`` without its imports; None when a pyproject.toml may name the store."""
    env = os.environ.get("OMNIPKG_STORE")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    here = os.getcwd()
    while True:
        candidate = os.path.join(here, "pyproject.toml")
        if os.path.isfile(candidate):
            try:
                with open(candidate, "rb") as f:
                    if b"omnipkg" in f.read():
                        return None  # let store.py read it
            except OSError:
                return None
            break
        parent = os.path.dirname(here)
        if parent == here:
            break
        here = parent
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser("~/.local/share")
    return os.path.join(base, "pip-omni")


def _key(value: str, root: str) -> str:
    parts = [str(FORMAT), value, root, sys.executable, sys.version, os.getcwd()]
    parts += [os.path.abspath(p or ".") for p in sys.path]
    return "\0".join(parts)


def _file(root: str, key: str) -> str:
    return os.path.join(root, "cache", "startup", _digest(key) + ".marshal")


def _stamp(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _code_files() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, n) for n in ("startup.py", "resolve.py", "pins.py", "dependents.py", "_requirements.py", "_pep440.py")]


def load(value: str) -> bool:
    """Apply the cached decision for ``value`` if it is still valid; False means "resolve"."""
    global applied, path_added
    root = _store_root()
    if root is None:
        return False
    key = _key(value, root)
    try:
        with open(_file(root, key), "rb") as f:
            data = marshal.load(f)
        if type(data) is not dict or data.get("key") != key:
            return False
        for path, stamp in data["stamps"]:
            if _stamp(path) != stamp:
                return False
        for path in data["exists"]:
            os.stat(path)
        routes, dists, env_value, bins = data["routes"], data["dists"], data["env_value"], data["bins"]
        entries, warning = data["entries"], data["warning"]
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return False
    if not _lease({os.path.dirname(p) for p in dists.values()} | {d for dirs in routes.values() for d in dirs}):
        return False
    from . import finder

    modules = sys.modules
    for name, dirs in routes.items():  # start-up pins replace what earlier .pth files imported
        module = modules.get(name)
        if module is not None and not _served_from(module, dirs):
            for sub in [k for k in modules if k == name or k.startswith(name + ".")]:
                del modules[sub]
    finder.FINDER.set_routes(routes, dists, entries)
    finder.install()
    environ = os.environ
    environ["OMNIPKG_PINS"] = env_value
    environ["OMNIPKG_STORE"] = root
    added = [b for b in bins if os.path.isdir(b)]
    if added:
        rest = [p for p in environ.get("PATH", "").split(os.pathsep) if p not in added] if environ.get("PATH") else []
        environ["PATH"] = os.pathsep.join(added + rest)
    applied, path_added = env_value, added
    if warning and environ.get("OMNIPKG_QUIET", "").strip().lower() not in ("1", "true", "yes", "on"):
        print(warning, file=sys.stderr)
    return True


def _lease(dist_dirs) -> bool:
    """What :func:`omnipkg_hook.leases.hold` does (a shared flock on each dist's manifest),
    without importing it; False (and nothing held) if a dist is gone."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no leases
        return True
    taken = {}
    for d in sorted(dist_dirs):
        if d in leased:
            continue
        path = os.path.join(d, "omnipkg-dist.json")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            break
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                fcntl.flock(fd, fcntl.LOCK_SH)  # gc holds it for one rename
            st, now = os.fstat(fd), os.stat(path)
            if (st.st_ino, st.st_dev) != (now.st_ino, now.st_dev):
                raise FileNotFoundError(path)
        except OSError:
            os.close(fd)
            break
        taken[d] = fd
    else:
        leased.update(taken)
        return True
    for fd in taken.values():
        os.close(fd)
    return False


def _served_from(module, dirs) -> bool:
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or ()), "")
    return isinstance(where, str) and any(where.startswith(d + os.sep) for d in dirs)


def save(value: str, plan) -> None:
    """Record what resolving ``value`` at start-up decided (``plan``); errors are ignored."""
    try:
        root = plan.store.root
        key = _key(value, root)
        stamps = [(p, _stamp(p)) for p in {os.path.abspath(p or ".") for p in sys.path}]
        stamps += [(p, _stamp(p)) for p in _code_files()]
        for pin in plan.pins:
            base = os.path.join(plan.store.bubbles, pin.key)
            stamps.append((base, _stamp(base)))
            try:
                versions = os.listdir(base)
            except OSError:
                versions = []
            stamps += [(os.path.join(base, v), _stamp(os.path.join(base, v))) for v in versions]
            if pin.bubble_path:
                stamps.append((pin.bubble_path, _stamp(pin.bubble_path)))
        exists = list(plan.dists.values())
        for name, dirs in plan.routes.items():
            for d in dirs:
                entry = _entry(d, name)
                if entry is None:
                    return  # not sound enough to cache
                exists.append(entry)
        data = {
            "key": key,
            "stamps": stamps,
            "exists": exists,
            "routes": plan.routes,
            "dists": plan.dists,
            "env_value": plan.env_value(),
            "bins": [p.bin for p in plan.pins if p.bin],
            "entries": plan.entries,
            "warning": plan.warning,
        }
        path = _file(root, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump(data, f)
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError):
        pass


def _entry(directory: str, name: str) -> "str | None":
    for candidate in (name, name + ".py"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    try:
        for entry in os.listdir(directory):
            if entry.startswith(name + ".") and entry.endswith((".so", ".pyd")):
                return os.path.join(directory, entry)
    except OSError:
        pass
    return None
