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

import _thread
import json
import os
import re
import sys

from .errors import StoreCorruptError, StoreError

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


# Python < 3.11 only (no tomllib): compiled there on first use (re caches them), not at
# every import of this module.
_TOOL_SECTION = r"^\s*\[\s*tool\s*\.\s*omnipkg\s*\]\s*$"
_STORE_KEY = r"^\s*[\"']?store[\"']?\s*="
_STORE_LINE = r"""^\s*store\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$"""


def _pyproject_store(start: str) -> str | None:
    """``[tool.omnipkg] store`` of the nearest pyproject.toml above ``start`` that we may trust."""
    found = trusted_pyproject(start, "using the default store (set OMNIPKG_STORE to choose one)")
    return _read_store_setting(*found) if found else None


def trusted_pyproject(start: str, fallback: str) -> tuple[str, bytes] | None:
    """``(path, bytes)`` of the nearest pyproject.toml above ``start`` that mentions omnipkg
    and that we may trust; None if there is none.

    git's ``safe.directory`` stance: the walk goes up from ``start`` through directories
    owned by the current user or root and stops at the first one that is not; a
    pyproject.toml is read only if it is owned by the current user or root (and is a
    regular file of at most 1 MiB). One another user controls is ignored with one warning
    line ending in ``fallback`` (what is done instead). Every ``[tool.omnipkg]`` setting
    should be read through here, so all readers agree.
    """
    here = os.path.abspath(start)
    while True:
        candidate = os.path.join(here, "pyproject.toml")
        try:
            dir_uid = os.stat(here).st_uid
        except OSError:
            return None
        if os.path.isfile(candidate) or not _trusted_owner(dir_uid):
            break
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent
    try:
        raw, st = read_regular_file(candidate)
    except OSError:
        return None
    if b"omnipkg" not in raw:  # the common case costs one read and no parser
        return None
    if not _trusted_owner(dir_uid) or not _trusted_owner(st.st_uid):
        whose = (f"its directory {here!r} is owned by uid {dir_uid}" if not _trusted_owner(dir_uid)
                 else f"it is owned by uid {st.st_uid}")
        warn_once(f"ignoring [tool.omnipkg] in {candidate!r}: {whose}, not by you (uid {_euid()}) or root; "
                  + fallback)
        return None
    return candidate, raw


def _euid() -> int | None:
    return os.geteuid() if hasattr(os, "geteuid") else None


def _trusted_owner(uid: int) -> bool:
    """The current user or root (always true where there are no uids)."""
    me = _euid()
    return me is None or uid in (me, 0)


_warned: set = set()


def warn_once(line: str) -> None:
    """``pip-omni: warning: line`` on stderr, once per process."""
    if line not in _warned:
        _warned.add(line)
        print(f"pip-omni: warning: {line}", file=sys.stderr)


MAX_CONFIG_BYTES = 1 << 20


