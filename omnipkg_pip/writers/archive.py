"""``pip-omni store export FILE [NAME==VERSION ...]`` and ``pip-omni store import FILE``.

An archive carries chosen bubbles to another store (a CI cache, a machine without
the network): a tar file (gzip-compressed when FILE ends in ``.gz`` or ``.tgz``) of

::

    omnipkg-archive.json                       {"format": 1, "bubbles": [...], "dists": [...], "objects": n}
    bubbles/<name>/<version>/<key>.json        the bubble manifests chosen
    dists/<name>/<version>/<tag>/omnipkg-dist.json       their dists' manifests
    dists/<name>/<version>/<tag>/omnipkg-pyc-<tag>.json  and .pyc manifests
    objects/ab/cdef...                         every object those name, once

Members are sorted and carry no owner or time (nor does the gzip header), so one
store exports the same bytes twice. Export rehashes each object as it writes it (a damaged store is not spread).

Import trusts nothing in the archive. It reads every member (regular files only, at
the paths above only: no ``..``, absolute paths, links or duplicates), checks each
object's sha256 against its name and each manifest against its place and the objects
at hand, and only when all of it holds publishes, like ingest: objects, then dist
directories (built in ``tmp/`` from the objects, one rename each), then bubble
manifests. Anything already in the store is left as it is, so importing twice
changes nothing the second time. A rejected archive leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import zlib

from omnipkg_hook import distnames
from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    WriteLock,
    interpreter_key,
    make_tmpdir,
    makedirs,
    materialize,
    normalize,
    read_manifest,
    store_oserror,
    write_json_atomic,
)

from .layout import PYC_PREFIX, PYC_SUFFIX, entry_ok, manifest_problem, materialize_into, safe_rel

__all__ = ["export", "import_archive", "publish_checked", "chosen_bubbles", "ArchiveError", "INDEX",
           "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_MANIFEST_BYTES", "parse_size"]

INDEX = "omnipkg-archive.json"
MAX_MEMBER_BYTES = 1 << 30  # one object
MAX_MANIFEST_BYTES = 64 << 20  # one manifest (read into memory to be parsed)
MAX_TOTAL_BYTES = 8 << 30  # everything unpacked, unless `store import --max-size` says more
_OBJECT = re.compile(r"^objects/[0-9a-f]{2}/[0-9a-f]{62}x?$")
_BUBBLE = re.compile(r"^bubbles/[^/]+/[^/]+/[^/]+\.json$")
_DIST_FILE = re.compile(r"^dists/[^/]+/[^/]+/[^/]+/(omnipkg-dist\.json|omnipkg-pyc-[^/]+\.json)$")


class ArchiveError(OmnipkgError, ValueError):
    """An archive that cannot be imported (or a bubble that cannot be exported)."""


def _object(store: Store, entry: dict) -> str:
    return store.object_path(entry["sha256"], bool(entry.get("mode", 0o644) & 0o111))


# -- export ------------------------------------------------------------------------------------


def export(store: Store, path: str, requirements=(), key: str | None = None) -> dict:
    """Write the bubbles ``requirements`` (``NAME==VERSION``; all when empty) of interpreter ``key``
    to the archive ``path``. Returns the archive's index."""

    key = key or interpreter_key()
    # Read-only work: no write lock (it works on a store the user cannot write). What it
    # reads is immutable once published; leases keep a concurrent gc from removing the dists.
    with _leased(store) as lease:
        chosen = chosen_bubbles(store, requirements, key)
        members: dict[str, bytes | str] = {}
        dists: set[str] = set()
        for bubble_path in chosen:
            manifest = read_manifest(bubble_path)
            members[os.path.relpath(bubble_path, store.root).replace(os.sep, "/")] = _read(bubble_path)
            dists.update(e["path"] for e in manifest["dists"].values())
            for e in manifest["dists"].values():  # the dists' manifests kept as objects
                for k in ("manifest", "pyc_manifest"):
                    if e.get(k):
                        obj = store.object_path(e[k])
                        members[os.path.relpath(obj, store.root).replace(os.sep, "/")] = obj
        lease(dists)
        for rel in sorted(dists):
            directory = store.abspath(rel)
            for name in sorted(os.listdir(directory)):
                if name == DIST_MANIFEST or (name.startswith(PYC_PREFIX) and name.endswith(PYC_SUFFIX)):
                    full = os.path.join(directory, name)
                    members[f"{rel}/{name}"] = _read(full)
                    for e in read_manifest(full)["files"]:
                        obj = _object(store, e)
                        members[os.path.relpath(obj, store.root).replace(os.sep, "/")] = obj
        index = {"format": FORMAT, "interpreter": key, "bubbles": sorted(m for m in members if m.startswith("bubbles/")),
                 "dists": sorted(dists), "objects": sum(1 for m in members if m.startswith("objects/"))}
        _write_tar(path, index, members)
    return index


