"""The ``sys.meta_path`` finder: a route table from top-level import names to directories.

One instance, :data:`FINDER`, is inserted first in ``sys.meta_path`` by :func:`install`
(idempotent; a venv may run a ``.pth`` twice) and taken out by :func:`uninstall`.
It answers only for what :mod:`omnipkg_hook.pins` routed:

- ``find_spec``: a top-level name in :attr:`OmnipkgFinder.routes` is looked up with
  ``PathFinder`` in the routed directories; everything else (every submodule, every
  unrouted name) returns ``None`` after one ``is None`` test and one dict lookup.
  Submodules follow their package's ``__path__``, which already points into the store.
- ``find_distributions``: a pinned distribution is described by its ``.dist-info`` in the
  store, so ``importlib.metadata.version("rich")`` agrees with ``import rich``.
- A routed dist not yet compiled for this interpreter (no ``omnipkg-pyc-<cache_tag>.json``:
  pip-omni compiles at install only what the bubble routes then) imports from its sources,
  compiled in memory: the first import from it puts a path hook in front whose loader
  never writes a ``.pyc``, so no process writes into the store without the writer lock.
  ``pip-omni install`` compiles it later (``omnipkg_pip.writers.bytecode.compile_pending``).
- Other finders that ask ``PathFinder`` themselves (pytest's assertion rewriter at
  ``sys.meta_path[0]``, setuptools' editable finders, ``-nspkg.pth`` lines, import
  profilers) would find the main environment's copy on ``sys.path``. So the path-entry
  finder (``FileFinder``) of every ``sys.path`` directory that holds a copy of a routed
  name (:attr:`OmnipkgFinder.entries`, decided with the routes) answers routed names as
  this finder does: it becomes a :class:`RoutingFileFinder` (same object, same caches,
  its class switched), so ``PathFinder.find_spec("rich", None)`` -- whoever calls it --
  returns the store's spec. Every other name costs those entries one dict lookup.

The finder holds plain dicts and imports only the standard library; ``importlib.metadata``
is imported inside ``find_distributions``, the first time something asks. A cached
pinned start-up imports this module, so it does without ``from __future__ import
annotations`` (a real import); its annotations work at run time on 3.9.
"""

import sys

try:  # the objects importlib.machinery exports, without importing importlib (and warnings) at start-up
    from _frozen_importlib_external import FileFinder as _FileFinder
    from _frozen_importlib_external import PathFinder as _PathFinder
except ImportError:  # pragma: no cover - not CPython
    from importlib.machinery import FileFinder as _FileFinder
    from importlib.machinery import PathFinder as _PathFinder

_PYC_MANIFEST = "omnipkg-pyc-" + str(sys.implementation.cache_tag) + ".json"

__all__ = ["OmnipkgFinder", "RoutingFileFinder", "FINDER", "install", "uninstall", "installed"]


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
            found = self._distributions[key] = _store_distribution_class()(self.dists[key])
        return found

    def invalidate_caches(self) -> None:
        self.cache.clear()
        self._distributions = {}


def _check_compiled(finder, directory: str) -> None:
    """One stat: is the dist at ``directory`` compiled for this interpreter? If not, its
    sources are imported with a loader that writes no ``.pyc`` (see the module docstring)."""
    import os

    if os.path.exists(os.path.join(directory, _PYC_MANIFEST)) or not os.path.isdir(directory):
        return
    finder.source_only = [*finder.source_only, directory]
    cache = sys.path_importer_cache
    for key in [k for k in cache if isinstance(k, str) and (k == directory or k.startswith(directory + os.sep))]:
        del cache[key]  # a finder made before this check would write .pyc
    if _source_only_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, _source_only_hook)


_source_only_finder = None


def _source_only_hook(path):
    """``sys.path_hooks`` entry: a FileFinder that never writes ``.pyc``, for the directories
    of routed dists not compiled for this interpreter; ImportError (next hook) for any other."""
    global _source_only_finder
    import os

    if not isinstance(path, str) or not any(
        path == d or path.startswith(d + os.sep) for d in FINDER.source_only
    ):
        raise ImportError("not a source-only store directory")
    if _source_only_finder is None:
        from importlib.machinery import (
            BYTECODE_SUFFIXES,
            EXTENSION_SUFFIXES,
            SOURCE_SUFFIXES,
            ExtensionFileLoader,
            FileFinder,
            SourceFileLoader,
            SourcelessFileLoader,
        )

        class SourceOnlyLoader(SourceFileLoader):
            """Reads a hash-based ``.pyc`` when there is one; compiles in memory otherwise."""

            def set_data(self, path, data, *, _mode=0o666):
                return None  # the store is written by pip-omni under its lock only

        _source_only_finder = FileFinder.path_hook(
            (ExtensionFileLoader, EXTENSION_SUFFIXES),
            (SourceOnlyLoader, SOURCE_SUFFIXES),
            (SourcelessFileLoader, BYTECODE_SUFFIXES),
        )
    return _source_only_finder(path)


def _normalize(name: str) -> str:
    """PEP 503, as ``store.normalize`` (which needs ``re``, not loaded at start-up)."""
    key = name.lower().replace("_", "-").replace(".", "-")
    while "--" in key:
        key = key.replace("--", "-")
    return key


_StoreDistribution = None


def _store_distribution_class():
    """``PathDistribution`` whose file reads and parsed metadata are cached: store files never
    change in place."""
    global _StoreDistribution
    if _StoreDistribution is None:
        import pathlib
        from importlib.metadata import PathDistribution

        class StoreDistribution(PathDistribution):
            """A pinned distribution's ``.dist-info`` in the store (read-only, so reads are cached)."""

            def __init__(self, path: str) -> None:
                super().__init__(pathlib.Path(path))
                self._texts: dict = {}
                self._metadata = None

            @property
            def metadata(self):
                # Parsed once: the email parser is most of what version() costs, and the
                # file cannot change (a new version is a new directory).
                if self._metadata is None:
                    self._metadata = super().metadata
                return self._metadata

            def read_text(self, filename):
                try:
                    return self._texts[filename]
                except KeyError:
                    text = self._texts[filename] = super().read_text(filename)
                    return text

            def __repr__(self) -> str:
                return f"<StoreDistribution {str(self._path)!r}>"

        _StoreDistribution = StoreDistribution
    return _StoreDistribution


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
