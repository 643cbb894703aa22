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
import hashlib
import io
import json
import os
import re
import shutil
import tarfile

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    WriteLock,
    interpreter_key,
    make_tmpdir,
    materialize,
    normalize,
    read_manifest,
    write_json_atomic,
)

from .doctor import PYC_PREFIX, PYC_SUFFIX, entry_ok, manifest_problem, safe_rel

__all__ = ["export", "import_archive", "publish_checked", "chosen_bubbles", "ArchiveError", "INDEX", "MAX_MEMBER_BYTES"]

INDEX = "omnipkg-archive.json"
MAX_MEMBER_BYTES = 1 << 30
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
    with WriteLock(store):
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
        return [available[k] for k in sorted(available)]
    chosen = []
    for text in requirements:
        req = parse_requirement(text)
        pinned = [s.version for s in req.specifier if s.operator in ("==", "===")]
        found = pinned and available.get((normalize(req.name), pinned[0]))
        if not found:
            raise ArchiveError(f"no bubble {text!r} for {key} to {verb}",
                               "name bubbles as NAME==VERSION; `pip-omni list` shows them")
        chosen.append(found)
    return chosen


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
                with open(value, "rb") as f:  # an object: checked while it is copied
                    data = f.read()
                sha = os.path.basename(os.path.dirname(value)) + os.path.basename(value).rstrip("x")
                if hashlib.sha256(data).hexdigest() != sha:
                    raise ArchiveError(f"the store's object {value!r} does not match its name; nothing exported",
                                       "run `pip-omni doctor --repair` first")
                _add(tf, name, data)
        os.replace(part, path)
    except BaseException:
        if os.path.exists(part):
            os.unlink(part)
        raise


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 0
    tf.addfile(info, io.BytesIO(data))


# -- import ------------------------------------------------------------------------------------


def import_archive(store: Store, path: str) -> dict:
    """Verify the archive at ``path`` completely, then publish what the store lacks.

    Returns ``{"objects": n, "dists": [...], "bubbles": [...], "present": [...]}`` (what
    was added; what was there already). Raises :class:`ArchiveError` naming every problem.
    """
    label = os.path.basename(path)
    with WriteLock(store):
        had_tmp = os.path.isdir(store.tmp)
        work = make_tmpdir(store, "import-")
        try:
            staged, manifests = _read_archive(store, path, label, os.path.join(work, "objects"))
            return publish_checked(store, work, staged, manifests, lambda problems: _reject(label, problems))
        finally:
            shutil.rmtree(work, ignore_errors=True)
            if not had_tmp:
                try:
                    os.rmdir(store.tmp)  # a rejected archive leaves the store exactly as it was
                except OSError:
                    pass


def _read_archive(store: Store, path: str, label: str, objects_dir: str):
    """Stage every object (hash-checked) and read every manifest; collect every problem."""
    problems: list[str] = []
    staged: dict[str, str] = {}  # store-relative object path -> staged file
    manifests: dict[str, bytes] = {}
    seen = set()
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
                if m.size > MAX_MEMBER_BYTES:
                    problems.append(f"{name!r}: too large ({m.size} bytes)")
                    continue
                data = tf.extractfile(m).read(MAX_MEMBER_BYTES + 1)
                if _OBJECT.match(name):
                    base = os.path.basename(name)
                    sha = name.split("/")[1] + base.rstrip("x")
                    if hashlib.sha256(data).hexdigest() != sha:
                        problems.append(f"{name!r}: its bytes do not match its name")
                        continue
                    target = os.path.join(objects_dir, name.split("/")[1] + base)
                    with open(target, "wb") as f:
                        f.write(data)
                    os.chmod(target, 0o555 if base.endswith("x") else 0o444)
                    staged[name] = target
                else:
                    manifests[name] = data
        except (OSError, tarfile.TarError, EOFError) as e:
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