def chosen_bubbles(store: Store, requirements, key: str, verb: str = "export") -> list[str]:
    """Paths of the bubble manifests ``requirements`` (``NAME==VERSION``; all when empty) name
    for interpreter ``key`` (also ``store push``)."""
    from .bubbles import parse_requirement

    available = {(n, v): p for n, v, k, p in store.iter_bubbles(key)}
    if not requirements:
        return _complete([available[k] for k in sorted(available)], verb)
    chosen = []
    for text in requirements:
        req = parse_requirement(text)
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        found = pinned and available.get((normalize(req.name), pinned[0]))
        if not found:
            raise ArchiveError(f"no bubble {text!r} for {key} to {verb}",
                               "name bubbles as NAME==VERSION; `pip-omni list` shows them")
        chosen.append(found)
    return _complete(chosen, verb)


def _complete(paths: list[str], verb: str) -> list[str]:
    """``paths``, unless one is a bubble that still leans on main for a dist the run that made
    it stores afterwards (omnipkg_pip.writers.deferred): elsewhere main may lack it."""
    for path in paths:
        waiting = read_manifest(path).get("deferred")
        if waiting:
            m = read_manifest(path)
            raise ArchiveError(
                f"the bubble {m.get('root')}=={m.get('version')} does not hold {', '.join(sorted(waiting))} yet "
                f"(the main environment's copy serves it until the run that made the bubble has stored it); "
                f"nothing to {verb}",
                "`pip-omni store compile` stores it now",
            )
    return paths


@contextlib.contextmanager
def _leased(store: Store):
    """``lease(dists)`` takes a lease on each dist for the life of the block (not the ones the
    process held already); a dist that is gone is an :class:`ArchiveError`."""
    from omnipkg_hook import leases

    before, taken = set(leases.held()), []

    def lease(dists) -> None:
        missing = leases.hold(store, sorted(dists))
        taken.extend(d for d in leases.held() if d not in before)
        if missing:
            raise ArchiveError(f"{os.path.relpath(missing[0], store.root)!r} is gone from the store; nothing exported",
                               "another pip-omni removed it meanwhile; run the export again")

    try:
        yield lease
    finally:
        leases.release(taken)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write_tar(path: str, index: dict, members: dict) -> None:
    import gzip

    part = path + ".part"
    try:
        with open(part, "wb") as raw, (
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if path.endswith((".gz", ".tgz"))
            else contextlib.nullcontext(raw)
        ) as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
            _add(tf, INDEX, json.dumps(index, indent=1, sort_keys=True).encode())
            for name in sorted(members):
                value = members[name]
                if isinstance(value, bytes):
                    _add(tf, name, value)
                    continue
                sha = os.path.basename(os.path.dirname(value)) + os.path.basename(value).rstrip("x")
                with open(value, "rb") as f:  # an object: streamed, and checked while it is copied
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = os.fstat(f.fileno()).st_size, 0o644, 0
                    hashing = _Hashing(f)
                    tf.addfile(info, hashing)
                if hashing.h.hexdigest() != sha or hashing.n != info.size:
                    raise ArchiveError(f"the store's object {value!r} does not match its name; nothing exported",
                                       "run `pip-omni doctor --repair` first")
        os.replace(part, path)
    except BaseException:
        if os.path.exists(part):
            os.unlink(part)
        raise


