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

**Compiled ahead by a cell zygote.** A cell of ``pip-omni run --matrix`` forked from a zygote
(:mod:`omnipkg_hook.workers.zygote`) inherits :data:`PRECOMPILED`: code objects the zygote
compiled, while the cells' bubbles were being made, from the ``.py`` files of the wheels
that go into them, keyed by the sha256 of the source. The source loader here takes the
one whose key is the sha256 of the very bytes it read (each entry once: popped), points
its ``co_filename`` at the file as an import would, and compiles only what is not there.
What it returns is what ``compile()`` of those bytes returns: only the time moves.
"""

from __future__ import annotations

import os
import sys
from _imp import _fix_co_filename

# At import, not in the path hook: importing them there would consult the path hooks again,
# this one among them, for a source-only directory on sys.path (endless recursion)
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)

from .finder import FINDER

__all__ = ["serve_from_sources", "source_only_hook", "PRECOMPILED"]

# sha256 digest of a source file's bytes -> the code object compile() made of them (with
# another file name), put here by a cell zygote before it forks (workers/zygote.py)
PRECOMPILED: dict[bytes, object] = {}
USED = [0]  # how many imports took their code from PRECOMPILED (the tests read it)


def serve_from_sources(finder, directory: str) -> None:
    """Import ``directory`` (a routed dist without ``.pyc`` for this interpreter) from sources."""
    finder.source_only = [*finder.source_only, directory]
    cache = sys.path_importer_cache
    for key in [k for k in cache if isinstance(k, str) and (k == directory or k.startswith(directory + os.sep))]:
        del cache[key]  # a finder made before this check would write .pyc
    if source_only_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, source_only_hook)


class SourceOnlyLoader(SourceFileLoader):
    """Reads a hash-based ``.pyc`` when there is one; compiles in memory otherwise (or takes
    the code a cell zygote compiled ahead from the same bytes: :data:`PRECOMPILED`)."""

    def set_data(self, path, data, *, _mode=0o666):
        return None  # the store is written by pip-omni under its lock only

    def source_to_code(self, data, path, *, _optimize=-1):
        if PRECOMPILED and _optimize == -1 and isinstance(data, bytes):
            from hashlib import sha256  # only in a forked cell: the zygote imported it

            code = PRECOMPILED.pop(sha256(data).digest(), None)
            if code is not None:
                _fix_co_filename(code, path)
                USED[0] += 1
                return code
        return super().source_to_code(data, path, _optimize=_optimize)


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
        _source_only_finder = FileFinder.path_hook(
            (ExtensionFileLoader, EXTENSION_SUFFIXES),
            (SourceOnlyLoader, SOURCE_SUFFIXES),
            (SourcelessFileLoader, BYTECODE_SUFFIXES),
        )
    return _source_only_finder(path)
