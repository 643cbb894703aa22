"""The dist directory's format, as every writer and the doctor check it.

A dist directory holds the wheel's files (each a hard link to its object), the dist manifest
(``omnipkg-dist.json``: every file's path, sha256, size and mode) and one ``.pyc`` manifest per
interpreter it was compiled for. Everything the store takes in (an ingested wheel, an imported
archive, a pulled remote dist) and everything ``doctor`` examines passes these checks, so there
is one definition of a sound file list. Reading the store is :mod:`omnipkg_hook.store`.
"""

from __future__ import annotations

import os
import re

from omnipkg_hook import distnames
from omnipkg_hook.store import DIST_MANIFEST, Store, makedirs

__all__ = [
    "PYC_PREFIX", "PYC_SUFFIX", "dist_links", "entry_ok", "manifest_problem", "materialize_into", "object_sha",
    "real_dirs", "safe_rel", "walk_dists",
]  # fmt: skip

PYC_PREFIX, PYC_SUFFIX = distnames.PYC_PREFIX, distnames.PYC_SUFFIX
_SHA256 = re.compile(r"[0-9a-f]{64}")


def entry_ok(e) -> bool:
    return (
        isinstance(e, dict)
        and isinstance(e.get("path"), str)
        and isinstance(e.get("sha256"), str)
        and _SHA256.fullmatch(e["sha256"]) is not None
        and isinstance(e.get("size"), int)
        and safe_rel(e["path"])
    )


def safe_rel(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and "\\" not in rel and all(p not in ("", ".", "..") for p in parts)


def object_sha(path: str) -> str:
    """The sha256 an object's path names (``objects/ab/cdef...x`` -> ``abcdef...``)."""
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) + (name[:-1] if name.endswith("x") else name)


def manifest_problem(m: dict, rel: str) -> str | None:
    """What is wrong with the dist manifest ``m`` of the dist directory ``rel``, or None.
    Archive import calls it too: one check for every file list the store takes in."""
    files = m.get("files")
    if not isinstance(files, list) or not all(entry_ok(e) for e in files):
        return f"{DIST_MANIFEST} has a damaged file list"
    reserved = distnames.file_list_problem(files)
    if reserved:
        return f"{DIST_MANIFEST} lists a name the store writes itself ({reserved})"
    _, name, version, tag = rel.split("/")
    if (m.get("name"), m.get("version"), m.get("tag")) != (name, version, tag):
        return f"{DIST_MANIFEST} describes {m.get('name')} {m.get('version')} {m.get('tag')}, not this directory"
    return None


def materialize_into(store: Store, files: list[dict], dest: str) -> None:
    """Link ``files`` into the existing directory ``dest`` (as :func:`materialize` does)."""
    from omnipkg_hook.store import link_object

    for entry in files:
        target = os.path.join(dest, *entry["path"].split("/"))
        makedirs(os.path.dirname(target))
        if not os.path.lexists(target):
            link_object(store, entry, target)


def real_dirs(path: str) -> list[str]:
    """The entries of ``path`` that are directories, not links to one."""
    try:
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def walk_dists(store: Store):
    """Yield ``(store-relative path, absolute path)`` of every dist directory
    (``dists/<name>/<version>/<tag>``). Real directories only: nothing that walks the store
    follows a link out of it (:func:`dist_links` lists the links instead)."""
    for name in real_dirs(store.dists):
        for version in real_dirs(os.path.join(store.dists, name)):
            for tag in real_dirs(os.path.join(store.dists, name, version)):
                yield "/".join(("dists", name, version, tag)), os.path.join(store.dists, name, version, tag)


def dist_links(store: Store) -> list[tuple[str, str]]:
    """``(store-relative path, where it points)`` of every symbolic link in ``dists/`` down to
    the dist directories' level. pip-omni never makes one: each is someone's edit, a way out
    of the store (a repair writing through it, a check reading another user's files)."""
    found = []

    def links(rel: str) -> list[str]:
        try:
            with os.scandir(store.abspath(rel)) as it:
                return sorted(e.name for e in it if e.is_symlink())
        except OSError:
            return []

    levels = [["dists"]]
    for depth in range(3):
        nxt = []
        for rel in levels[-1]:
            for name in links(rel):
                path = f"{rel}/{name}"
                try:
                    found.append((path, os.readlink(store.abspath(path))))
                except OSError:
                    found.append((path, "?"))
            nxt += [f"{rel}/{n}" for n in real_dirs(store.abspath(rel))] if depth < 2 else []
        levels.append(nxt)
    return found
