"""The ``sys.meta_path`` finder: a route table from top-level import names to directories.

One instance, :data:`FINDER`, is inserted first in ``sys.meta_path`` by :func:`install`
(idempotent; a venv may run a ``.pth`` twice) and taken out by :func:`uninstall`.
It answers only for what :mod:`omnipkg_hook.pins` routed:

- ``find_spec``: a top-level name in :attr:`OmnipkgFinder.routes` is looked up with
  ``PathFinder`` in the routed directories; everything else (every submodule, every
  unrouted name) returns ``None`` after one ``is None`` test and one dict lookup.
  Submodules follow their package's ``__path__``, which already points into the store.
- ``find_distributions``: a pinned distribution is described by its ``.dist-info`` in the
  store (:mod:`omnipkg_hook.distributions`), so ``importlib.metadata.version("rich")``
  agrees with ``import rich``.
- A routed dist not yet compiled for this interpreter (no ``omnipkg-pyc-<cache_tag>.json``:
  pip-omni compiles at install only what the bubble routes then) imports from its sources
  with a loader that never writes a ``.pyc`` (:mod:`omnipkg_hook.uncompiled`).
- Other finders that ask ``PathFinder`` themselves (pytest's assertion rewriter at
  ``sys.meta_path[0]``, setuptools' editable finders, ``-nspkg.pth`` lines, import
  profilers) would find the main environment's copy on ``sys.path``. So the path-entry
  finder (``FileFinder``) of every ``sys.path`` directory that holds a copy of a routed
  name (:attr:`OmnipkgFinder.entries`, decided with the routes) answers routed names as
  this finder does: it becomes a :class:`RoutingFileFinder` (same object, same caches,
  its class switched), so ``PathFinder.find_spec("rich", None)`` -- whoever calls it --
  returns the store's spec. Every other name costs those entries one dict lookup.

The finder holds plain dicts and imports only the standard library; ``importlib.metadata``
is imported (by :mod:`omnipkg_hook.distributions`) the first time something asks about a
pinned distribution.

It also reads the start-up cache (:func:`start`, :func:`load`; the writer and the format
are in :mod:`omnipkg_hook.startup`): a pinned start-up whose decision is cached imports
this package, this module and ``fcntl`` (for the leases), nothing else. Every module on
that path costs ~0.2 ms (finding, reading and unmarshalling it), so the reader lives
beside the tables it fills instead of in a module of its own. For the same reason this
module does without ``from __future__ import annotations`` (a real import); its
annotations work at run time on 3.9.
"""

import marshal
import os
import sys

try:  # the objects importlib.machinery exports, without importing importlib (and warnings) at start-up
    from _frozen_importlib_external import FileFinder as _FileFinder
    from _frozen_importlib_external import PathFinder as _PathFinder
except ImportError:  # pragma: no cover - not CPython
    from importlib.machinery import FileFinder as _FileFinder
    from importlib.machinery import PathFinder as _PathFinder

_PYC_MANIFEST = "omnipkg-pyc-" + str(sys.implementation.cache_tag) + ".json"

__all__ = ["OmnipkgFinder", "RoutingFileFinder", "FINDER", "install", "uninstall", "installed", "start", "load"]


