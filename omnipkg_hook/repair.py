"""Integrity check and self-repair of the dists a pin routes to.

:func:`check_dist` is a stat-only look at one dist directory:

- quick (start-up): one ``listdir``: the manifest, a ``.dist-info`` and every top-level
  import name are there;
- full (``pin()`` from code): also every file of the dist manifest and of this
  interpreter's ``.pyc`` manifest exists with its recorded size (~1 µs a file).

:func:`repair_dist` rebuilds a missing or damaged dist from objects, under the store's
write lock: the new directory is made in ``tmp/``, the damaged one (if any) is moved
into ``tmp/`` beside it -- never deleted, it may be the only copy of something -- and
the new one is renamed into place. One line on stderr says so. A missing object is a
:class:`StoreCorruptError` naming ``pip-omni doctor --repair``.

Repair trusts only what was recorded when the bubble was made: the bubble's entry for
the dist names its manifest's sha256 (``"manifest": "<sha256>"``; ``"pyc_manifest"``
likewise for this interpreter's compiled files). The dist's own ``omnipkg-dist.json`` is
used only if it hashes to that (else the recorded object, if it does); a manifest that
disagrees is a :class:`StoreCorruptError` saying the dist was tampered with, and
nothing is rebuilt from its list. Without a record there is nothing to check against:
the error says to reinstall the bubble. The hash is taken only here, when a repair is
needed; the start-up check stays a ``listdir``.

Every file the repair makes is new: links to objects, and manifests that are objects
(linked); nothing is opened for writing in the dist, so nothing is written through a
link (``omnipkg_hook.distnames``).
"""

from __future__ import annotations

import json
import os
import sys

from .errors import StoreCorruptError
from .store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    WriteLock,
    link_object,
    make_tmpdir,
    makedirs,
    materialize,
    put_object,
    read_manifest,
)

__all__ = ["check_dist", "repair_dist", "pyc_manifest_name"]

_EXTENSION_SUFFIXES = (".so", ".pyd")


def pyc_manifest_name(cache_tag: str | None = None) -> str:
    from . import distnames  # not at start-up: the quick check needs no names but the manifest's

    return distnames.pyc_manifest_name(cache_tag or sys.implementation.cache_tag)


def _present(name: str, names: set[str]) -> bool:
    if name in names or name + ".py" in names:
        return True
    prefix = name + "."
    return any(n.startswith(prefix) and n.endswith(_EXTENSION_SUFFIXES) for n in names)


def check_dist(path: str, top_level, full: bool) -> tuple[str | None, str | None]:
    """``(dist_info_name, problem)`` of the dist directory ``path``; ``problem`` is None when sound."""
    if os.path.islink(path):  # pip-omni never makes one; its target is never read or linked from
        return None, "its directory is a symbolic link"
    try:
        names = set(os.listdir(path))
    except FileNotFoundError:
        return None, "its directory is missing"
    except OSError as e:
        return None, f"its directory cannot be read ({e.strerror})"
    dist_info = next((n for n in names if n.endswith(".dist-info")), None)
    if DIST_MANIFEST not in names:
        return dist_info, f"{DIST_MANIFEST} is missing"
    if dist_info is None:
        return None, "its .dist-info is missing"
    for name in top_level:
        if not _present(name, names):
            return dist_info, f"{name!r} is missing"
    if not full:
        return dist_info, None
    try:
        manifest = read_manifest(os.path.join(path, DIST_MANIFEST))
    except (OSError, StoreCorruptError) as e:
        return dist_info, f"its manifest cannot be read ({e})"
    problem = _stat_files(path, manifest.get("files", ()))
    if problem is None:
        pyc = os.path.join(path, pyc_manifest_name())
        if os.path.exists(pyc):
            try:
                problem = _stat_files(path, read_manifest(pyc).get("files", ()))
            except (OSError, StoreCorruptError) as e:
                problem = f"its .pyc manifest cannot be read ({e})"
    return dist_info, problem


def _stat_files(root: str, files) -> str | None:
    stat = os.stat
    for entry in files:
        rel = entry["path"]
        try:
            st = stat(root + "/" + rel)
        except OSError:
            return f"{rel!r} is missing"
        if st.st_size != entry["size"]:
            return f"{rel!r} has {st.st_size} bytes, not {entry['size']}"
    return None


