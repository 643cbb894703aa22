"""The names pip-omni itself writes inside a dist directory, and the check that keeps them ours.

A dist directory (``dists/<name>/<version>/<tag>/``) holds the wheel's files, linked from
objects, and these names of the store's own:

=================================  ==================================================
``omnipkg-dist.json``              the dist manifest (ingest; an object, linked)
``omnipkg-pyc-<cache_tag>.json``   one ``.pyc`` manifest per interpreter (bytecode)
``<dir>/__pycache__/*.pyc``        the compiled files those list
``_omnipkg_data/<scheme>/...``     a wheel's ``.data/{scripts,data,headers}`` files
=================================  ==================================================

Every writer (ingest, bytecode, self-repair, ``doctor --repair``, archive import) writes
those names last and by rename or exclusive create; if a dist's file list could contain
one, the store's write would land on a wheel file -- a hard link to a shared object.
So every file list pip-omni reads (a wheel's members, a dist manifest in the store or in
an archive, a ``.pyc`` manifest) is checked here first, with :func:`dist_file_problem`
and :func:`pyc_file_problem`. Case is ignored: on a case-insensitive filesystem
``Omnipkg-Dist.json`` is the manifest. Standard library only (the hook imports it).
"""

from __future__ import annotations

from .store import DIST_MANIFEST

__all__ = [
    "DIST_MANIFEST",
    "PYC_PREFIX",
    "PYC_SUFFIX",
    "DATA_DIR",
    "DATA_SCHEMES",
    "PYCACHE",
    "OWN_PREFIX",
    "pyc_manifest_name",
    "is_pyc_manifest",
    "dist_file_problem",
    "pyc_file_problem",
    "file_list_problem",
]

PYC_PREFIX, PYC_SUFFIX = "omnipkg-pyc-", ".json"
OWN_PREFIX = "omnipkg-"  # every top-level name of ours in a dist starts so (manifests)
DATA_DIR = "_omnipkg_data"  # where a wheel's .data/<scheme>/ files go inside a dist
DATA_SCHEMES = ("scripts", "data", "headers")
PYCACHE = "__pycache__"


def pyc_manifest_name(cache_tag: str) -> str:
    return f"{PYC_PREFIX}{cache_tag}{PYC_SUFFIX}"


def is_pyc_manifest(name: str) -> bool:
    return name.startswith(PYC_PREFIX) and name.endswith(PYC_SUFFIX)


def dist_file_problem(rel: str, *, in_wheel: bool = False) -> str | None:
    """Why ``rel`` cannot be a wheel file of a dist, or None.

    ``rel`` is a path in a dist's file list (``_omnipkg_data/<scheme>/...`` allowed) or,
    with ``in_wheel``, a path a wheel installs into purelib/platlib (where it is not).
    """
    parts = rel.split("/")
    top = parts[0].lower()
    if top.startswith(OWN_PREFIX):
        return f"{rel}: {parts[0]!r} is a name pip-omni writes into every dist (its manifests)"
    if any(p.lower() == PYCACHE for p in parts):
        return f"{rel}: files in a {PYCACHE} directory are pip-omni's own (compiled .pyc)"
    if top == DATA_DIR.lower() and (in_wheel or len(parts) < 3 or parts[1] not in DATA_SCHEMES):
        return f"{rel}: {parts[0]!r} is where pip-omni keeps a wheel's .data files"
    return None


def pyc_file_problem(rel: str, cache_tag: str) -> str | None:
    """Why ``rel`` cannot be a file of the ``.pyc`` manifest for ``cache_tag``, or None:
    each is ``[<dir>/]__pycache__/<module>.<cache_tag>.pyc`` and nothing else."""
    head, _, name = rel.rpartition("/")
    parent = head.rpartition("/")[2]
    if parent != PYCACHE or not name.endswith(f".{cache_tag}.pyc") or len(name) <= len(cache_tag) + 5:
        return f"{rel}: not a .pyc for {cache_tag} in a {PYCACHE} directory"
    up = head.rpartition("/")[0]
    if up and dist_file_problem(up + "/x") is not None:
        return f"{rel}: inside a directory that is pip-omni's own"
    return None


def file_list_problem(files, cache_tag: str | None = None) -> str | None:
    """The first reserved path in a manifest's ``files`` (dist manifest, or the ``.pyc``
    manifest of ``cache_tag``), or None. Entries must already be well formed."""
    for e in files:
        problem = dist_file_problem(e["path"]) if cache_tag is None else pyc_file_problem(e["path"], cache_tag)
        if problem:
            return problem
    return None