class _Hashing:
    """A file that hashes what is read from it (so export reads each object once)."""

    def __init__(self, f) -> None:
        self.f, self.h, self.n = f, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.h.update(data)
        self.n += len(data)
        return data


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tf.addfile(info, io.BytesIO(data))


# -- import ------------------------------------------------------------------------------------


def import_archive(store: Store, path: str, max_bytes: int = MAX_TOTAL_BYTES) -> dict:
    """Verify the archive at ``path`` completely, then publish what the store lacks.

    Members are streamed to ``tmp/`` (never read whole into memory) and their sizes add up
    to at most ``max_bytes``. Returns ``{"objects": n, "dists": [...], "bubbles": [...],
    "present": [...]}`` (what was added; what was there already). Raises
    :class:`ArchiveError` naming every problem; then the store is as it was.
    """
    label = os.path.basename(path)
    with WriteLock(store):
        had_tmp = os.path.isdir(store.tmp)
        work = make_tmpdir(store, "import-")
        try:
            staged, manifests = _read_archive(store, path, label, os.path.join(work, "objects"), max_bytes)
            return publish_checked(store, work, staged, manifests, lambda problems: _reject(label, problems))
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not had_tmp:
                try:
                    os.rmdir(store.tmp)  # a rejected archive leaves the store exactly as it was
                except OSError:
                    pass


def _read_archive(store: Store, path: str, label: str, objects_dir: str, max_bytes: int):
    """Stage every object (hash-checked, streamed) and read every manifest; collect every problem."""
    problems: list[str] = []
    staged: dict[str, str] = {}  # store-relative object path -> staged file
    manifests: dict[str, bytes] = {}
    seen = set()
    total = 0
    os.makedirs(objects_dir)
    try:
        tf = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as e:
        raise ArchiveError(f"cannot read the archive {label!r}: {e}", "is it a file `pip-omni store export` wrote?") from None
    with tf:
        try:
            for m in tf:
                name = m.name
                if name in seen:
                    problems.append(f"{name!r}: appears twice")
                    continue
                seen.add(name)
                if not m.isreg():
                    problems.append(f"{name!r}: not a regular file (links and devices are refused)")
                    continue
                if not safe_rel(name) or not (name == INDEX or _OBJECT.match(name) or _BUBBLE.match(name)
                                               or _DIST_FILE.match(name)):
                    problems.append(f"{name!r}: not a path an archive may hold (escapes the store or unknown)")
                    continue
                limit = MAX_MEMBER_BYTES if _OBJECT.match(name) else MAX_MANIFEST_BYTES
                if m.size > limit:
                    problems.append(f"{name!r}: too large ({m.size} bytes; at most {limit})")
                    continue
                total += m.size
                if total > max_bytes:
                    problems.append(f"unpacked, it is more than {max_bytes} bytes (at {name!r}); "
                                    "`pip-omni store import --max-size` raises the limit")
                    break
                src = tf.extractfile(m)
                if not _OBJECT.match(name):
                    manifests[name] = src.read(m.size)  # checked against its cap above
                    continue
                base = os.path.basename(name)
                sha = name.split("/")[1] + base.rstrip("x")
                target = os.path.join(objects_dir, name.split("/")[1] + base)
                h = hashlib.sha256()
                with open(target, "xb") as f:  # streamed: never more than 1 MiB in memory
                    for chunk in iter(functools.partial(src.read, 1 << 20), b""):
                        h.update(chunk)
                        f.write(chunk)
                if h.hexdigest() != sha:
                    problems.append(f"{name!r}: its bytes do not match its name")
                    os.unlink(target)
                    continue
                os.chmod(target, 0o555 if base.endswith("x") else 0o444)
                staged[name] = target
        except OSError as e:
            full = store_oserror(store.root, e)
            if full is not None:  # our disk, not the archive
                raise full from None
            problems.append(f"the archive is truncated or damaged ({e})")
        except (tarfile.TarError, EOFError, zlib.error) as e:
            problems.append(f"the archive is truncated or damaged ({e})")
    if INDEX not in manifests and not problems:
        problems.append(f"{INDEX!r} is missing: not a pip-omni archive")
    if problems:
        _reject(label, problems)
    return staged, manifests