def publish_checked(store: Store, work: str, staged: dict, manifests: dict, reject) -> dict:
    """Check ``manifests`` (store-relative name -> bytes) against each other, the objects
    ``staged`` (store-relative object path -> hash-checked file in ``work``) and the store; when
    all holds, publish what the store lacks. ``reject(problems)`` raises. The caller holds the
    write lock. Shared by ``store import`` and ``store pull`` (:mod:`omnipkg_pip.remote`)."""
    bubbles, dists, pycs = _verify(store, staged, manifests, reject)
    return _publish(store, work, staged, bubbles, dists, pycs, manifests)


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
            for e in entries.values():
                p = e.get("path") if isinstance(e, dict) else None
                if not isinstance(p, str) or not p.startswith("dists/") or not safe_rel(p) or len(p.split("/")) != 4:
                    problems.append(f"{name!r}: names the dist path {p!r}, outside dists/")
                elif p not in archived and not os.path.exists(os.path.join(store.abspath(p), DIST_MANIFEST)):
                    problems.append(f"{name!r}: its dist {p} is neither in the archive nor in the store")
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
    for name in pycs:
        rel = name.rsplit("/", 1)[0]
        if rel not in dists and not os.path.exists(os.path.join(store.abspath(rel), DIST_MANIFEST)):
            problems.append(f"{name!r}: its dist is neither in the archive nor in the store")
    if problems:
        reject(problems)
    return bubbles, dists, pycs


def _layout_problem(files: list) -> str | None:
    """Two entries at one path, or a file where another entry needs a directory."""
    paths = [e["path"] for e in files]
    dirs = {p.rsplit("/", 1)[0] for p in paths if "/" in p}
    dirs |= {d.rsplit("/", i)[0] for d in list(dirs) for i in range(1, d.count("/") + 1)}
    clash = next((p for p in paths if p in dirs or p in (DIST_MANIFEST,)), None)
    if len(set(paths)) != len(paths):
        return "lists one path twice"
    return f"{clash!r} is both a file and a directory, or reserved" if clash else None


def _publish(store: Store, work: str, staged: dict, bubbles: dict, dists: dict, pycs: dict, manifests: dict) -> dict:
    from .bytecode import ensure_compiled
    from .healing import materialize_into

    result = {"objects": 0, "dists": [], "bubbles": [], "present": []}
    for rel, src in sorted(staged.items()):
        obj = store.abspath(rel)
        if not os.path.exists(obj):
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            os.rename(src, obj)
            result["objects"] += 1
    for rel, m in sorted(dists.items()):
        path = store.abspath(rel)
        if os.path.exists(os.path.join(path, DIST_MANIFEST)):
            result["present"].append(rel)
            continue
        new = os.path.join(work, "dist-" + str(len(result["dists"])))
        materialize(store, m["files"], new)
        with open(os.path.join(new, DIST_MANIFEST), "wb") as f:
            f.write(manifests[f"{rel}/{DIST_MANIFEST}"])
        for name, pm in pycs.items():
            if name.startswith(rel + "/"):
                materialize_into(store, pm["files"], new)
                with open(os.path.join(new, name.rsplit("/", 1)[1]), "wb") as f:
                    f.write(manifests[name])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.rename(new, path)
        result["dists"].append(rel)
    key = interpreter_key()
    for name, m in sorted(bubbles.items()):
        path = store.abspath(name)
        if os.path.exists(path):
            result["present"].append(name)
            continue
        if name.rsplit("/", 1)[1] == key + ".json":
            from . import interp

            for e in m["dists"].values():  # a bubble of this interpreter is always compiled for it
                dist_path = store.abspath(e["path"])
                ensure_compiled(store, read_manifest(os.path.join(dist_path, DIST_MANIFEST)), dist_path, interp.current())
            if m.get("scripts"):
                from omnipkg_hook.scripts import write_bubble_scripts

                write_bubble_scripts(store, m, interp.current().executable)
        write_json_atomic(store, path, m)
        result["bubbles"].append(name)
    return result


# -- the command line (``pip-omni store export|import``, registered in commands/gc.py) ---------


def run(args) -> int:
    store = Store()
    if args.action == "export":
        if not args.args:
            raise ArchiveError("`pip-omni store export` needs a FILE", "e.g. pip-omni store export bubbles.tar.gz rich==13.4.2")
        key = None
        if args.python:
            from . import interpreters

            key = interpreters.resolve_python(store, args.python).key
        index = export(store, args.args[0], args.args[1:], key)
        if args.json:
            print(json.dumps(index, indent=1))
        else:
            print(f"exported {len(index['bubbles'])} bubbles, {len(index['dists'])} dists, "
                  f"{index['objects']} objects to {args.args[0]}")
        return 0
    if len(args.args) != 1:
        raise ArchiveError("`pip-omni store import` takes one FILE", "e.g. pip-omni store import bubbles.tar.gz")
    result = import_archive(store, args.args[0])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"imported {len(result['bubbles'])} bubbles, {len(result['dists'])} dists, {result['objects']} objects "
              f"({len(result['present'])} already in the store)")
    return 0