def repair_dist(store: Store, path: str, top_level, *, label: str, bubble_entry: dict, reinstall: str) -> str:
    """Rebuild the dist at ``path`` from objects; return its ``.dist-info`` name.

    ``label`` names the dist in messages (``"rich 13.4.2"``), ``reinstall`` is the
    command that would bring it back from the index.
    """
    from . import distnames

    with WriteLock(store):
        dist_info, problem = check_dist(path, top_level, full=True)
        if problem is None:  # another process repaired it while we waited
            return dist_info
        tmp, kept = None, ""
        if os.path.islink(path):  # set the link itself aside first: nothing below reads through it
            tmp = make_tmpdir(store, "repair-")
            os.rename(path, os.path.join(tmp, "damaged"))
            kept = f"; the link is now {os.path.join(tmp, 'damaged')!r}"
        manifest_bytes = _manifest_bytes(store, path, bubble_entry, label, problem, reinstall)
        try:
            manifest = json.loads(manifest_bytes)
            files = manifest["files"]
            bad = distnames.file_list_problem(files)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StoreCorruptError(
                f"cannot repair {label}: its manifest is damaged ({e})", f"reinstall the bubble: {reinstall}"
            ) from None
        if bad:  # recorded, yet names a file of ours: made by something that is not pip-omni
            raise StoreCorruptError(
                f"cannot repair {label}: its manifest lists a name the store writes itself ({bad})",
                f"reinstall the bubble: {reinstall}",
            )
        for entry in files:  # a file edited in place through its hard link damaged the object too
            obj = store.object_path(entry["sha256"], bool(entry.get("mode", 0o644) & 0o111))
            try:
                size = os.stat(obj).st_size
            except OSError:
                raise StoreCorruptError(
                    f"cannot repair {label} in the store: {problem}, and the object of {entry['path']!r} "
                    f"is missing too ({obj!r})",
                    f"run `pip-omni doctor --repair`, or reinstall the bubble: {reinstall}",
                ) from None
            if size != entry["size"]:
                raise StoreCorruptError(
                    f"cannot repair {label} in the store: {problem}, and the object of {entry['path']!r} "
                    f"is damaged too ({obj!r} has {size} bytes, not {entry['size']})",
                    f"run `pip-omni doctor --repair`, or reinstall the bubble: {reinstall}",
                )
        tmp = tmp or make_tmpdir(store, "repair-")  # only now: a refused repair leaves the store as it was
        new = os.path.join(tmp, "dist")
        materialize(store, files, new)
        _place_bytes(store, os.path.join(new, DIST_MANIFEST), manifest_bytes, os.path.join(path, DIST_MANIFEST))
        _restore_bytecode(store, path, new, manifest, bubble_entry)
        makedirs(os.path.dirname(path))
        if os.path.lexists(path):
            os.rename(path, os.path.join(tmp, "damaged"))
            kept = f"; the damaged copy is in {os.path.join(tmp, 'damaged')!r}"
        os.rename(new, path)
    print(f"pip-omni: repaired {label} in the store ({problem}) from objects{kept}", file=sys.stderr)
    return manifest["dist_info"]


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _recorded_object(store: Store, sha: str | None) -> bytes | None:
    """The bytes of the object ``sha`` if they still hash to it (an object may be edited in place)."""
    if not isinstance(sha, str) or len(sha) != 64:
        return None
    data = _read(store.object_path(sha))
    return data if data is not None and _sha256(data) == sha else None


def _manifest_bytes(store: Store, path: str, entry: dict, label: str, problem: str, reinstall: str) -> bytes:
    """The dist manifest the bubble recorded: the dist's own file if it hashes to the record,
    else the recorded object. A manifest that disagrees with the record is never used."""
    recorded = entry.get("manifest")
    own = _read(os.path.join(path, DIST_MANIFEST))
    if not recorded:
        raise StoreCorruptError(
            f"cannot repair {label} in the store: {problem}, and its bubble does not record its manifest "
            f"to check it against ({path!r})" if own is not None else
            f"cannot repair {label} in the store: {problem} and its manifest is gone with it ({path!r})",
            f"reinstall the bubble: {reinstall}",
        )
    if own is not None and _sha256(own) == recorded:
        return own
    data = _recorded_object(store, recorded)
    if own is not None and _sha256(own) != recorded:
        # Someone replaced the dist's manifest: do not rebuild anything from a forged list.
        raise StoreCorruptError(
            f"{label} in the store was tampered with: its {DIST_MANIFEST} has sha256 {_sha256(own)}, "
            f"not the {recorded} recorded when its bubble was made ({path!r}); not repaired",
            "run `pip-omni doctor` to see what changed, then `pip-omni doctor --repair` "
            f"(it sets the dist aside and rebuilds it from the record), or reinstall the bubble: {reinstall}",
        )
    if data is None:
        raise StoreCorruptError(
            f"cannot repair {label} in the store: {problem} and its manifest is gone with it ({path!r})",
            f"reinstall the bubble: {reinstall}",
        )
    return data


