"""Where the daemon lives on disk, who may talk to it, and with which key.

::

    <base>/                      0700, owned by the user (checked; refused otherwise)
      key                        0600, 32 random bytes as hex: the per-user HMAC key
      d-<sha256(store)[:12]>/    0700: one daemon per store
        sock                     0600 AF_UNIX listening socket
        pid                      the daemon's pid (informational; liveness is the lock)
        lock                     held (flock) by the running daemon for its whole life
        start.lock               serialises clients that start the daemon on demand
        log                      the daemon's and its workers' stderr

``<base>`` is ``$OMNIPKG_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/pip-omni``, else
``<tempdir>/pip-omni-<uid>``. Each directory is made with mode 0700; an existing one
must be a real directory (not a symlink) owned by the current user with no group or
other permissions, or :class:`~omnipkg_hook.errors.DaemonError` is raised -- in a
shared temp dir another user could have made it first.

A stale ``sock`` or ``pid`` (the daemon was killed) never blocks: the ``lock`` is free,
so the next daemon removes them and starts. Peer credentials: Linux ``SO_PEERCRED``,
macOS ``LOCAL_PEERCRED``; elsewhere :func:`peer_uid` returns ``None`` and the check is
skipped (the directory modes and the HMAC handshake still stand).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import sys
import time

from ..errors import DaemonError

__all__ = [
    "Paths",
    "runtime_base",
    "secure_dir",
    "load_key",
    "peer_uid",
    "read_rss",
    "FileLock",
    "MAX_SOCKET_PATH",
]

MAX_SOCKET_PATH = 104 if sys.platform == "darwin" else 108


def runtime_base() -> str:
    env = os.environ.get("OMNIPKG_RUNTIME_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "pip-omni")
    import tempfile  # here: it imports random, shutil... (~4 ms) and most callers have an answer above

    return os.path.join(tempfile.gettempdir(), f"pip-omni-{os.getuid()}")


def secure_dir(path: str) -> str:
    """Make ``path`` (mode 0700) or check that the existing one is ours and private."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        return secure_dir(path)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise DaemonError(
            f"runtime directory {path!r} is not a directory (a symlink or a file)",
            "remove it, or set OMNIPKG_RUNTIME_DIR to a private directory",
        )
    if st.st_uid != os.geteuid():
        raise DaemonError(
            f"runtime directory {path!r} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})",
            "someone else made it first; set OMNIPKG_RUNTIME_DIR to a private directory",
        )
    if st.st_mode & 0o077:
        raise DaemonError(
            f"runtime directory {path!r} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700",
            f"run `chmod 700 {path}`, or set OMNIPKG_RUNTIME_DIR to a private directory",
        )
    return path


class Paths:
    """The files of the daemon of one store."""

    def __init__(self, store: str, base: str | None = None) -> None:
        self.store = os.path.abspath(store)
        self.base = os.path.abspath(base) if base else runtime_base()
        from ..store import sha256  # the built-in sha256: hashlib would load OpenSSL

        digest = sha256(os.fsencode(self.store)).hexdigest()[:12]
        self.dir = os.path.join(self.base, "d-" + digest)
        self.key = os.path.join(self.base, "key")
        self.socket = os.path.join(self.dir, "sock")
        self.pid = os.path.join(self.dir, "pid")
        self.lock = os.path.join(self.dir, "lock")
        self.start_lock = os.path.join(self.dir, "start.lock")
        self.log = os.path.join(self.dir, "log")

    def __repr__(self) -> str:
        return f"Paths(store={self.store!r}, dir={self.dir!r})"

    def prepare(self) -> Paths:
        """Create (or check) the private directories; check the socket path fits."""
        secure_dir(self.base)
        secure_dir(self.dir)
        if len(os.fsencode(self.socket)) >= MAX_SOCKET_PATH:
            raise DaemonError(
                f"socket path {self.socket!r} is longer than a unix socket allows ({MAX_SOCKET_PATH - 1} bytes)",
                "set OMNIPKG_RUNTIME_DIR to a shorter directory",
            )
        return self

    def read_pid(self) -> int | None:
        try:
            with open(self.pid) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None


def load_key(path: str, create: bool = True) -> bytes:
    """The per-user key; made once (atomically, 0600) when missing and ``create``."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            if not create:
                raise DaemonError(f"no daemon key at {path!r}", "start the daemon: `pip-omni daemon start`") from None
            _create_key(path)
            continue
        except OSError as e:
            raise DaemonError(f"cannot read the daemon key {path!r}: {e.strerror}", "remove it; a new one is made") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o077 or not stat.S_ISREG(st.st_mode):
                raise DaemonError(
                    f"daemon key {path!r} must be a regular file of yours with mode 0600 "
                    f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o})",
                    "remove it; a new one is made",
                )
            data = f.read(200).strip()
        try:
            key = bytes.fromhex(data.decode("ascii"))
        except ValueError:
            key = b""
        if len(key) < 32:
            raise DaemonError(f"daemon key {path!r} is damaged", "remove it; a new one is made")
        return key
    raise DaemonError(f"cannot create the daemon key {path!r}")


def _create_key(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(32).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process made the key first: then we use theirs
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of an AF_UNIX socket, or None if unknown."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux: struct ucred {pid, uid, gid}
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", raw)[1]
    if sys.platform == "darwin":  # LOCAL_PEERCRED at SOL_LOCAL: struct xucred {u_int version; uid_t uid; ...}
        try:
            raw = sock.getsockopt(0, 0x001, 76)
            return struct.unpack_from("Ii", raw)[1]
        except OSError:
            return None
    return None


def read_rss(pid: int) -> int | None:
    """Resident memory of ``pid`` in bytes (``VmRSS`` from /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class FileLock:
    """An exclusive ``flock`` on a file that is never deleted. ``acquire(blocking)``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.fd = fd
                return True
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if not blocking or (deadline is not None and time.monotonic() >= deadline):
                os.close(fd)
                return False
            time.sleep(0.01)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock (checked by trying to take it)."""
        if self.acquire(blocking=False):
            self.release()
            return False
        return True
