"""Garbage collection and the store's size (``pip-omni gc``, ``store info``).


gc removes, under the write lock, what no bubble references: dist directories no
bubble manifest names, objects no dist manifest names, script directories of
removed bubbles, and staging left in ``tmp/`` by interrupted writers. Each dist
directory is first renamed into ``tmp/`` (it disappears at once, whole) and then
deleted. ``--dry-run`` only reports.

A dist no bubble references that a live process still imports from (it holds a
lease, :mod:`omnipkg_hook.leases`) is kept, with its objects, and reported as in
use; the next gc after that process ends removes it. Each dist is renamed away
while gc holds the exclusive side of its lease, so no process can start using it
half-way.

:func:`info` is ``store info --json``::

    {"store": str, "objects": int, "object_bytes": int, "dists": int, "bubbles": int,
     "linked_bytes": int, "saved_bytes": int}

``linked_bytes`` is what the dists would take as plain copies; ``saved_bytes`` is
``linked_bytes - object_bytes``.
"""

from __future__ import annotations

import os
import shutil

from omnipkg_hook import leases
from omnipkg_hook.store import (
    DIST_MANIFEST,
    Store,
    WriteLock,
    claim_tmp,
    make_tmpdir,
    read_manifest,
    tmp_in_use,
)

from .layout import real_dirs, walk_dists

__all__ = ["collect", "garbage", "info"]


def _walk_objects(store: Store):
    for prefix in real_dirs(store.objects):
        for rest in _ls(os.path.join(store.objects, prefix)):
            yield os.path.join(store.objects, prefix, rest)


def _ls(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _dist_objects(store: Store, path: str, into: set) -> None:
    """Add to ``into`` the objects the manifests of the dist at ``path`` name, and the
    objects holding those manifests' own bytes (bubbles record them for rebuilding)."""
    import hashlib

    for fname in _ls(path):
        if fname == DIST_MANIFEST or (fname.startswith("omnipkg-pyc-") and fname.endswith(".json")):
            try:
                with open(os.path.join(path, fname), "rb") as fh:
                    into.add(store.object_path(hashlib.sha256(fh.read()).hexdigest()))
                m = read_manifest(os.path.join(path, fname))
            except (OSError, ValueError):
                continue
            for f in m["files"]:
                into.add(store.object_path(f["sha256"], bool(f.get("mode", 0o644) & 0o111)))


def garbage(store: Store) -> dict:
    """What gc would remove: {"dists": [...], "objects": [...], "bins": [...], "tmp": [...], "bytes": n},
    and "in_use": unreferenced dists kept because a live process holds them."""
    referenced_dists = set()
    live_bins = set()
    live_objects = set()
    for name, version, key, path in store.iter_bubbles():
        m = read_manifest(path)
        for d in m["dists"].values():
            referenced_dists.add(d["path"])
            # the dist's manifests kept as objects (for rebuilding a deleted dist directory)
            live_objects.update(store.object_path(d[k]) for k in ("manifest", "pyc_manifest") if d.get(k))
        live_bins.add(os.path.basename(store.bubble_bin(name, version, key)))
    dead_dists, in_use = [], []
    for rel, path in walk_dists(store):
        if rel not in referenced_dists:
            if not leases.in_use(path):
                dead_dists.append(path)
                continue
            in_use.append(path)
        _dist_objects(store, path, live_objects)
    dead_objects = [o for o in _walk_objects(store) if o not in live_objects]
    size = _size(dead_objects)
    # Only bubble script directories; files in bin/ are the interpreter shims.
    bins = [os.path.join(store.bin, b) for b in real_dirs(store.bin) if b not in live_bins]
    tmp = [os.path.join(store.tmp, t) for t in _ls(store.tmp) if not tmp_in_use(os.path.join(store.tmp, t))]
    return {"dists": dead_dists, "objects": dead_objects, "bins": bins, "tmp": tmp, "bytes": size,
            "in_use": in_use}


def collect(store: Store, dry_run: bool = False) -> dict:
    """Remove (``dry_run``: only list) what :func:`garbage` finds. A dry run needs no write
    lock: on a store the user cannot write it reports without one."""
    with WriteLock(store, optional=dry_run):
        g = garbage(store)
        if dry_run:
            return g
        for t in g["tmp"]:
            with claim_tmp(t) as free:  # a download that started since garbage() looked stays
                if not free:
                    continue
                _remove(t)
        trash = make_tmpdir(store, "gc-")
        kept: set = set()
        for i, d in enumerate(g["dists"]):
            with leases.exclusive(d) as free:
                if free:  # nobody can take a lease while we hold this: the dist goes whole
                    os.rename(d, os.path.join(trash, str(i)))
                    continue
            g["in_use"].append(d)  # a process started using it since garbage() looked
            _dist_objects(store, d, kept)
        g["dists"] = [d for d in g["dists"] if d not in g["in_use"]]
        for i, d in enumerate(g["bins"]):
            os.rename(d, os.path.join(trash, f"bin-{i}"))
        if kept:
            g["objects"] = [o for o in g["objects"] if o not in kept]
            g["bytes"] = _size(g["objects"])
        for o in g["objects"]:
            _unlink(o)
        shutil.rmtree(trash, ignore_errors=True)
        for parent in (store.dists, store.objects):
            _prune_empty(parent)
    return g


def _size(paths) -> int:
    size = 0
    for p in paths:
        try:
            size += os.stat(p).st_size
        except OSError:
            pass
    return size


def _remove(path: str) -> None:
    """A file, a link (not what it points at) or a directory tree."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _prune_empty(root: str) -> None:
    for dirpath, _dirs, _files in sorted(os.walk(root, topdown=False), reverse=True):
        if dirpath != root:
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def info(store: Store) -> dict:
    objects = object_bytes = 0
    for o in _walk_objects(store):
        try:
            object_bytes += os.stat(o).st_size
            objects += 1
        except OSError:
            pass
    dists = linked = 0
    for _rel, path in walk_dists(store):
        dists += 1
        for fname in _ls(path):
            if fname == DIST_MANIFEST or fname.startswith("omnipkg-pyc-"):
                try:
                    linked += sum(f["size"] for f in read_manifest(os.path.join(path, fname))["files"])
                except (OSError, ValueError):
                    pass
    bubbles = sum(1 for _ in store.iter_bubbles())
    return {"store": store.root, "objects": objects, "object_bytes": object_bytes, "dists": dists,
            "bubbles": bubbles, "linked_bytes": linked, "saved_bytes": max(0, linked - object_bytes)}
