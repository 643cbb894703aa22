"""Wheel -> objects + one dist directory, published atomically.

pypa/installer walks the wheel (schemes, entry points, RECORD); our
:class:`StoreDestination` turns each file into an object (by sha256) and a hard
link in a staging copy of the dist under ``<store>/tmp``. Nothing reaches the
visible store until the whole wheel has been read and checked:

1. the archive's directory is checked before anything is read (no ``..``, no
   absolute path, no symlink, no duplicate, no member too large or a zip bomb);
   then every member is read once and checked against its RECORD line (hash, size);
2. any problem -> :class:`WheelRejectedError` naming the wheel and every bad
   file; the staging directory is removed; the store is unchanged;
3. otherwise ``.pyc`` files are compiled for the target interpreter
   (hash-based, ``bytecode.py``), the manifest is written, new objects are
   renamed into ``objects/`` and the dist directory is renamed into ``dists/``.

The caller holds the store's write lock.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import stat
import zipfile

from installer import install
from installer.destinations import WheelDestination
from installer.records import Hash, RecordEntry
from installer.sources import WheelFile
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from omnipkg_hook.distnames import DATA_DIR, PYCACHE, dist_file_problem
from omnipkg_hook.errors import WheelRejectedError
from omnipkg_hook.store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    file_sha256,
    make_tmpdir,
    normalize,
    read_manifest,
)

from . import bytecode

__all__ = ["ingest_wheel", "MAX_MEMBER_BYTES", "MAX_WHEEL_BYTES", "DATA_DIR"]

MAX_MEMBER_BYTES = 1 << 30  # one file of a wheel, uncompressed
MAX_WHEEL_BYTES = 4 << 30  # a whole wheel, uncompressed
MAX_RATIO = 1000  # uncompressed / compressed, above 1 MiB: a zip bomb


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class _CheckedWheel(WheelFile):
    """A WheelFile whose contents are checked against RECORD while they stream by."""

    def __init__(self, f: zipfile.ZipFile) -> None:
        super().__init__(f)
        self.problems: list[str] = []

    def get_contents(self):
        # Names, links and sizes were checked by _archive_problems before anything was read.
        record_path = f"{self.dist_info_dir}/RECORD"
        for record, stream, is_executable in super().get_contents():
            path, hash_text, size_text = record
            if "__pycache__" in path.split("/")[:-1]:
                # pip's timestamp .pyc never enter the store; we compile our own. (installer
                # 1.x skips these itself, 0.7 on Python 3.9 does not: decide it here, once.)
                import warnings

                warnings.warn(f"skipped {path} from {self._zipfile.filename}: "
                              "files in a __pycache__ directory are not installed", RuntimeWarning, stacklevel=2)
                continue
            data = stream.read(MAX_MEMBER_BYTES + 1)
            if path != record_path:
                problem = _check_record(path, data, hash_text, size_text)
                if problem:
                    self.problems.append(problem)
            yield record, io.BytesIO(data), is_executable


def _archive_problems(zf: zipfile.ZipFile) -> list[str]:
    """What the archive's directory alone shows is wrong, found before any member is read
    (so a zip bomb in METADATA or RECORD is never inflated)."""
    problems: list[str] = []
    seen: set[str] = set()
    total = 0
    for info in zf.infolist():
        path = info.filename
        if path.endswith("/"):  # a directory entry; installer skips them too
            continue
        if path in seen:
            problems.append(f"{path}: duplicate entry in the archive")
            continue
        seen.add(path)
        if _safe_relpath(path) is None:
            problems.append(f"{path}: path escapes the distribution directory or is reserved")
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"{path}: is a symbolic link")
            continue
        total += info.file_size
        if info.file_size > MAX_MEMBER_BYTES:
            problems.append(f"{path}: too large ({info.file_size} bytes uncompressed)")
        elif total > MAX_WHEEL_BYTES:
            problems.append(f"{path}: too large (the wheel's files add up to {total} bytes uncompressed)")
            break
        elif info.file_size > (1 << 20) and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            problems.append(f"{path}: compression ratio is that of a zip bomb")
    return problems


def _rejected(filename: str, problems: list[str]) -> WheelRejectedError:
    shown = "; ".join(problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return WheelRejectedError(
        f"rejected {filename!r}: {shown}{more}",
        "nothing was stored; the wheel is damaged or malicious, get it from a trusted source",
    )


def _check_record(path: str, data: bytes, hash_text: str, size_text: str) -> str | None:
    if not hash_text:
        return f"{path}: no hash in RECORD"
    algo, _, expected = hash_text.partition("=")
    if algo not in hashlib.algorithms_guaranteed or algo in ("md5", "sha1"):
        return f"{path}: RECORD uses an unacceptable hash {algo!r}"
    if _b64(hashlib.new(algo, data).digest()) != expected:
        return f"{path}: contents do not match the hash in RECORD"
    if size_text and size_text != str(len(data)):
        return f"{path}: size {len(data)} does not match RECORD ({size_text})"
    return None


def _safe_relpath(path: str) -> str | None:
    """``path`` if it stays inside the dist directory, else None."""
    if not path or path.startswith(("/", "\\")) or "\\" in path or ":" in path.split("/")[0]:
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return path


class StoreDestination(WheelDestination):
    """Writes each file as an object (staged) and a hard link into the staging dist."""

    def __init__(self, store: Store, staging: str, wheel: _CheckedWheel) -> None:
        self.store = store
        self.dist_dir = os.path.join(staging, "dist")
        self.new_objects = os.path.join(staging, "objects")
        os.makedirs(self.dist_dir)
        os.makedirs(self.new_objects)
        self.wheel = wheel
        self.files: list[dict] = []
        self.entry_points: dict[str, dict[str, str]] = {}
        self.staged: dict[str, str] = {}  # object path in the store -> staged copy
        self.made: set[str] = {self.dist_dir}  # directories made: one makedirs each, not one per file

    def write_script(self, name, module, attr, section):
        # Console scripts of a bubble are generated per bubble (they set its pins);
        # the dist only records its entry points.
        self.entry_points.setdefault(f"{section}_scripts", {})[name] = f"{module}:{attr}"
        return RecordEntry(f"{DATA_DIR}/entry-point/{name}", None, None)

    def write_file(self, scheme, path, stream, is_executable):
        path = os.fspath(path)
        rel = _safe_relpath(path)
        prefix = "" if scheme in ("purelib", "platlib") else f"{DATA_DIR}/{scheme}/"
        # The names pip-omni writes into a dist (manifests, __pycache__, the data directory)
        # are never a wheel's: one written later would land on a wheel file's object.
        problem = "path escapes the distribution directory" if rel is None else (
            dist_file_problem(rel, in_wheel=True) if not prefix else dist_file_problem(prefix + rel)
        )
        if problem:
            self.wheel.problems.append(problem if rel is not None else f"{path}: {problem}")
            return RecordEntry(path, None, 0)
        rel = prefix + rel
        data = stream.read()
        entry = self.add_bytes(rel, data, is_executable)
        self.files.append(entry)
        return RecordEntry(path, Hash("sha256", _b64(bytes.fromhex(entry["sha256"]))), len(data))

    def add_bytes(self, rel: str, data: bytes, executable: bool) -> dict:
        """Store ``data`` as an object and link it at ``rel`` in the staging dist."""
        sha = hashlib.sha256(data).hexdigest()
        target = os.path.join(self.dist_dir, *rel.split("/"))
        if os.path.lexists(target):
            self.wheel.problems.append(f"{rel}: written twice")
            return {"path": rel, "sha256": sha, "size": len(data), "mode": 0o644}
        parent = os.path.dirname(target)
        try:
            if parent not in self.made:
                os.makedirs(parent, exist_ok=True)
                self.made.add(parent)
        except (FileExistsError, NotADirectoryError):
            blocking = os.path.dirname(rel)
            while os.path.dirname(blocking) and not os.path.isfile(os.path.join(self.dist_dir, *blocking.split("/"))):
                blocking = os.path.dirname(blocking)
            self.wheel.problems.append(f"{rel}: {blocking!r} is a file, not a directory")
            return {"path": rel, "sha256": sha, "size": len(data), "mode": 0o644}
        obj = self.store.object_path(sha, executable)
        if os.path.exists(obj):
            os.link(obj, target)
        else:
            staged = self.staged.get(obj)
            if staged is None:
                staged = os.path.join(self.new_objects, os.path.basename(os.path.dirname(obj)) + os.path.basename(obj))
                with open(staged, "xb") as f:  # a new file: never through an existing link
                    f.write(data)
                os.chmod(staged, 0o555 if executable else 0o444)
                self.staged[obj] = staged
            os.link(staged, target)
        return {"path": rel, "sha256": sha, "size": len(data), "mode": 0o755 if executable else 0o644}

    def finalize_installation(self, scheme, record_file_path, records):
        rows = [(record_file_path, "", "")]
        for file_scheme, record in records:
            if record.path.startswith(f"{DATA_DIR}/entry-point/") or record.path == record_file_path:
                continue
            rel = record.path if file_scheme in ("purelib", "platlib") else f"{DATA_DIR}/{file_scheme}/{record.path}"
            size = "" if record.size is None else str(record.size)
            rows.append((rel, str(record.hash_) if record.hash_ else "", size))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in sorted(rows, key=lambda r: r[0]):
            writer.writerow(row)
        self.files.append(self.add_bytes(record_file_path, buf.getvalue().encode("utf-8"), False))


def _import_names(paths: list[str]) -> tuple[list[str], list[str]]:
    """Top-level import names a dist provides, and which of them are namespace packages."""
    names: set[str] = set()
    dirs: dict[str, bool] = {}
    for path in paths:
        parts = path.split("/")
        first = parts[0]
        if first.endswith((".dist-info", ".data")) or first in (DATA_DIR, PYCACHE, DIST_MANIFEST):
            continue
        if len(parts) == 1:
            if first.endswith(".py"):
                names.add(first[:-3])
            elif first.endswith((".so", ".pyd")):
                names.add(first.split(".")[0])
        else:
            has_init = dirs.get(first, False)
            dirs[first] = has_init or (len(parts) == 2 and parts[1] in ("__init__.py", "__init__.pyc") or (
                len(parts) == 2 and parts[1].startswith("__init__.") and parts[1].endswith((".so", ".pyd"))
            ))
    names.update(dirs)
    top = sorted(n for n in names if n.isidentifier())
    namespaces = sorted(n for n, has_init in dirs.items() if not has_init and n.isidentifier())
    return top, namespaces


def ingest_wheel(store: Store, wheel_path: str, interpreter, *, compile: bool = True,
                 origin: dict | None = None) -> dict:
    """Put ``wheel_path`` into the store (if not there) with .pyc for ``interpreter``.

    ``compile=False`` stores the dist without ``.pyc`` (the caller compiles what will be
    routed, ``bytecode.ensure_compiled``). ``origin``: where pip got the wheel, from its
    report (``{"url": ..., "sha256": <the archive's>}``): a new dist records the URL as
    ``origin`` (and ``origin_sha256`` when the archive was an sdist, not this wheel). Returns
    the dist manifest. The caller holds ``WriteLock(store)``.
    """
    filename = os.path.basename(wheel_path)
    name, version, tag = wheel_name(filename)
    dist_dir = store.dist_path(name, version, tag)
    manifest_path = os.path.join(dist_dir, DIST_MANIFEST)
    if os.path.exists(manifest_path):
        manifest = read_manifest(manifest_path)
        _check_same_wheel(store, manifest, wheel_path, filename, name, version, tag)
        if compile:
            bytecode.ensure_compiled(store, manifest, dist_dir, interpreter)
        return manifest

    staging = make_tmpdir(store, "ingest-")
    try:
        manifest = _stage(store, wheel_path, filename, name, version, tag, staging, interpreter if compile else None,
                          origin)
        _publish(store, staging, dist_dir)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_same_wheel(store, manifest, wheel_path, filename, name, version, tag) -> None:
    """The stored dist is handed out for ``wheel_path`` only if it is that wheel.

    Same sha256 as the wheel it was made from: it is. Another sha256 (another index, a
    local ``-f`` folder with another build, a rebuild of an sdist): the wheel is checked
    and staged (not compiled, not published) and its files compared with the dist's. The
    same files (path, bytes, mode; only the zip around them differs, as for two builds of
    one sdist) make the same dist; other files are refused, naming both wheels' sha256.
    """
    recorded = manifest.get("wheel_sha256")
    sha = file_sha256(wheel_path)
    if not recorded or sha == recorded:
        return
    staging = make_tmpdir(store, "compare-")
    try:
        other = _stage(store, wheel_path, filename, name, version, tag, staging, None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    key = lambda f: (f["path"], f["sha256"], f["size"], f.get("mode"))  # noqa: E731
    if sorted(map(key, other["files"])) == sorted(map(key, manifest["files"])):
        return
    came_from = f" (from {manifest['origin']})" if manifest.get("origin") else ""
    raise WheelRejectedError(
        f"rejected {filename!r}: the store already holds {manifest['name']} {version} ({tag}) made from another "
        f"wheel with other files: {manifest.get('wheel')!r} sha256 {recorded}{came_from} is stored, this one is "
        f"sha256 {sha}",
        "the two builds differ (another index, or a local -f folder with another build?) and pip-omni never hands "
        "one out as the other: install from where the stored one came from (`pip-omni doctor -v` shows it), "
        "or remove the bubbles that use it (`pip-omni uninstall NAME==VERSION`) and run `pip-omni gc` first",
    )


def wheel_name(filename: str) -> tuple[str, str, str]:
    """``(name, version, tag)`` a wheel's file name gives; ``WheelRejectedError`` if it is none."""
    try:
        name, version, _build, _tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as e:
        raise WheelRejectedError(f"rejected {filename!r}: {e}", "is it a wheel pip built?") from None
    return name, str(version), "-".join(filename[:-4].split("-")[-3:])


def open_checked(wheel_path: str, filename: str) -> zipfile.ZipFile:
    """The wheel as a zip whose directory passed :func:`_archive_problems` (nothing read yet)."""
    try:
        zf = zipfile.ZipFile(wheel_path)
    except (OSError, zipfile.BadZipFile) as e:
        raise WheelRejectedError(f"rejected {filename!r}: not a readable zip archive ({e})") from None
    problems = _archive_problems(zf)
    if problems:
        zf.close()
        raise _rejected(filename, problems)
    return zf


def _stage(store, wheel_path, filename, name, version, tag, staging, interpreter, origin=None) -> dict:
    """Check and stage the wheel in ``staging``; compiled for ``interpreter`` unless None."""
    with open_checked(wheel_path, filename) as zf:
        wheel, meta = checked_metadata(zf, filename, name, version)
        dest = StoreDestination(store, staging, wheel)
        try:
            install(wheel, dest, {"INSTALLER": b"pip-omni\n"})
        except WheelRejectedError:
            raise
        except OSError as e:  # a full disk is not a bad wheel
            from omnipkg_hook.store import store_oserror

            full = store_oserror(store.root, e)
            if full is not None:
                raise full from None
            wheel.problems.append(_installer_issue(e))
        except Exception as e:
            wheel.problems.append(_installer_issue(e))
        if wheel.problems:
            raise _rejected(filename, wheel.problems)
    paths = [f["path"] for f in dest.files]
    top_level, namespaces = _import_names(paths)
    manifest = {
        "format": FORMAT,
        "name": normalize(name),
        "project_name": meta["Name"],
        "version": version,
        "tag": tag,
        "wheel": filename,
        "wheel_sha256": (wheel_sha := file_sha256(wheel_path)),
        **_origin_fields(origin, wheel_sha),
        "dist_info": wheel.dist_info_dir,
        "top_level": top_level,
        "namespaces": namespaces,
        "requires_dist": meta.get_all("Requires-Dist") or [],
        "requires_python": meta.get("Requires-Python"),
        "entry_points": dest.entry_points,
        "files": sorted(dest.files, key=lambda f: f["path"]),
    }
    if interpreter is not None:
        bytecode.compile_staged(store, manifest, dest, interpreter)
    import json

    # The manifest is itself an object (linked like any file), the one bubbles record for
    # rebuilding a deleted dist: stored once, not twice.
    dest.add_bytes(DIST_MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"), False)
    return manifest


def _origin_fields(origin: dict | None, wheel_sha: str) -> dict:
    if not origin or not origin.get("url"):
        return {}
    out = {"origin": origin["url"]}
    if origin.get("sha256") and origin["sha256"] != wheel_sha:
        out["origin_sha256"] = origin["sha256"]  # an sdist pip built this wheel from
    return out


def _publish(store: Store, staging: str, dist_dir: str) -> None:
    """New objects first, then the dist directory: one rename each."""
    new_objects = os.path.join(staging, "objects")
    made = set()
    for fname in os.listdir(new_objects):
        obj = os.path.join(store.objects, fname[:2], fname[2:])
        if fname[:2] not in made:
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            made.add(fname[:2])
        if not os.path.exists(obj):
            os.rename(os.path.join(new_objects, fname), obj)
    os.makedirs(os.path.dirname(dist_dir), exist_ok=True)
    os.rename(os.path.join(staging, "dist"), dist_dir)


def _norm_version(text: str) -> str:
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(text))
    except InvalidVersion:
        return text


def checked_metadata(zf: zipfile.ZipFile, filename: str, name: str, version: str):
    """``(installer's WheelFile of zf, its METADATA parsed)``: its one ``.dist-info`` and
    RECORD as installer reads them (not the files' contents yet), the METADATA naming the
    file name's project and version; else ``WheelRejectedError``."""
    wheel = _CheckedWheel(zf)
    try:
        wheel.validate_record(validate_contents=False)
        text = wheel.read_dist_info("METADATA")
    except Exception as e:  # installer reports several kinds of ValueError/KeyError
        raise WheelRejectedError(
            f"rejected {filename!r}: {_installer_issue(e)}", "the wheel is broken; rebuild or re-download it"
        ) from None
    meta = _parse_metadata(filename, text)
    if canonicalize_name(meta["Name"]) != canonicalize_name(name) or _norm_version(meta["Version"]) != version:
        raise WheelRejectedError(
            f"rejected {filename!r}: METADATA says {meta['Name']} {meta['Version']}, "
            f"the file name says {name} {version}"
        )
    return wheel, meta


def _parse_metadata(filename: str, text: str):
    from email.parser import HeaderParser

    meta = HeaderParser().parsestr(text)
    for field in ("Name", "Version"):
        if not meta.get(field):
            raise WheelRejectedError(f"rejected {filename!r}: METADATA has no {field}")
    return meta


def _installer_issue(e: Exception) -> str:
    issues = getattr(e, "issues", None)
    if issues:
        return "; ".join(str(i).split(", ", 1)[-1] for i in issues[:5])
    return str(e) or type(e).__name__