def _place_bytes(store: Store, dest: str, data: bytes, prefer: str | None = None) -> None:
    """A new file ``dest`` holding ``data``: a link to the file ``prefer`` when it holds the
    same bytes (the old manifest: leases taken on it by live processes stay valid), else
    to ``data``'s object, made if need be. Only links: nothing is opened for writing."""
    if prefer is not None and _read(prefer) == data:
        try:
            os.link(prefer, dest)
            return
        except OSError:
            pass
    os.link(store.object_path(put_object(store, data)), dest)


def _restore_bytecode(store: Store, old: str, new: str, manifest: dict, entry: dict) -> None:
    """Bring back every interpreter's ``.pyc`` that can be trusted and whose objects are all
    there; compile this one's if not.

    This interpreter's ``.pyc`` manifest must hash to the bubble's record of it (else the
    recorded object is used). Another interpreter's must be an object of the store and
    list only ``__pycache__`` files of the dist's own sources.
    """
    from . import distnames

    tag = sys.implementation.cache_tag
    mine = pyc_manifest_name()
    sources = {e["path"] for e in manifest["files"] if e["path"].endswith(".py")}
    found: dict[str, bytes] = {}
    try:
        names = os.listdir(old)
    except OSError:
        names = []
    for name in names:
        if distnames.is_pyc_manifest(name) and name != mine:
            data = _read(os.path.join(old, name))
            if data is not None and os.path.exists(store.object_path(_sha256(data))):
                found[name] = data
    recorded = entry.get("pyc_manifest")
    own = _read(os.path.join(old, mine))
    if own is not None and (recorded is None or _sha256(own) == recorded) and os.path.exists(
        store.object_path(_sha256(own))
    ):
        found[mine] = own
    else:
        data = _recorded_object(store, recorded)
        if data is not None:
            found[mine] = data
    for name, data in sorted(found.items()):
        cache_tag = name[len(distnames.PYC_PREFIX):-len(distnames.PYC_SUFFIX)]
        try:
            files = json.loads(data)["files"]
            if distnames.file_list_problem(files, cache_tag) or not all(
                _pyc_source(e["path"], cache_tag) in sources for e in files
            ):
                continue
            if all(os.path.exists(store.object_path(e["sha256"])) for e in files):
                for e in files:
                    dest = os.path.join(new, *e["path"].split("/"))
                    makedirs(os.path.dirname(dest))
                    link_object(store, e, dest)
                _place_bytes(store, os.path.join(new, name), data, os.path.join(old, name))
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            continue
    if not os.path.exists(os.path.join(new, mine)):
        _compile(store, new, manifest, tag)


def _pyc_source(rel: str, cache_tag: str) -> str:
    """``a/__pycache__/b.cpython-311.pyc`` -> ``a/b.py`` (``rel`` passed :func:`pyc_file_problem`)."""
    head, _, name = rel.rpartition("/")
    up = head.rpartition("/")[0]
    module = name[: -len(f".{cache_tag}.pyc")]
    return f"{up}/{module}.py" if up else f"{module}.py"


def _compile(store: Store, root: str, manifest: dict, tag: str) -> None:
    """Compile the dist for this interpreter the way the pip side does (hash-based, deterministic)."""
    import py_compile
    import tempfile

    from . import distnames

    entries = []
    for e in manifest["files"]:
        rel = e["path"]
        if not rel.endswith(".py") or rel.startswith(distnames.DATA_DIR + "/") or ".dist-info/" in rel:
            continue
        head, _, name = rel.rpartition("/")
        pyc_rel = (head + "/" if head else "") + f"{distnames.PYCACHE}/{name[:-3]}.{tag}.pyc"
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="pyc-")
        os.close(fd)
        try:
            py_compile.compile(
                os.path.join(root, *rel.split("/")), tmp, rel, doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )  # fmt: skip
            with open(tmp, "rb") as f:
                data = f.read()
            sha = _sha256(data)
            obj = store.object_path(sha)
            if not os.path.exists(obj):
                os.chmod(tmp, 0o444)
                makedirs(os.path.dirname(obj))
                os.rename(tmp, obj)
        except (py_compile.PyCompileError, OSError, ValueError):
            continue
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        entry = {"path": pyc_rel, "sha256": sha, "size": len(data), "mode": 0o644}
        dest = os.path.join(root, *pyc_rel.split("/"))
        makedirs(os.path.dirname(dest))
        if os.path.lexists(dest):
            continue
        link_object(store, entry, dest)
        entries.append(entry)
    record = json.dumps({"format": FORMAT, "cache_tag": tag, "files": entries}, indent=1).encode("utf-8")
    _place_bytes(store, os.path.join(root, pyc_manifest_name()), record)
