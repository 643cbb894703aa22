"""``pkg_resources`` under pins: its working set describes the pinned distributions.

``pkg_resources`` builds ``working_set`` once, when it is imported, by scanning the
``sys.path`` directories: it never asks ``sys.meta_path``, so on its own it reports the
main environment's copy of a pinned distribution (and setuptools 65's ``__version__``,
which comes from ``pkg_resources.get_distribution("setuptools")``, with it). The finder
therefore watches the import of ``pkg_resources`` while pins are active
(:func:`watch`) and, right after the module ran, puts each pinned distribution's
``.dist-info`` in the store into ``working_set.by_key`` (:func:`sync`); ``pin()``,
``unpin()`` and ``using()`` sync an already imported ``pkg_resources`` again, restoring
the main entries they replaced. Nothing is added to ``sys.path`` and no
``working_set`` callback runs (``activate()`` would put the store on ``sys.path``).

Standard library only; imported only when ``pkg_resources`` is.
"""

from __future__ import annotations

import os
import sys

__all__ = ["watch", "sync"]

# id(working_set) -> {key: (its by_key entry before the sync (None: none), the store location added)}
_replaced: dict[int, dict] = {}


class _SyncAfterExec:
    """The loader of ``pkg_resources`` for one import: runs it, then :func:`sync`, then
    gives the module its own loader back (``pkg_resources`` looks providers up by loader type)."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            self.loader.exec_module(module)
        finally:
            module.__loader__ = self.loader
            if module.__spec__ is not None:
                module.__spec__.loader = self.loader
        from .finder import FINDER

        sync(module, FINDER.dists)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def watch(spec):
    """``spec`` of ``pkg_resources`` with a loader that syncs the working set after it ran."""
    if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
        spec.loader = _SyncAfterExec(spec.loader)
    return spec


def sync(module, dists: dict) -> None:
    """Make ``module.working_set`` describe ``dists`` (``{name: store .dist-info}``) over
    the main environment's entries; entries of earlier pins no longer active go back."""
    ws = getattr(module, "working_set", None)
    by_key = getattr(ws, "by_key", None)
    if not isinstance(by_key, dict):
        return
    saved = _replaced.setdefault(id(ws), {})
    for key, (old, location) in saved.items():  # back to the main environment first
        if old is None:
            by_key.pop(key, None)
        else:
            by_key[key] = old
        keys = ws.entry_keys.get(location)
        if keys is not None and key in keys:
            keys.remove(key)
        if not keys and location in ws.entries:
            ws.entries.remove(location)
            ws.entry_keys.pop(location, None)
    saved.clear()
    for dist_info in dists.values():
        try:
            dist = module.Distribution.from_location(os.path.dirname(dist_info), os.path.basename(dist_info))
        except Exception:  # a pkg_resources too old or too new for this: leave it as it is
            continue
        saved.setdefault(dist.key, (by_key.get(dist.key), dist.location))
        by_key[dist.key] = dist
        keys = ws.entry_keys.setdefault(dist.location, [])
        if dist.key not in keys:
            keys.append(dist.key)
        if dist.location not in ws.entries:
            ws.entries.append(dist.location)  # the working set's own list, not sys.path


def sync_imported(dists: dict) -> None:
    """:func:`sync` the ``pkg_resources`` in ``sys.modules``, if any (after the pins changed)."""
    module = sys.modules.get("pkg_resources")
    if module is not None:
        sync(module, dists)
