"""``store push`` and ``store pull``: bubbles to and from a remote store.

The remote holds the store's own names (``docs/architecture.md``, "Remote stores")::

    omnipkg-remote.json                    {"format": 1}: what this prefix is
    objects/ab/cdef...[x]                  file bytes by sha256, as in a store; dist and pyc
                                           manifests are objects too (bubbles name them)
    packs/<manifest sha256>                a manifest's objects end to end (:func:`pack_keys`)
    bubbles/<name>/<version>/<key>.json    bubble manifests, per interpreter key

Every key is written once and never replaced (create-only puts). Push uploads the
objects a bubble needs that the remote lacks, then their packs, then the bubble manifest,
last: a reader that sees a manifest finds every object it names. A bubble whose manifest
the remote already has is skipped whole (so a second push sends no object bytes).

Pull reads the bubble manifests, then the dist and pyc manifests they name (by sha256),
then every object the local store lacks, once each (a run of neighbours in a pack by one
ranged read), each hash-checked as it arrives, into
``<store>/tmp``; then :func:`omnipkg_pip.writers.archive.publish_checked` checks the manifests
against each other and the objects, as ``store import`` does, and publishes like an install:
objects, dist directories by rename, bubble manifests last. A pull killed at any point
leaves only staging in ``tmp/`` (and perhaps unreferenced objects), which gc removes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

from omnipkg_hook.store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    WriteLock,
    interpreter_key,
    make_tmpdir,
    normalize,
    read_manifest,
)

from ..writers import archive
from ..writers.layout import entry_ok, safe_rel
from .backends import Backend, RemoteStoreError

__all__ = ["push", "pull", "remote_versions", "LAYOUT"]

LAYOUT = "omnipkg-remote.json"
_SHA = re.compile(r"[0-9a-f]{64}")  # always fullmatch: "$" lets a trailing newline through
_CACHE_TAG = re.compile(r"[a-z0-9_.\-]{1,40}")


def object_key(sha: str, executable: bool = False) -> str:
    return f"objects/{sha[:2]}/{sha[2:]}{'x' if executable else ''}"


def bubble_key(name: str, version: str, key: str) -> str:
    return f"bubbles/{normalize(name)}/{version}/{key}.json"


def _rel(store: Store, path: str) -> str:
    return os.path.relpath(path, store.root).replace(os.sep, "/")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _parallel(backend: Backend, fn, items) -> list:
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(backend.workers, len(items))) as pool:
        return list(pool.map(fn, items))


# -- push --------------------------------------------------------------------------------------


def push(store: Store, backend: Backend, requirements=(), key: str | None = None) -> dict:
    """Upload the bubbles ``requirements`` (``NAME==VERSION``; all of ``key`` when empty).

    Returns ``{"bubbles": [pushed], "present": [already there], "objects": n, "object_bytes": n,
    "packs": n, "pack_bytes": n}`` (what was uploaded).
    """
    key = key or interpreter_key()
    # The lock only while choosing and reading manifests (gc cannot remove them meanwhile);
    # objects never change, so they are read afterwards without it. Pushing only reads the
    # store: where it cannot be written (a read-only mount, another user's), no lock is needed.
    with WriteLock(store, optional=True):
        chosen = archive.chosen_bubbles(store, requirements, key, verb="push")
        wanted = [(_rel(store, p), p) for p in chosen]
        there = _parallel(backend, lambda kp: backend.exists(kp[0]), wanted)
        plans = [_push_plan(store, rk, path) for (rk, path), found in zip(wanted, there) if not found]
    present = [rk for (rk, _p), found in zip(wanted, there) if found]
    objects: dict[str, tuple[str, bytes | None]] = {}
    for plan in plans:
        objects.update(plan["objects"])
    sent = _parallel(backend, lambda item: _push_object(store, backend, *item), sorted(objects.items()))
    packs: dict[str, list] = {}
    for plan in plans:
        packs.update(plan["packs"])
    packed = _parallel(backend, lambda item: _push_pack(store, backend, *item), sorted(packs.items()))
    result = {"bubbles": [], "present": present, "objects": sum(1 for s in sent if s),
              "object_bytes": sum(s for s in sent if s), "packs": sum(1 for s in packed if s),
              "pack_bytes": sum(packed)}
    if plans:
        backend.put_new(LAYOUT, json.dumps({"format": FORMAT}).encode() + b"\n")
    for plan in plans:  # manifests last: every object they name is on the remote now
        (result["bubbles"] if backend.put_new(plan["key"], plan["manifest"]) else present).append(plan["key"])
    return result


def _push_plan(store: Store, rk: str, path: str) -> dict:
    """The objects (remote key -> (local path, bytes or None)) and manifest bytes of one bubble."""
    raw = _read(path)
    m = read_manifest(path)
    changed = False
    objects: dict[str, tuple[str, bytes | None]] = {}
    packs: dict[str, list[str]] = {}
    for e in m["dists"].values():
        directory = store.abspath(e["path"])
        try:
            dist_bytes = _read(os.path.join(directory, DIST_MANIFEST))
        except FileNotFoundError:
            raise RemoteStoreError(f"the bubble {rk!r} names {e['path']!r}, which the store lacks; nothing pushed",
                                   "run `pip-omni doctor --repair` first") from None
        pyc = _pyc_manifest(directory, e.get("pyc_manifest"), m["interpreter"]["key"])
        for field, data in (("manifest", dist_bytes), ("pyc_manifest", pyc)):
            if data is None:
                continue
            sha = _sha(data)
            if e.get(field) != sha:  # a bubble made before its dists' manifests were objects
                e[field] = sha
                changed = True
            objects[object_key(sha)] = (store.object_path(sha), data)
            keys = pack_keys(json.loads(data)["files"])
            for k in keys:
                objects[k] = (store.abspath(k), None)
            packs[f"packs/{sha}"] = list(keys)
    if changed:
        raw = (json.dumps(m, indent=1, sort_keys=True) + "\n").encode("utf-8")
    return {"key": rk, "manifest": raw, "objects": objects, "packs": packs}


def pack_keys(files: list) -> dict[str, int]:
    """The object keys a manifest's ``files`` name, each once, in order of first appearance, with
    their sizes: what its pack holds, end to end."""
    out: dict[str, int] = {}
    for f in files:
        out.setdefault(object_key(f["sha256"], bool(f.get("mode", 0o644) & 0o111)), f["size"])
    return out


def _pyc_manifest(directory: str, sha: str | None, key: str) -> bytes | None:
    """The bytes of the dist's pyc manifest for the bubble's interpreter, if it is compiled."""
    found = None
    for name in sorted(os.listdir(directory)):
        if not (name.startswith("omnipkg-pyc-") and name.endswith(".json")):
            continue
        data = _read(os.path.join(directory, name))
        if sha and _sha(data) == sha:
            return data
        tag = name[len("omnipkg-pyc-"):-len(".json")]
        if key.startswith(tag) and key[len(tag):len(tag) + 1] in ("-", "t"):
            found = data
    return found


def _push_object(store: Store, backend: Backend, rk: str, item) -> int:
    """Upload one object unless the remote has it; the bytes sent (0 when skipped)."""
    path, data = item
    if backend.exists(rk):
        return 0
    if data is None:
        data = _local_object(store, rk)
    return len(data) if backend.put_new(rk, data) else 0


def _local_object(store: Store, rk: str) -> bytes:
    path = store.abspath(rk)
    try:
        data = _read(path)
    except FileNotFoundError:
        raise RemoteStoreError(f"the store lacks the object {rk!r}; nothing more pushed",
                               "run `pip-omni doctor --repair`, then push again") from None
    if _sha(data) != rk.split("/")[1] + rk.split("/")[2].rstrip("x"):  # a damaged store is not spread
        raise RemoteStoreError(f"the store's object {rk!r} does not match its name; not pushed",
                               "run `pip-omni doctor --repair`, then push again")
    return data


def _push_pack(store: Store, backend: Backend, pk: str, keys: list[str]) -> int:
    """Upload the pack of one manifest (its objects end to end) unless the remote has it."""
    if backend.exists(pk):
        return 0
    data = b"".join(_local_object(store, k) for k in keys)
    return len(data) if backend.put_new(pk, data) else 0


# -- pull --------------------------------------------------------------------------------------


def remote_versions(backend: Backend, name: str, key: str) -> list[str]:
    """Versions of ``name`` the remote has a bubble of for interpreter ``key``."""
    out = []
    for k in backend.list(f"bubbles/{normalize(name)}/"):
        parts = k.split("/")
        if len(parts) == 4 and parts[3] == key + ".json":
            out.append(parts[2])
    return out


def _targets(backend: Backend, requirements, key: str) -> list[str]:
    if not requirements:
        return [k for k in backend.list("bubbles/") if len(k.split("/")) == 4 and k.endswith(f"/{key}.json")]
    from ..writers.bubbles import parse_requirement

    out = []
    for text in requirements:
        req = parse_requirement(text)
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        if not pinned or len(req.specifier) != 1 or not safe_rel(pinned[0]) or "/" in pinned[0]:
            raise RemoteStoreError(f"pull names bubbles as NAME==VERSION, not {text!r}",
                                   "e.g. pip-omni store pull s3://bucket/ci rich==13.4.2")
        out.append(bubble_key(req.name, pinned[0], key))
    return out


def pull(store: Store, backend: Backend, requirements=(), key: str | None = None, main: dict | None = None) -> dict:
    """Fetch the bubbles ``requirements`` (``NAME==VERSION``; all of ``key`` when empty), verify
    everything, then publish what the store lacks.

    Returns ``{"bubbles": [...], "dists": [...], "objects": n, "present": [...], "fetched_bytes": n}``.
    Raises :class:`RemoteStoreError` naming what is missing or damaged; then nothing is published.
    ``main`` (``{name: version}`` of the interpreter's main environment): dists it serves are
    not compiled when the remote has no ``.pyc`` for them, as for an install.
    """
    key = key or interpreter_key()
    targets = _targets(backend, requirements, key)
    with WriteLock(store):
        present = [rk for rk in targets if os.path.exists(store.abspath(rk))]
        todo = [rk for rk in targets if rk not in present]
        if not todo:
            return {"bubbles": [], "dists": [], "objects": 0, "present": present, "fetched_bytes": 0}
        had_tmp = os.path.isdir(store.tmp)
        down = backend.stats["bytes_down"]
        work = make_tmpdir(store, "pull-")
        try:
            fetch = _Fetch(store, backend, os.path.join(work, "objects"))
            manifests = fetch.all(todo)
            result = archive.publish_checked(store, work, fetch.staged, manifests, fetch.reject, main)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not had_tmp:
                try:
                    os.rmdir(store.tmp)
                except OSError:
                    pass
    result["present"] = present + result["present"]
    result["fetched_bytes"] = backend.stats["bytes_down"] - down
    return result


class _Fetch:
    """Downloads into staging; every problem is collected and reported in one error."""

    def __init__(self, store: Store, backend: Backend, objects_dir: str) -> None:
        self.store = store
        self.backend = backend
        self.objects_dir = objects_dir
        self.staged: dict[str, str] = {}  # remote key == store-relative path -> staged file
        self.problems: list[str] = []
        os.makedirs(objects_dir)

    def reject(self, problems: list[str]):
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        raise RemoteStoreError(f"rejected the pull from {self.backend.url!r}: {shown}",
                               "nothing was published; push the bubble again from a sound store "
                               "(`pip-omni doctor` there)")

    def _get_object(self, rk: str) -> bytes | None:
        data = self.backend.get(rk)
        if data is None:
            self.problems.append(f"the remote lacks the object {rk!r}")
            return None
        if _sha(data) != rk.split("/")[1] + rk.split("/")[2].rstrip("x"):
            self.problems.append(f"the object {rk!r} does not match its sha256")
            return None
        self._stage(rk, data)
        return data

    def _stage(self, rk: str, data: bytes) -> None:
        target = os.path.join(self.objects_dir, rk.split("/")[1] + rk.split("/")[2])
        with open(target, "wb") as f:
            f.write(data)
        os.chmod(target, 0o555 if rk.endswith("x") else 0o444)
        self.staged[rk] = target

    def _get_run(self, pk: str, start: int, sizes: list[tuple[str, int]]) -> None:
        """The objects ``sizes`` names, side by side from ``start`` in the pack ``pk``; any the
        pack does not hold intact (or a remote pushed without packs) by its own key."""
        end = start + sum(size for _k, size in sizes)
        data = self.backend.get(pk, start, end) if end > start else b""
        if data is None or len(data) != end - start:
            data = b""
        at = 0
        for k, size in sizes:
            chunk = data[at:at + size]
            at += size
            if not data or _sha(chunk) != k.split("/")[1] + k.split("/")[2].rstrip("x"):
                self._get_object(k)
            else:
                self._stage(k, chunk)

    def _manifest_object(self, rk: str) -> bytes | None:
        """A dist's or pyc manifest: from the store when it has the object (a pull killed after
        publishing objects), else from the remote."""
        local = self.store.abspath(rk)
        if os.path.exists(local):
            data = _read(local)
            if _sha(data) == rk.split("/")[1] + rk.split("/")[2]:
                return data
        return self._get_object(rk) if rk not in self.staged else _read(self.staged[rk])

    def _need(self, rk: str, executable_path: str) -> bool:
        return rk not in self.staged and not os.path.exists(executable_path)

    def all(self, todo: list[str]) -> dict[str, bytes]:
        manifests: dict[str, bytes] = {}
        for rk, data in zip(todo, _parallel(self.backend, self.backend.get, todo)):
            if data is None:
                self.problems.append(f"the remote has no bubble {rk!r}")
            else:
                manifests[rk] = data
        self._check()
        # The dists' manifests, by the sha256 the bubbles record.
        wanted: dict[str, str] = {}  # object key -> the dist path it describes
        for rk in todo:
            try:
                entries = json.loads(manifests[rk])["dists"]
                dists = list(entries.values())
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # publish_checked names what is wrong with it
            for e in dists:
                if not isinstance(e, dict) or not isinstance(e.get("path"), str) or not safe_rel(e["path"]):
                    continue
                for field in ("manifest", "pyc_manifest"):
                    sha = e.get(field)
                    if field == "manifest" and sha is None:
                        self.problems.append(f"{rk!r} does not name the manifest of {e['path']!r}")
                    if isinstance(sha, str) and _SHA.fullmatch(sha):
                        wanted[object_key(sha)] = e["path"]
        self._check()
        for ok, data in zip(wanted, _parallel(self.backend, self._manifest_object, list(wanted))):
            if data is None:
                continue
            path = wanted[ok]
            try:
                m = json.loads(data)
                tag = m.get("cache_tag")
            except (ValueError, AttributeError):
                self.problems.append(f"the manifest {ok!r} of {path!r} is not JSON")
                continue
            if tag is None:
                name = DIST_MANIFEST
            elif isinstance(tag, str) and _CACHE_TAG.fullmatch(tag):
                name = f"omnipkg-pyc-{tag}.json"
            else:
                self.problems.append(f"the pyc manifest {ok!r} names the cache tag {tag!r}")
                continue
            if not os.path.exists(os.path.join(self.store.abspath(path), name)):
                manifests[f"{path}/{name}"] = data
        self._check()
        # Every object the new manifests name that the store lacks, each once: a run of such
        # objects that lie side by side in a manifest's pack is one ranged read of the pack
        # (a dist new to the store is usually one read), a lone one is read by its own key.
        claimed: set[str] = set()
        tasks: list[tuple[str, int, list]] = []
        for name, data in sorted(manifests.items()):
            files = json.loads(data).get("files") if name.startswith("dists/") else None
            if not isinstance(files, list) or not all(entry_ok(f) and f["size"] >= 0 for f in files):
                continue  # publish_checked names what is wrong with it
            at, run, start = 0, [], 0
            for k, size in [*pack_keys(files).items(), (None, 0)]:
                if k is not None and k not in claimed and self._need(k, self.store.abspath(k)):
                    if not run:
                        start = at
                    run.append((k, size))
                    claimed.add(k)
                else:
                    if len(run) > 1:
                        tasks.append((f"packs/{_sha(data)}", start, run))
                    elif run:
                        tasks.append((run[0][0], 0, []))
                    run = []
                at += size
        _parallel(self.backend, lambda t: self._get_run(*t) if t[2] else self._get_object(t[0]), tasks)
        self._check()
        return manifests

    def _check(self) -> None:
        if self.problems:
            self.reject(sorted(set(self.problems)))
