"""The store as readers see it: where it is, how it is laid out, what manifests say.

Standard library only: this module runs at interpreter start-up when
``OMNIPKG_PINS`` is set. The write side (locking, atomic publish, ingest) lives
in ``omnipkg_pip.storage``.

Layout (``docs/architecture.md`` has the full story)::

    <store>/
      objects/ab/cdef...            file bytes by sha256, read-only; "...x" when executable
      dists/<name>/<version>/<tag>/ hard links to objects, .dist-info, omnipkg-dist.json
      bubbles/<name>/<version>/<interpreter-key>.json
      bin/<name>-<version>-<interpreter-key>/   console scripts of one bubble
      tmp/                          staging; everything is published by rename
      .lock                         writers take it; readers never lock

Names in paths are PEP 503-normalised (``MarkupSafe`` -> ``markupsafe``).
"""

from __future__ import annotations

import json
import os
import re
import sys

from .errors import StoreCorruptError

__all__ = [
    "APP_NAME",
    "FORMAT",
    "normalize",
    "interpreter_key",
    "default_store_dir",
    "find_store",
    "Store",
    "main_versions",
]

APP_NAME = "pip-omni"
FORMAT = 1
DIST_MANIFEST = "omnipkg-dist.json"

_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 name: ``Markup_Safe`` and ``markup-safe`` are one distribution."""
    return _NORMALIZE.sub("-", name).lower()


def interpreter_key() -> str:
    """What a bubble is resolved for: implementation, version, ABI flags, platform.

    ``cpython-311-linux-x86_64``; a free-threaded 3.13 is ``cpython-313t-...``.
    """
    machine = os.uname().machine if hasattr(os, "uname") else os.environ.get(
        "PROCESSOR_ARCHITECTURE", "unknown"
    )
    abiflags = getattr(sys, "abiflags", "").replace("m", "")
    return f"{sys.implementation.cache_tag}{abiflags}-{sys.platform}-{machine.lower()}"


def default_store_dir() -> str:
    """``platformdirs.user_data_dir("pip-omni", appauthor=False)``, computed without it.

    A test checks that both agree, so the hook and the pip side look in one place.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Application Support")
    else:
        base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser(
            "~/.local/share"
        )
    return os.path.join(base, APP_NAME)


_TOOL_SECTION = re.compile(r"^\s*\[\s*tool\s*\.\s*omnipkg\s*\]\s*$", re.M)
_STORE_KEY = re.compile(r"^\s*[\"']?store[\"']?\s*=")
_STORE_LINE = re.compile(r"""^\s*store\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$""")