def _reject(label: str, problems: list[str]):
    shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
    raise ArchiveError(f"rejected the archive {label!r}: {shown}",
                       "nothing was imported; export it again from a sound store (`pip-omni doctor` there)")


def publish_checked(store: Store, work: str, staged: dict, manifests: dict, reject, main: dict | None = None) -> dict:
    """Check ``manifests`` (store-relative name -> bytes) against each other, the objects
    ``staged`` (store-relative object path -> hash-checked file in ``work``) and the store; when
    all holds, publish what the store lacks. ``reject(problems)`` raises. The caller holds the
    write lock. Shared by ``store import`` and ``store pull`` (:mod:`omnipkg_pip.remote`).
    ``main`` (``{name: version}``), as for an install: dists main serves are not compiled."""
    bubbles, dists, pycs = _verify(store, staged, manifests, reject)
    return _publish(store, work, staged, bubbles, dists, pycs, manifests, main)


def _verify(store: Store, staged: dict, manifests: dict, reject):
    problems: list[str] = []

    def have(entry) -> str | None:
        obj = _object(store, entry)
        rel = os.path.relpath(obj, store.root).replace(os.sep, "/")
        if rel in staged:
            size = os.path.getsize(staged[rel])
        elif os.path.exists(obj):
            size = os.path.getsize(obj)
        else:
            return f"its object {rel} is neither in the archive nor in the store"
        return None if size == entry["size"] else f"{entry['path']!r} is {size} bytes, the manifest says {entry['size']}"

    parsed: dict[str, dict] = {}
    for name, data in manifests.items():
        try:
            m = json.loads(data)
        except ValueError as e:
            problems.append(f"{name!r}: not JSON ({e})")
            continue
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            problems.append(f"{name!r}: unknown manifest format")
            continue
        parsed[name] = m
    archived = {n[: -len(DIST_MANIFEST) - 1] for n in parsed if n.endswith("/" + DIST_MANIFEST)}
    dists, pycs, bubbles = {}, {}, {}
    for name, m in sorted(parsed.items()):
        if name.endswith("/" + DIST_MANIFEST):
            rel = name[: -len(DIST_MANIFEST) - 1]
            problem = manifest_problem(m, rel) or _layout_problem(m["files"])
            problems += [f"{name!r}: {problem}"] if problem else [f"{name!r}: {p}" for p in filter(None, map(have, m["files"]))]
            dists[rel] = m
        elif name.startswith("dists/"):
            files = m.get("files")
            if not isinstance(files, list) or not all(entry_ok(e) for e in files) or _layout_problem(files):
                problems.append(f"{name!r}: damaged file list")
                continue
            tag = name.rsplit("/", 1)[1][len(PYC_PREFIX) : -len(PYC_SUFFIX)]
            reserved = distnames.file_list_problem(files, tag)  # only __pycache__/*.<tag>.pyc
            if reserved:
                problems.append(f"{name!r}: {reserved}")
                continue
            problems += [f"{name!r}: {p}" for p in filter(None, map(have, files))]
            pycs[name] = m
        elif name.startswith("bubbles/"):
            _, bname, version, fname = name.split("/")
            entries = m.get("dists")
            info = m.get("interpreter")
            if (m.get("root"), m.get("version"), info.get("key") if isinstance(info, dict) else None) != (
                bname, version, fname[: -len(".json")]
            ):
                problems.append(f"{name!r}: says it is {m.get('root')!r} {m.get('version')!r}, not what its path says")
                continue
            if not isinstance(entries, dict) or not entries:
                problems.append(f"{name!r}: no dists")
                continue
            if not all(_WORD.fullmatch(x) for x in name.split("/")[1:]) or not _scripts_ok(m.get("scripts")):
                # these end up in launcher source code and file names (omnipkg_hook/scripts.py)
                problems.append(f"{name!r}: a name, version, key or console script that is not a plain word")
                continue
            for e in entries.values():
                p = e.get("path") if isinstance(e, dict) else None
                if not isinstance(p, str) or not p.startswith("dists/") or not safe_rel(p) or len(p.split("/")) != 4:
                    problems.append(f"{name!r}: names the dist path {p!r}, outside dists/")
                elif p not in archived and not os.path.exists(os.path.join(store.abspath(p), DIST_MANIFEST)):
                    problems.append(f"{name!r}: its dist {p} is neither in the archive nor in the store")
                elif p not in archived:
                    other = _other_build(store, staged, p, e.get("manifest"))
                    if other:
                        problems.append(f"{name!r}: its dist {p} is another build than the store's ({other})")
                for k in ("manifest", "pyc_manifest"):  # the dist's manifests kept as objects
                    sha = e.get(k) if isinstance(e, dict) else None
                    if sha is None:
                        continue
                    valid = isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha) is not None
                    obj = store.object_path(sha) if valid else None
                    rel = os.path.relpath(obj, store.root).replace(os.sep, "/") if obj else None
                    if rel is None or (rel not in staged and not os.path.exists(obj)):
                        problems.append(f"{name!r}: its object {rel or repr(sha)} is neither in the archive nor in the store")
            bubbles[name] = m
    for name, pm in pycs.items():
        rel = name.rsplit("/", 1)[0]
        if rel not in dists and not os.path.exists(os.path.join(store.abspath(rel), DIST_MANIFEST)):
            problems.append(f"{name!r}: its dist is neither in the archive nor in the store")
        elif rel in dists:  # both linked into one directory: no path may be in both lists
            clash = {e["path"] for e in dists[rel]["files"]} & {e["path"] for e in pm["files"]}
            if clash:
                problems.append(f"{name!r}: lists {sorted(clash)[0]!r}, a file of the dist itself")
    referenced = set()  # every object some manifest of the archive names; nothing else comes in
    for m in [] if problems else [*dists.values(), *pycs.values()]:
        referenced.update(os.path.relpath(_object(store, e), store.root).replace(os.sep, "/") for e in m["files"])
    for m in [] if problems else bubbles.values():
        for e in m["dists"].values():
            referenced.update(f"objects/{e[k][:2]}/{e[k][2:]}" for k in ("manifest", "pyc_manifest")
                              if isinstance(e.get(k), str))
    stray = [] if problems else sorted(set(staged) - referenced)  # with problems, every object looks stray
    if stray:
        problems.append(f"{stray[0]!r}: no manifest in the archive references it"
                        + (f" (nor {len(stray) - 1} other objects)" if len(stray) > 1 else ""))
    if problems:
        reject(problems)
    return bubbles, dists, pycs