class OmnipkgFinder:
    """Routes pinned top-level import names (and their metadata) to the store.

    :attr:`routes` maps a top-level import name to the directories that serve it, in
    order (several directories only for a namespace package); :attr:`dists` maps a
    normalised distribution name to its ``.dist-info`` directory. Both are replaced as
    a whole by :meth:`set_routes`, never edited in place, so a concurrent import sees
    the old table or the new one. :attr:`cache` is free for the pin resolver's reads
    of the store and the main environment; :meth:`invalidate_caches` empties it.
    """

    # Behind a class attribute so a test can spy on what is delegated (pytest does the same).
    PathFinder = _PathFinder

    def __init__(self) -> None:
        self.routes: dict[str, list[str]] = {}
        self.dists: dict[str, str] = {}
        self._table: dict = {}
        self.entries: list[str] = []  # sys.path entries whose FileFinder also answers routed names
        self.cache: dict = {}
        self._distributions: dict[str, object] = {}
        self._checked: set = set()  # routed dirs whose compiled state was looked at
        self.source_only: list = []  # routed dirs without .pyc for this interpreter
        self._busy: set[str] = set()  # names being merged by _namespace (no re-entry from entries)

    def __repr__(self) -> str:
        return f"<OmnipkgFinder routes={self.routes!r}>"

    def set_routes(self, routes: dict[str, list[str]], dists: dict[str, str], entries=()) -> None:
        """Replace the route table, the pinned ``.dist-info`` table and the shadowed entries.

        ``entries`` are the ``sys.path`` entries that hold a main-environment copy of a
        routed name; their path-entry finders answer routed names from now on (see
        :class:`RoutingFileFinder`); entries shadowed before and not now are given back.
        """
        self.routes = routes
        self.dists = dists
        # What find_spec looks up: the routes, and names watched while any dist is pinned.
        self._table = {**_WATCHED, **routes} if dists else routes
        self._distributions = {}
        if entries or self.entries:
            self.entries = _shadow(list(entries), self.entries)
        if "pkg_resources" in sys.modules:
            from .legacy import sync_imported

            sync_imported(dists)

    # -- imports -------------------------------------------------------------------------

    def find_spec(self, fullname, path=None, target=None):
        if path is not None:
            return None
        dirs = self._table.get(fullname)
        if dirs is None:
            return None
        checked = self._checked
        for d in dirs:
            if d not in checked:
                checked.add(d)
                _check_compiled(self, d)
        if fullname in _WATCHED:
            from .legacy import watch

            return watch(self.PathFinder.find_spec(fullname, dirs or None, target))
        spec = self.PathFinder.find_spec(fullname, dirs, target)
        if spec is None:
            from .errors import StoreCorruptError

            raise StoreCorruptError(
                f"{fullname!r} is pinned to {dirs[0]!r}, but it is not there any more",
                "the store changed under this process: run `pip-omni doctor --repair`, then restart",
            )
        if spec.origin is None and spec.submodule_search_locations is not None:
            spec = self._namespace(fullname, dirs, spec, target)
        return spec

    def _namespace(self, fullname, dirs, spec, target):
        """A routed namespace package: the store's portions first, then the main environment's."""
        busy = self._busy
        busy.add(fullname)
        try:
            merged = self.PathFinder.find_spec(fullname, [*dirs, *sys.path], target)
        finally:
            busy.discard(fullname)
        if merged is not None and merged.origin is None and merged.submodule_search_locations is not None:
            spec = merged
        # _NamespacePath recomputes itself from sys.path when sys.path or the import
        # epoch changes; keep the store's portions in front when it does.
        locations = spec.submodule_search_locations
        if getattr(locations, "_path_finder", None) is not None:
            get_spec = self.PathFinder._get_spec
            front = list(dirs)

            def path_finder(name, parent):
                busy.add(name)
                try:
                    return get_spec(name, [*front, *parent])
                finally:
                    busy.discard(name)

            locations._path_finder = path_finder
        return spec

    # -- importlib.metadata --------------------------------------------------------------

    def find_distributions(self, context=None):
        """The pinned distributions that ``context`` asks for (all of them if it names none).

        Answers only for the default search path (``sys.path``): a caller asking about
        explicit directories gets what is in them, from the other finders.
        """
        dists = self.dists
        if not dists:
            return iter(())
        name = None
        if context is not None:
            path = context.path
            if path is not sys.path and list(path) != sys.path:
                return iter(())
            name = context.name
        if name is not None:
            key = _normalize(name)
            if key not in dists:
                return iter(())
            return iter((self._distribution(key),))
        return iter([self._distribution(key) for key in dists])

    def _distribution(self, key: str):
        found = self._distributions.get(key)
        if found is None:
            from .distributions import StoreDistribution

            found = self._distributions[key] = StoreDistribution(self.dists[key])
        return found

    def invalidate_caches(self) -> None:
        self.cache.clear()
        self._distributions = {}