def _pyproject_store(start: str) -> str | None:
    """``[tool.omnipkg] store`` of the nearest pyproject.toml above ``start``."""
    here = os.path.abspath(start)
    while True:
        candidate = os.path.join(here, "pyproject.toml")
        if os.path.isfile(candidate):
            return _read_store_setting(candidate)
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _read_store_setting(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if b"omnipkg" not in raw:  # the common case costs one read and no parser
        return None
    text = raw.decode("utf-8", "replace")
    value = None
    try:
        import tomllib  # 3.11+

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise StoreCorruptError(
                f"cannot read {path!r}: {e}",
                "fix the TOML, or set OMNIPKG_STORE to choose the store explicitly",
            ) from None
        value = data.get("tool", {}).get("omnipkg", {}).get("store")
    except ImportError:
        # 3.9/3.10 have no TOML parser in the standard library; read the one
        # simple form we document: a `store = "..."` line inside [tool.omnipkg].
        section = _TOOL_SECTION.search(text)
        if section:
            for line in text[section.end():].splitlines():
                if line.lstrip().startswith("["):
                    break
                m = _STORE_LINE.match(line)
                if m:
                    value = m.group(1) if m.group(1) is not None else m.group(2)
                    break
                if _STORE_KEY.match(line):  # a store setting we cannot read: never guess
                    raise StoreCorruptError(
                        f"cannot read [tool.omnipkg] store in {path!r}: {line.strip()!r}",
                        'on Python < 3.11 write it as store = "path/to/store", or set OMNIPKG_STORE',
                    ) from None
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise StoreCorruptError(
            f"[tool.omnipkg] store in {path!r} must be a non-empty string, not {value!r}",
            'write store = "path/to/store"',
        )
    value = os.path.expanduser(value)
    return os.path.normpath(os.path.join(os.path.dirname(path), value))


def find_store(cwd: str | None = None) -> str:
    """Where the store is: ``OMNIPKG_STORE``, else pyproject.toml, else the user data dir."""
    env = os.environ.get("OMNIPKG_STORE")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    found = _pyproject_store(cwd or os.getcwd())
    return found or default_store_dir()


class Store:
    """Paths and manifest reads of one store. Cheap to make; reads are not cached here."""

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root) if root else find_store()
        self.objects = os.path.join(self.root, "objects")
        self.dists = os.path.join(self.root, "dists")
        self.bubbles = os.path.join(self.root, "bubbles")
        self.bin = os.path.join(self.root, "bin")
        self.tmp = os.path.join(self.root, "tmp")
        self.lock = os.path.join(self.root, ".lock")

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # -- paths ---------------------------------------------------------------------------

    def object_path(self, sha256: str, executable: bool = False) -> str:
        return os.path.join(self.objects, sha256[:2], sha256[2:] + ("x" if executable else ""))

    def dist_path(self, name: str, version: str, tag: str) -> str:
        return os.path.join(self.dists, normalize(name), version, tag)

    def dist_relpath(self, name: str, version: str, tag: str) -> str:
        return "/".join(("dists", normalize(name), version, tag))

    def bubble_path(self, name: str, version: str, key: str) -> str:
        return os.path.join(self.bubbles, normalize(name), version, key + ".json")

    def bubble_bin(self, name: str, version: str, key: str) -> str:
        return os.path.join(self.bin, f"{normalize(name)}-{version}-{key}")

    def abspath(self, relpath: str) -> str:
        return os.path.join(self.root, *relpath.split("/"))

    # -- reads ---------------------------------------------------------------------------

    def bubble_versions(self, name: str, key: str) -> list[str]:
        """Versions of ``name`` that have a bubble for interpreter ``key`` (unsorted)."""
        base = os.path.join(self.bubbles, normalize(name))
        try:
            versions = os.listdir(base)
        except OSError:
            return []
        suffix = key + ".json"
        return [v for v in versions if os.path.isfile(os.path.join(base, v, suffix))]

    def bubble_names(self) -> list[str]:
        try:
            return sorted(os.listdir(self.bubbles))
        except OSError:
            return []

    def iter_bubbles(self, key: str | None = None):
        """Yield ``(name, version, key, path)`` of every bubble manifest (for ``key`` only if given)."""
        for name in self.bubble_names():
            base = os.path.join(self.bubbles, name)
            try:
                versions = sorted(os.listdir(base))
            except OSError:
                continue
            for version in versions:
                try:
                    files = sorted(os.listdir(os.path.join(base, version)))
                except OSError:
                    continue
                for fname in files:
                    if not fname.endswith(".json") or fname.startswith("."):
                        continue
                    k = fname[: -len(".json")]
                    if key is None or k == key:
                        yield name, version, k, os.path.join(base, version, fname)

    def load_bubble(self, name: str, version: str, key: str) -> dict:
        return read_manifest(self.bubble_path(name, version, key))

    def load_dist(self, relpath: str) -> dict:
        return read_manifest(os.path.join(self.abspath(relpath), DIST_MANIFEST))


