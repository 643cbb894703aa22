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

A dist directory holds its own manifest, so a directory that is gone entirely can be
rebuilt only when the bubble manifest records the manifest's object
(``"manifest": "<sha256>"`` in the dist's entry; ``"pyc_manifest"`` likewise for this
interpreter's compiled files). Without it the error says to reinstall the bubble.
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
    materialize,
    read_manifest,
)

__all__ = ["check_dist", "repair_dist", "pyc_manifest_name"]

_EXTENSION_SUFFIXES = (".so", ".pyd")


def pyc_manifest_name(cache_tag: str | None = None) -> str:
    return f"omnipkg-pyc-{cache_tag or sys.implementation.cache_tag}.json"


def _present(name: str, names: set[str]) -> bool:
    if name in names or name + ".py" in names:
        return True
    prefix = name + "."
    return any(n.startswith(prefix) and n.endswith(_EXTENSION_SUFFIXES) for n in names)


def check_dist(path: str, top_level, full: bool) -> tuple[str | None, str | None]:
    """``(dist_info_name, problem)`` of the dist directory ``path``; ``problem`` is None when sound."""
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
    with WriteLock(store):
        dist_info, problem = check_dist(path, top_level, full=True)
        if problem is None:  # another process repaired it while we waited
            return dist_info
        manifest_bytes = _manifest_bytes(store, path, bubble_entry)
        if manifest_bytes is None:
            raise StoreCorruptError(
                f"cannot repair {label} in the store: {problem} and its manifest is gone with it ({path!r})",
                f"reinstall the bubble: {reinstall}",
            )
        try:
            manifest = json.loads(manifest_bytes)
            files = manifest["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise StoreCorruptError(
                f"cannot repair {label}: its manifest is damaged ({e})", f"reinstall the bubble: {reinstall}"
            ) from None
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
        tmp = make_tmpdir(store, "repair-")
        new = os.path.join(tmp, "dist")
        materialize(store, files, new)
        _place_manifest(store, path, new, manifest_bytes, bubble_entry)
        _restore_bytecode(store, path, new, manifest, bubble_entry)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        kept = ""
        if os.path.lexists(path):
            os.rename(path, os.path.join(tmp, "damaged"))
            kept = f"; the damaged copy is in {os.path.join(tmp, 'damaged')!r}"
        os.rename(new, path)
    print(f"pip-omni: repaired {label} in the store ({problem}) from objects{kept}", file=sys.stderr)
    return manifest["dist_info"]


def _read_object(store: Store, sha: str | None) -> bytes | None:
    if not sha:
        return None
    try:
        with open(store.object_path(sha), "rb") as f:
            return f.read()
    except OSError:
        return None


def _manifest_bytes(store: Store, path: str, entry: dict) -> bytes | None:
    try:
        with open(os.path.join(path, DIST_MANIFEST), "rb") as f:
            data = f.read()
        json.loads(data)
        return data
    except (OSError, ValueError):
        return _read_object(store, entry.get("manifest"))


def _place_manifest(store: Store, old: str, new: str, data: bytes, entry: dict) -> None:
    """The manifest of the rebuilt dist: the old file itself (linked: leases taken on it by
    live processes stay valid), else the bubble's object of it, else a fresh copy."""
    dest = os.path.join(new, DIST_MANIFEST)
    for source in (os.path.join(old, DIST_MANIFEST), store.object_path(entry.get("manifest") or "0" * 64)):
        try:
            with open(source, "rb") as f:
                if f.read() != data:
                    continue
            os.link(source, dest)
            return
        except OSError:
            continue
    with open(dest, "wb") as f:
        f.write(data)


def _restore_bytecode(store: Store, old: str, new: str, manifest: dict, entry: dict) -> None:
    """Bring back every interpreter's ``.pyc`` whose objects are all there; compile this one's if not."""
    found: dict[str, bytes] = {}
    try:
        names = os.listdir(old)
    except OSError:
        names = []
    for name in names:
        if name.startswith("omnipkg-pyc-") and name.endswith(".json"):
            try:
                with open(os.path.join(old, name), "rb") as f:
                    found[name] = f.read()
            except OSError:
                pass
    mine = pyc_manifest_name()
    if mine not in found:
        data = _read_object(store, entry.get("pyc_manifest"))
        if data is not None:
            found[mine] = data
    for name, data in found.items():
        try:
            files = json.loads(data)["files"]
            if all(os.path.exists(store.object_path(e["sha256"])) for e in files):
                for e in files:
                    dest = os.path.join(new, *e["path"].split("/"))
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    link_object(store, e, dest)
                _place_bytes(store, os.path.join(new, name), data)
        except (ValueError, KeyError, TypeError, OSError):
            continue
    if not os.path.exists(os.path.join(new, mine)):
        _compile(store, new, manifest)


def _place_bytes(store: Store, dest: str, data: bytes) -> None:
    """``data`` at ``dest``: a link to its object when the store has it (manifests are
    objects too), else a plain file."""
    import hashlib

    try:
        os.link(store.object_path(hashlib.sha256(data).hexdigest()), dest)
    except OSError:
        with open(dest, "wb") as f:
            f.write(data)


def _compile(store: Store, root: str, manifest: dict) -> None:
    """Compile the dist for this interpreter the way the pip side does (hash-based, deterministic)."""
    import hashlib
    import py_compile
    import tempfile

    tag = sys.implementation.cache_tag
    entries = []
    for e in manifest["files"]:
        rel = e["path"]
        if not rel.endswith(".py") or rel.startswith("_omnipkg_data/") or ".dist-info/" in rel:
            continue
        head, _, name = rel.rpartition("/")
        pyc_rel = (head + "/" if head else "") + f"__pycache__/{name[:-3]}.{tag}.pyc"
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="pyc-")
        os.close(fd)
        try:
            py_compile.compile(
                os.path.join(root, *rel.split("/")), tmp, rel, doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )  # fmt: skip
            with open(tmp, "rb") as f:
                data = f.read()
            sha = hashlib.sha256(data).hexdigest()
            obj = store.object_path(sha)
            if not os.path.exists(obj):
                os.chmod(tmp, 0o444)
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                os.rename(tmp, obj)
        except (py_compile.PyCompileError, OSError, ValueError):
            continue
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        entry = {"path": pyc_rel, "sha256": sha, "size": len(data), "mode": 0o644}
        dest = os.path.join(root, *pyc_rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        link_object(store, entry, dest)
        entries.append(entry)
    with open(os.path.join(root, pyc_manifest_name()), "w", encoding="utf-8") as f:
        json.dump({"format": FORMAT, "cache_tag": tag, "files": entries}, f, indent=1)