def _check_compiled(finder, directory: str) -> None:
    """One stat: is the dist at ``directory`` compiled for this interpreter? If not, its
    sources are imported with a loader that writes no ``.pyc`` (:mod:`omnipkg_hook.uncompiled`)."""
    if os.path.exists(os.path.join(directory, _PYC_MANIFEST)) or not os.path.isdir(directory):
        return
    from .uncompiled import serve_from_sources

    serve_from_sources(finder, directory)


def _normalize(name: str) -> str:
    """PEP 503, as ``store.normalize`` (which needs ``re``, not loaded at start-up)."""
    key = name.lower().replace("_", "-").replace(".", "-")
    while "--" in key:
        key = key.replace("--", "-")
    return key


# Imported modules whose state describes the main environment, fixed after they run
# (omnipkg_hook.legacy); the value is looked up in routes when the name is routed too.
_WATCHED = {"pkg_resources": ()}


class RoutingFileFinder(_FileFinder):
    """A ``sys.path`` entry's ``FileFinder`` that serves routed top-level names from the store.

    Made by switching the class of the entry's existing finder (in
    ``sys.path_importer_cache``), so its directory cache is kept and ``isinstance(f,
    FileFinder)`` holds (pkgutil, pytest). Names that are not routed cost one dict lookup.
    """

    def find_spec(self, fullname, target=None):
        if fullname in FINDER.routes and fullname not in FINDER._busy:
            return FINDER.find_spec(fullname, None, target)
        return _FileFinder.find_spec(self, fullname, target)


def _shadow(entries: list, before: list) -> list:
    """Switch the finders of ``entries`` to :class:`RoutingFileFinder`, those of ``before`` back.

    An entry whose finder is not a plain ``FileFinder`` (a zip file, a custom path hook)
    is left alone and dropped from the list returned. If ``sys.path_importer_cache`` is
    cleared, new finders are plain again until the next :meth:`OmnipkgFinder.set_routes`.
    """
    cache = sys.path_importer_cache
    keep = set(entries)
    for entry in before:
        found = cache.get(entry)
        if entry not in keep and type(found) is RoutingFileFinder:
            found.__class__ = _FileFinder
    done = []
    for entry in entries:
        found = cache.get(entry)
        if found is None and entry not in cache:
            try:
                found = _PathFinder._path_importer_cache(entry)
            except Exception:  # pragma: no cover - a path hook that fails for its own reasons
                found = None
        if type(found) is _FileFinder:
            found.__class__ = RoutingFileFinder
        if type(found) is RoutingFileFinder:
            done.append(entry)
    return done


FINDER = OmnipkgFinder()


def installed() -> bool:
    return any(f is FINDER for f in sys.meta_path)


def install() -> OmnipkgFinder:
    """Put :data:`FINDER` first in ``sys.meta_path`` (once; moved to the front if it was pushed back)."""
    meta_path = sys.meta_path
    if meta_path and meta_path[0] is FINDER:
        return FINDER
    if installed():
        meta_path.remove(FINDER)
    meta_path.insert(0, FINDER)
    return FINDER


def uninstall() -> None:
    """Take :data:`FINDER` out of ``sys.meta_path`` (its routes stay as they are)."""
    while installed():
        sys.meta_path.remove(FINDER)


# -- start-up: the cached decision --------------------------------------------------------

FORMAT = 3  # of a cache entry (omnipkg_hook.startup writes them); part of the key

started = False  # start() has run (the .pth line's second run in a venv then does nothing)
applied = None  # the OMNIPKG_PINS value the cache applied in this process (str or None)
path_added = []  # bin dirs it put on PATH
leased = {}  # dist dir -> fd of its lease (omnipkg_hook.pins hands them to omnipkg_hook.leases)

_TRUE = ("1", "true", "yes", "on")


def start() -> None:
    """What ``omnipkg_hook.pth`` runs when ``OMNIPKG_PINS`` is set: the cached decision if it
    is still valid, else :func:`omnipkg_hook.startup.resolve` (which resolves and caches).

    Failures are not handled here: the ``.pth`` line catches every exception, importing
    this module included, and reports it (or, with ``OMNIPKG_STRICT=1``, exits).
    """
    global started
    started = True
    if hasattr(sys, "_omnipkg_hook_start_failed"):  # reported by the .pth line: starting without pins
        return
    if not from_cache(os.environ.get("OMNIPKG_PINS", "")):
        from .startup import resolve

        resolve()