def read_manifest(path: str) -> dict:
    """A JSON manifest; a damaged one is a :class:`StoreCorruptError` naming the file."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise StoreCorruptError(
            f"damaged manifest {path!r}: {e}", "run `pip-omni doctor --repair`"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StoreCorruptError(
            f"manifest {path!r} has an unknown format", "run `pip-omni doctor --repair`"
        )
    return data


# -- the main environment, read the way importlib.metadata would, but by directory name ---

_META_DIR = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+?)(?:-py\d[^-]*)?\.(?:dist|egg)-info$", re.I)


def main_versions(paths: list[str] | None = None, exclude: str | None = None) -> dict[str, tuple[str, str]]:
    """``{normalized name: (version, directory)}`` of distributions on ``paths``.

    The first path that has a distribution wins, as for imports. Reads directory
    names only (``rich-13.7.1.dist-info``), one ``listdir`` per path entry.
    Directories under ``exclude`` (the store) are skipped.
    """
    found: dict[str, tuple[str, str]] = {}
    for entry in sys.path if paths is None else paths:
        directory = entry or "."
        if exclude and os.path.abspath(directory).startswith(exclude):
            continue
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for fname in names:
            if not fname.endswith("-info"):
                continue
            m = _META_DIR.match(fname)
            if m:
                found.setdefault(normalize(m.group("name")), (m.group("version"), directory))
    return found


# -- writing: shared by the pip side (publish) and the hook (self-repair) -----------------
#
# Every write lands in <store>/tmp first and is published by one rename, so a reader
# sees a whole file or directory or none. Writers hold <store>/.lock.

_copy_warned = False


class WriteLock:
    """``with WriteLock(store):`` -- the store's single writer lock (``fcntl.flock``).

    Blocks until free; ``on_wait`` is called once if it has to wait. Re-entrant in
    one process: nested use is counted, so library calls can take it freely.
    """

    _depth: dict[str, int] = {}
    _fds: dict[str, int] = {}

    def __init__(self, store: Store, on_wait=None) -> None:
        self.store = store
        self.on_wait = on_wait

    def __enter__(self) -> WriteLock:
        path = self.store.lock
        depth = WriteLock._depth.get(path, 0)
        if depth == 0:
            os.makedirs(self.store.root, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock_fd(fd, self.on_wait)
            except BaseException:
                os.close(fd)
                raise
            WriteLock._fds[path] = fd
        WriteLock._depth[path] = depth + 1
        return self

    def __exit__(self, *exc) -> None:
        path = self.store.lock
        depth = WriteLock._depth[path] - 1
        WriteLock._depth[path] = depth
        if depth == 0:
            fd = WriteLock._fds.pop(path)
            del WriteLock._depth[path]
            os.close(fd)  # closing releases the flock


def _lock_fd(fd: int, on_wait) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: msvcrt locks a byte range instead
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if on_wait is not None:
            on_wait()
        fcntl.flock(fd, fcntl.LOCK_EX)


def make_tmpdir(store: Store, prefix: str) -> str:
    """A fresh directory under ``<store>/tmp`` (same filesystem as what it publishes into)."""
    import tempfile

    os.makedirs(store.tmp, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=store.tmp)


def write_atomic(store: Store, path: str, data: bytes, mode: int = 0o644, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` via a file in tmp/ and one rename (readers see all or nothing)."""
    import tempfile

    os.makedirs(store.tmp, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="w-", dir=store.tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json_atomic(store: Store, path: str, data: dict) -> None:
    """Write ``data`` as JSON to ``path``, atomically and durably (manifests, registries)."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    write_atomic(store, path, text.encode("utf-8"), 0o644, fsync=True)


def put_object(store: Store, data: bytes, executable: bool = False) -> str:
    """Store ``data`` as an object unless it is there; return its sha256. Caller holds the lock."""
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    obj = store.object_path(sha, executable)
    if not os.path.exists(obj):
        write_atomic(store, obj, data, 0o555 if executable else 0o444)
    return sha


def file_sha256(path: str) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def link_object(store: Store, entry: dict, dest: str) -> None:
    """Put the object of manifest ``entry`` at ``dest``: a hard link, or a copy across filesystems."""
    global _copy_warned
    obj = store.object_path(entry["sha256"], bool(entry.get("mode", 0o644) & 0o111))
    try:
        os.link(obj, dest)
    except OSError as e:
        import errno

        if e.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.ENOTSUP):
            raise
        import shutil

        if not _copy_warned:
            _copy_warned = True
            print(
                f"pip-omni: cannot hard-link inside {store.root!r} ({e.strerror}); copying files instead",
                file=sys.stderr,
            )
        shutil.copyfile(obj, dest)
        os.chmod(dest, 0o555 if entry.get("mode", 0o644) & 0o111 else 0o444)


def materialize(store: Store, files: list[dict], dest: str) -> None:
    """Create ``dest`` (which must not exist) with the manifest ``files`` linked from objects.

    Raises ``FileNotFoundError`` naming the object when one is missing.
    """
    os.mkdir(dest)
    made = {dest}
    for entry in files:
        parts = entry["path"].split("/")
        parent = dest
        for part in parts[:-1]:
            parent = os.path.join(parent, part)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
        link_object(store, entry, os.path.join(parent, parts[-1]))
