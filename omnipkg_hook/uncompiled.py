"""Routed dists not compiled for this interpreter: imported from their sources, no ``.pyc`` written.

pip-omni compiles at install only what a bubble routes then, and nothing with ``install
--no-compile`` (every bubble ``pip-omni run`` makes on demand, compiled after its program in the
background), so a routed dist may have no ``omnipkg-pyc-<cache_tag>.json`` for this interpreter. The finder looks (one ``stat``) the
first time it routes to a directory; for such a dist it calls :func:`serve_from_sources`:
the directory joins :attr:`omnipkg_hook.finder.OmnipkgFinder.source_only` and
:func:`source_only_hook`, put first in ``sys.path_hooks``, gives it a ``FileFinder`` whose
source loader never writes a ``.pyc`` -- no process writes into the store without the
writer lock. The background compile, ``pip-omni store compile`` or the next ``pip-omni install``
compiles it later (``omnipkg_pip.writers.bytecode.compile_pending``, ``omnipkg_pip.writers.later``).

Imported only when such a dist is routed: a compiled one costs the finder one ``stat``.
"""

from __future__ import annotations

import os
import sys

from .finder import FINDER

__all__ = ["serve_from_sources", "source_only_hook"]


def serve_from_sources(finder, directory: str) -> None:
    """Import ``directory`` (a routed dist without ``.pyc`` for this interpreter) from sources."""
    finder.source_only = [*finder.source_only, directory]
    cache = sys.path_importer_cache
    for key in [k for k in cache if isinstance(k, str) and (k == directory or k.startswith(directory + os.sep))]:
        del cache[key]  # a finder made before this check would write .pyc
    if source_only_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, source_only_hook)


_source_only_finder = None


def source_only_hook(path):
    """``sys.path_hooks`` entry: a FileFinder that never writes ``.pyc``, for the directories
    of routed dists not compiled for this interpreter; ImportError (next hook) for any other."""
    global _source_only_finder
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