_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")  # fullmatch: "$" would let a newline through
_ENTRY = re.compile(r"[A-Za-z_][\w.]*(?: *: *[A-Za-z_][\w.]*)?(?: *\[[\w ,.-]*\])?")


def _scripts_ok(scripts) -> bool:
    return scripts is None or isinstance(scripts, dict) and all(
        isinstance(k, str) and _WORD.fullmatch(k) and isinstance(v, str) and _ENTRY.fullmatch(v) for k, v in scripts.items())


def _read_object(store: Store, staged: dict, sha) -> bytes | None:
    """The bytes of the object ``sha`` (a manifest), staged or in the store; None if neither."""
    if not isinstance(sha, str) or re.fullmatch(r"[0-9a-f]{64}", sha) is None:
        return None
    obj = store.object_path(sha)
    path = staged.get(os.path.relpath(obj, store.root).replace(os.sep, "/"), obj)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _files_of(data: bytes | None) -> list | None:
    try:
        files = json.loads(data)["files"]
        return sorted((f["path"], f["sha256"], f.get("mode", 0o644) & 0o111) for f in files)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def _other_build(store: Store, staged: dict, rel: str, sha) -> str | None:
    """Why the dist manifest ``sha`` an incoming bubble records for ``rel`` (a dist this store
    has) describes other files than the store's, or None when the files are the same (the
    manifests' bytes may still differ: another origin URL). The bubble runs on the store's
    files, so other files would make it something its source never tested."""
    if sha is None:
        return None
    try:
        with open(os.path.join(store.abspath(rel), DIST_MANIFEST), "rb") as f:
            local = f.read()
    except OSError as e:
        return f"the store's manifest cannot be read: {e.strerror}"
    if hashlib.sha256(local).hexdigest() == sha:
        return None
    theirs, ours = _files_of(_read_object(store, staged, sha)), _files_of(local)
    if theirs is None:
        return "its manifest is not readable"
    if theirs != ours:
        diff = sorted({f[0] for f in set(theirs) ^ set(ours)}, key=lambda p: (".dist-info/" in p, p))
        return f"{diff[0]!r} differs" if diff else "another file list"
    return None