def from_cache(value: str) -> bool:
    """True when nothing is left to do for ``value``: applied already, or applied now from
    the cache. Once :mod:`omnipkg_hook.pins` is loaded it alone decides (False)."""
    if "omnipkg_hook.pins" in sys.modules:
        return False
    if value == applied:
        return True
    return applied is None and bool(value.strip()) and load(value)  # switching pins purges: not here


_PRIME = (1 << 127) - 1


def _digest(text: str) -> str:
    """A file name for ``text``: its bytes as one integer modulo a Mersenne prime, done in C
    (a byte loop in Python cost ~50 us of the start-up; ``hash()`` is salted per process).
    Collisions only cost a miss: the entry holds the whole key and is checked against it."""
    return f"{int.from_bytes(text.encode('utf-8', 'surrogatepass'), 'little') % _PRIME:032x}"


def store_root() -> "str | None":
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


def cache_key(value: str, root: str) -> str:
    """Everything a cached decision is only valid for. ``sys.path`` as it is: with the working
    directory in the key, its relative entries are as precise as absolute ones."""
    return "\0".join([str(FORMAT), value, root, sys.executable, sys.version, os.getcwd(), *sys.path])


def fresh(stamps, exists) -> bool:
    """Whether a cached decision still holds: every ``(path, st_mtime_ns)`` of ``stamps``
    unchanged (-1: still absent) and every path of ``exists`` there. Written by
    :func:`omnipkg_hook.startcache.stamps`; read here for the start-up cache and by
    :mod:`omnipkg_hook.pins` for ``using()``'s cached resolutions."""
    stat = os.stat
    for path, stamp in stamps:
        try:
            if stat(path).st_mtime_ns != stamp:
                return False
        except OSError:
            if stamp != -1:
                return False
    try:
        for path in exists:
            stat(path)
    except OSError:
        return False
    return True


def cache_file(root: str, key: str) -> str:
    return os.path.join(root, "cache", "startup", _digest(key) + ".marshal")


def load(value: str) -> bool:
    """Apply the cached decision for ``value`` if it is still valid; False means "resolve"."""
    global applied, path_added
    root = store_root()
    if root is None:
        return False
    try:
        key = cache_key(value, root)
        data = marshal.loads(_read(cache_file(root, key)))
        if type(data) is not dict or data.get("key") != key or not fresh(data["stamps"], data["exists"]):
            return False
        routes, dists, env_value, bins = data["routes"], data["dists"], data["env_value"], data["bins"]
        entries, warning = data["entries"], data["warning"]
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        return False
    if not _lease({os.path.dirname(p) for p in dists.values()} | {d for dirs in routes.values() for d in dirs}):
        return False
    modules = sys.modules
    for name, dirs in routes.items():  # start-up pins replace what earlier .pth files imported
        module = modules.get(name)
        if module is not None and not _served_from(module, dirs):
            for sub in [k for k in modules if k == name or k.startswith(name + ".")]:
                del modules[sub]
    FINDER.set_routes(routes, dists, entries)
    install()
    environ = os.environ
    environ["OMNIPKG_PINS"] = env_value
    environ["OMNIPKG_STORE"] = root
    added = [b for b in bins if os.path.isdir(b)]
    if added:
        rest = [p for p in environ.get("PATH", "").split(os.pathsep) if p not in added] if environ.get("PATH") else []
        environ["PATH"] = os.pathsep.join(added + rest)
    applied, path_added = env_value, added
    if warning and environ.get("OMNIPKG_QUIET", "").strip().lower() not in _TRUE:
        print(warning, file=sys.stderr)
    return True


_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _read(path: str) -> bytes:
    """The file's bytes with two system calls for an entry of a few kB (``open()`` builds
    a buffered file object and asks ``fstat`` first)."""
    fd = os.open(path, _O_FLAGS)
    try:
        parts = [os.read(fd, 1 << 16)]
        while len(parts[-1]) == 1 << 16:
            parts.append(os.read(fd, 1 << 16))
    finally:
        os.close(fd)
    return b"".join(parts)


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
            fd = os.open(path, _O_FLAGS)
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