def read_regular_file(path: str, limit: int = MAX_CONFIG_BYTES) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes, and its fstat.

    Opened with ``O_NONBLOCK`` (a FIFO cannot block the open) and checked with ``fstat``
    on the open file, so a FIFO, device or directory is refused without being read.
    Raises ``OSError`` (``strerror`` says why) otherwise.
    """
    import errno
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                    else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
            raise OSError(errno.EINVAL, f"not a regular file (it is {kind})", path)
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes ({st.st_size})", path)
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:  # grew while we read
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", path)
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def _read_store_setting(path: str, raw: bytes) -> str | None:
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
        section = re.search(_TOOL_SECTION, text, re.M)
        if section:
            for line in text[section.end():].splitlines():
                if line.lstrip().startswith("["):
                    break
                m = re.match(_STORE_LINE, line)
                if m:
                    value = m.group(1) if m.group(1) is not None else m.group(2)
                    break
                if re.match(_STORE_KEY, line):  # a store setting we cannot read: never guess
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

DIR_MODE = 0o755  # every directory pip-omni makes in a store, whatever the umask
# What a writer creates or removes at the top of the store: never a link, never another user's.
STORE_DIRS = ("objects", "dists", "bubbles", "bin", "tmp", "quarantine", "cache")


def makedirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, each new directory ``DIR_MODE`` whatever the umask."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent and parent != path:
        makedirs(parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return
    os.chmod(path, DIR_MODE)


def check_writable(store: Store) -> None:
    """Refuse to write into ``store`` when it is another user's, or when a directory at its
    top (``tmp/``, ``bin/``...) is a symbolic link or another user's: one line, nothing written."""
    import stat

    me = _euid()
    try:
        st = os.stat(store.root)
    except FileNotFoundError:
        return
    if me is not None and st.st_uid != me:
        raise StoreError(
            f"cannot write the store {store.root!r}: it belongs to uid {st.st_uid}, not to you (uid {me})",
            "read-only commands (list, show, why, doctor, pins) work there; "
            "to install, use a store of your own (OMNIPKG_STORE)",
        )
    for name in STORE_DIRS:
        path = os.path.join(store.root, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise StoreError(
                f"cannot write the store {store.root!r}: {name}/ is a symbolic link (to {os.readlink(path)!r}); "
                "pip-omni never follows a link out of the store",
                f"make {path} a real directory (or remove it) and rerun",
            )
        if not stat.S_ISDIR(st.st_mode) or (me is not None and st.st_uid != me):
            raise StoreError(
                f"cannot write the store {store.root!r}: {name}/ is "
                + ("not a directory" if not stat.S_ISDIR(st.st_mode) else f"owned by uid {st.st_uid}, not by you"),
                f"fix or remove {path} and rerun",
            )


def store_oserror(store_root: str, e: OSError) -> StoreError | None:
    """The one line for an ``OSError`` about the store's filesystem rather than its data: no
    space, no quota, a read-only file system, no permission. None for anything else, or for
    an error about a file outside the store."""
    import errno

    full = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    name = os.fsdecode(e.filename) if isinstance(e.filename, (str, bytes)) else None
    root = os.path.abspath(store_root)
    if e.errno not in (*full, errno.EROFS, errno.EACCES, errno.EPERM) or (
        name and os.path.commonpath([root, os.path.abspath(name)]) != root
    ):
        return None
    if e.errno in full:
        quota = " (disk quota exceeded)" if e.errno != errno.ENOSPC else ""
        return StoreError(f"no space left on the store's filesystem ({store_root!r}){quota}",
                          "free space there and rerun (`pip-omni gc` removes what no bubble uses); "
                          "nothing half-written is visible in the store")
    why = "is on a read-only file system" if e.errno == errno.EROFS else (
        f"is not writable or readable by you ({e.strerror}" + (f": {name!r})" if name else ")"))
    return StoreError(f"the store {store_root!r} {why}",
                      "read-only commands (list, show, why, doctor, pins) work there; "
                      "to install, use a store you can write (OMNIPKG_STORE)")


class WriteLock:
    """``with WriteLock(store):`` -- the store's single writer lock (``fcntl.flock``).

    Blocks until free; ``on_wait`` is called once if it has to wait. Re-entrant in
    one thread: nested use is counted, so library calls can take it freely; another
    thread of the process waits for it as another process would (``install`` makes
    several bubbles at once, each publishing under the lock).

    Before locking it checks the store is ours to write (:func:`check_writable`) and
    fails with one line if not. ``optional=True`` is for read-only work that likes a
    still store but does not need one (``doctor``, ``gc --dry-run``): where the store
    cannot be written (another user's, a read-only mount) it goes on without the lock
    and ``held`` is False.
    """

    _depth: dict[str, int] = {}
    _fds: dict[str, int] = {}
    # Between threads of one process (made here, not on first use: two threads racing to make
    # it would each hold one of their own). ``_thread`` is builtin: nothing is imported.
    _threads = _thread.RLock()

    def __init__(self, store: Store, on_wait=None, optional: bool = False) -> None:
        self.store = store
        self.on_wait = on_wait
        self.optional = optional
        self.held = False
        self._umask = None

    def __enter__(self) -> WriteLock:
        WriteLock._threads.acquire()
        try:
            self._enter()
        except BaseException:
            WriteLock._threads.release()
            raise
        if not self.held:  # optional, and the store cannot be written: nothing is held
            WriteLock._threads.release()
        return self

    def _enter(self) -> None:
        path = self.store.lock
        depth = WriteLock._depth.get(path, 0)
        if depth == 0:
            try:
                check_writable(self.store)
                makedirs(self.store.root)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as e:
                if self.optional:
                    return
                if isinstance(e, StoreError):
                    raise
                raise (store_oserror(self.store.root, e) or e) from None
            try:
                _lock_fd(fd, self.on_wait)
            except BaseException:
                os.close(fd)
                raise
            WriteLock._fds[path] = fd
            if sys.modules[__package__]._fix_umask:  # the pip side: what it makes ignores a tight umask
                self._umask = os.umask(0o022)
        WriteLock._depth[path] = depth + 1
        self.held = True

    def __exit__(self, *exc) -> None:
        if not self.held:
            return
        self.held = False
        path = self.store.lock
        depth = WriteLock._depth[path] - 1
        WriteLock._depth[path] = depth
        try:
            if depth == 0:
                fd = WriteLock._fds.pop(path)
                del WriteLock._depth[path]
                if self._umask is not None:
                    os.umask(self._umask)
                os.close(fd)  # closing releases the flock
        finally:
            WriteLock._threads.release()


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

    makedirs(store.tmp)
    path = tempfile.mkdtemp(prefix=prefix, dir=store.tmp)
    os.chmod(path, DIR_MODE)  # what is built in it is renamed into the store as it is
    return path


# -- downloads: staged in <store>/tmp without the writer lock --------------------------------
#
# pip downloads for minutes, so it cannot hold the writer lock; but what it fetches belongs
# in tmp/, where gc and doctor see (and clear) what a killed install left. Each download
# directory is held with an exclusive flock on the directory itself, for as long as the
# process that made it -- or the pip it handed the descriptor to -- lives. gc and doctor
# --repair remove an entry of tmp/ only while they hold that flock themselves (claim_tmp).


class DownloadDir:
    """``with DownloadDir(store, "wheels-") as d:`` -- ``d.path``, held while in use; ``d.fd`` is
    the descriptor holding it (pass it to a subprocess that writes there: ``pass_fds``)."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self.path, self.fd = "", -1

    def __enter__(self) -> DownloadDir:
        import tempfile

        check_writable(self.store)
        while True:
            try:
                makedirs(self.store.tmp)
                path = tempfile.mkdtemp(prefix="dl-" + self.prefix, dir=self.store.tmp)
            except OSError as e:
                raise (store_oserror(self.store.root, e) or e) from None
            fd = _hold_dir(path)
            if fd is not None:
                self.path, self.fd = path, fd
                return self
            # a gc removed it between mkdtemp and the flock: make another

    def __exit__(self, *exc) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _hold_dir(path: str) -> int | None:
    """An fd holding ``path`` with an exclusive flock; None if ``path`` went away meanwhile."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; gc may remove a live download
        return -1
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        same = os.path.samestat(os.fstat(fd), os.lstat(path))
    except OSError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


class claim_tmp:
    """``with claim_tmp(path) as free:`` -- ``free`` is False while a live download holds the
    ``tmp/`` entry ``path``; when True the caller may remove it (we hold it until the block ends)."""

    def __init__(self, path: str) -> None:
        self.path, self.fd = path, -1

    def __enter__(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        try:
            self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                              | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return True  # a link, a FIFO, gone: nobody holds it
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def __exit__(self, *exc) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def tmp_in_use(path: str) -> bool:
    """Whether a live download holds the ``tmp/`` entry ``path`` (see :class:`DownloadDir`)."""
    with claim_tmp(path) as free:
        return not free


def write_atomic(store: Store, path: str, data: bytes, mode: int = 0o644, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` via a file in tmp/ and one rename (readers see all or nothing)."""
    fd, tmp = _create_tmp(store, "w-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        makedirs(os.path.dirname(path))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _create_tmp(store: Store, prefix: str) -> tuple[int, str]:
    """A new file ``<store>/tmp/<prefix>...`` (mode 0600, ``O_EXCL``), open for writing: what
    ``tempfile.mkstemp`` does, without importing ``tempfile`` (random, shutil, weakref...)."""
    makedirs(store.tmp)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = os.path.join(store.tmp, f"{prefix}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a temporary file in {store.tmp!r}")


def write_json_atomic(store: Store, path: str, data: dict, fsync: bool = True) -> None:
    """Write ``data`` as JSON to ``path``, atomically (and durably unless ``fsync=False``:
    manifests, registries)."""
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    write_atomic(store, path, text.encode("utf-8"), 0o644, fsync=fsync)


def sha256(data: bytes = b""):
    """``hashlib.sha256(data)``; before anything imported ``hashlib``, the interpreter's built-in
    implementation instead (same digests): importing ``hashlib`` loads OpenSSL, which costs more
    than a bubble from stored dists, and those only hash a few small manifests."""
    global _small_sha256
    if "hashlib" not in sys.modules:
        if _small_sha256 is None:
            try:
                from _sha2 import sha256 as small  # 3.12+
            except ImportError:
                try:
                    from _sha256 import sha256 as small  # 3.9-3.11
                except ImportError:
                    small = False
            _small_sha256 = small
        if _small_sha256:
            return _small_sha256(data)
    import hashlib

    return hashlib.sha256(data)


_small_sha256 = None


def put_object(store: Store, data: bytes, executable: bool = False) -> str:
    """Store ``data`` as an object unless it is there; return its sha256. Caller holds the lock."""
    sha = sha256(data).hexdigest()
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
    os.mkdir(dest, DIR_MODE)
    os.chmod(dest, DIR_MODE)
    made = {dest}
    for entry in files:
        parts = entry["path"].split("/")
        parent = dest
        for part in parts[:-1]:
            parent = os.path.join(parent, part)
            if parent not in made:
                makedirs(parent)
                made.add(parent)
        link_object(store, entry, os.path.join(parent, parts[-1]))