def _record_local(store: Store, m: dict, compiled: set, records: list, pyc: bool) -> None:
    """Make the incoming bubble ``m`` record the manifests its dists have in this store (the
    ``.pyc`` manifests only with ``pyc``: a bubble of this interpreter).

    A dist the store had before is used as it is, and its manifests' bytes need not be the
    ones the bubble's source recorded, though the files are the same (:func:`_other_build`):
    another origin URL in the dist manifest, or ``.pyc`` files compiled by another process
    (``marshal`` writes a reference only for an object something else also holds, so a
    ``.pyc``'s bytes depend on the compiling process: CPython 3.9, 3.10, 3.13 here). Such a
    manifest is recorded when a bubble of this store records it or it was compiled here just
    now (``compiled``); anything else stays as the source recorded it, for doctor to report.
    ``records``: ``[]``, or :func:`_local_records` once it was needed (read once per import or pull)."""
    from omnipkg_hook.store import put_object

    names = [("manifest", DIST_MANIFEST)]
    if pyc:
        names.append(("pyc_manifest", PYC_PREFIX + sys.implementation.cache_tag + PYC_SUFFIX))
    for e in m["dists"].values():
        rel = e["path"]
        for field, fname in names:
            try:
                with open(os.path.join(store.abspath(rel), fname), "rb") as f:
                    data = f.read()
            except OSError:
                continue
            sha = hashlib.sha256(data).hexdigest()
            if e.get(field) == sha:
                continue
            if not (field == "pyc_manifest" and rel in compiled):
                if not records:
                    records.append(_local_records(store))
                if sha not in records[0].get((rel, fname), ()):
                    continue
            put_object(store, data)  # kept as an object, as a bubble made here keeps it
            e[field] = sha


def _local_records(store: Store) -> dict:
    """``{(dist path, manifest file name): {sha256}}`` that this store's bubbles of this
    interpreter record (a ``.pyc`` manifest only for its own interpreter, as doctor checks)."""
    key, tag = interpreter_key(), sys.implementation.cache_tag
    out: dict = {}
    for _n, _v, k, path in store.iter_bubbles():
        try:
            for e in read_manifest(path)["dists"].values():
                out.setdefault((e["path"], DIST_MANIFEST), set()).add(e.get("manifest"))
                if k == key:
                    out.setdefault((e["path"], PYC_PREFIX + tag + PYC_SUFFIX), set()).add(e.get("pyc_manifest"))
        except (OSError, OmnipkgError, KeyError, TypeError, AttributeError):
            continue  # doctor names a damaged bubble; it vouches for nothing
    return out


def _layout_problem(files: list) -> str | None:
    """Two entries at one path, or a file where another entry needs a directory. (Names the
    store itself uses are :func:`omnipkg_hook.distnames.file_list_problem`'s, checked by the caller.)"""
    paths = [e["path"] for e in files]
    dirs = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    dirs |= {d.rsplit("/", i)[0] for d in list(dirs) for i in range(1, d.count("/") + 1)}
    clash = next((p for p in paths if p in dirs), None)
    if len(set(paths)) != len(paths):
        return "lists one path twice"
    return f"{clash!r} is both a file and a directory" if clash else None


def _publish(store: Store, work: str, staged: dict, bubbles: dict, dists: dict, pycs: dict, manifests: dict,
             main: dict | None = None) -> dict:
    from .bytecode import ensure_compiled, note_pending, served_by_main

    result = {"objects": 0, "dists": [], "bubbles": [], "present": []}
    made: set[str] = set()  # a pull publishes ~1000 objects into at most 256 directories
    for rel, src in sorted(staged.items()):
        obj = store.abspath(rel)
        if not os.path.exists(obj):
            if os.path.dirname(obj) not in made:
                makedirs(os.path.dirname(obj))
                made.add(os.path.dirname(obj))
            try:
                os.link(src, obj)  # never replaces: an existing object is not written again
                result["objects"] += 1
            except FileExistsError:
                pass
    for rel, m in sorted(dists.items()):
        path = store.abspath(rel)
        if os.path.exists(os.path.join(path, DIST_MANIFEST)):
            result["present"].append(rel)
            continue
        new = os.path.join(work, "dist-" + str(len(result["dists"])))
        materialize(store, m["files"], new)
        with open(os.path.join(new, DIST_MANIFEST), "xb") as f:  # a new file, never through a link
            f.write(manifests[f"{rel}/{DIST_MANIFEST}"])
        for name, pm in pycs.items():
            if name.startswith(rel + "/"):
                materialize_into(store, pm["files"], new)
                with open(os.path.join(new, name.rsplit("/", 1)[1]), "xb") as f:
                    f.write(manifests[name])
        makedirs(os.path.dirname(path))
        os.rename(new, path)
        result["dists"].append(rel)
    key = interpreter_key()
    records: list = []
    for name, m in sorted(bubbles.items()):
        path = store.abspath(name)
        if os.path.exists(path):
            result["present"].append(name)
            continue
        compiled = set()
        if name.rsplit("/", 1)[1] == key + ".json":
            from ..pythons import interp

            for dep, e in m["dists"].items():  # compiled for this interpreter, as an install would
                if dep != m["root"] and served_by_main(dep, e["version"], main):
                    continue
                dist_path = store.abspath(e["path"])
                if ensure_compiled(store, read_manifest(os.path.join(dist_path, DIST_MANIFEST)), dist_path,
                                   interp.current()):
                    compiled.add(e["path"])
            from omnipkg_hook.scripts import write_bubble_scripts  # entry points and data scripts

            write_bubble_scripts(store, m, interp.current().executable)
        # for the next install of its interpreter (bytecode.compile_pending): what it must compile
        note_pending(store, [store.abspath(e["path"]) for e in m["dists"].values()], name.rsplit("/", 1)[1][:-5])
        _record_local(store, m, compiled, records, pyc=name.rsplit("/", 1)[1] == key + ".json")
        write_json_atomic(store, path, m)
        result["bubbles"].append(name)
    return result


def parse_size(text: str) -> int:
    """``"8G"``, ``"500M"``, ``"1.5T"``, ``"12345"`` (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not m:
        raise ArchiveError(f"--max-size {text!r} is not a size", "e.g. --max-size 20G (K, M, G, T: powers of 1024)")
    return int(float(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_"))
