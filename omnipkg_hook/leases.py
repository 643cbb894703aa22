"""Leases: a live process that imports from a dist keeps ``gc`` from removing it.

A lease is a shared ``flock(2)`` on the dist's ``omnipkg-dist.json``, taken with
:func:`hold` when a pin routes to the dist and kept, with its file descriptor,
for the life of the process. The kernel does the bookkeeping:

- a process that dies, however it dies, releases its leases (its fds close);
- a child made by ``fork`` shares the open file descriptions, so the lease lasts
  while either process lives; a child that ``exec``s does not inherit them
  (``O_CLOEXEC``) and takes its own when it pins (``OMNIPKG_PINS``) at start-up;
- nothing is written anywhere, so a lease costs a few system calls per dist.

``gc`` asks :func:`in_use` (an exclusive, non-blocking ``flock``) about each dist no
bubble references, and keeps -- with their objects -- the ones a live process holds.
It removes a dist while holding :func:`exclusive` on it, so a process cannot take a
lease on a dist that is being removed: :func:`hold` checks, once it has the lock,
that the manifest it locked is still the one at the dist's path, and reports the
dists it could not lease.

Standard library only (this runs inside pinned processes). Where ``fcntl`` does not
exist (Windows) leases are a no-op and ``gc`` relies on bubble references alone.
"""

from __future__ import annotations

import contextlib
import os

from .store import DIST_MANIFEST, Store

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["hold", "release", "held", "in_use", "exclusive"]

# dist directory -> fd holding the shared lock. pins adopts into it the leases that the
# start-up cache (omnipkg_hook.finder.load) takes without importing this module: keep the name.
_held: dict[str, int] = {}
_O_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _dir(store: Store | None, dist_dir: str) -> str:
    if store is not None and not os.path.isabs(dist_dir):
        return store.abspath(dist_dir)
    return dist_dir


def hold(store: Store | None, dist_dirs) -> list[str]:
    """Take a shared lease on each dist directory; return the ones that could not be leased.

    A dist not leased is gone (its manifest is missing, or ``gc`` moved it away while
    we waited): the caller treats it as a missing dist. Holding a dist twice is one
    lease. Relative paths (``dists/rich/13.4.2/py3-none-any``) are taken inside ``store``.
    """
    if fcntl is None:
        return []
    missing = []
    for d in dist_dirs:
        d = _dir(store, d)
        if d in _held:
            continue
        path = os.path.join(d, DIST_MANIFEST)
        try:
            fd = os.open(path, _O_FLAGS)
        except OSError:
            missing.append(d)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                # gc is deciding about this very dist right now; it holds the lock
                # only for one rename, so wait, then see where the dist went.
                fcntl.flock(fd, fcntl.LOCK_SH)
            st = os.fstat(fd)
            now = os.stat(path)
            if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                raise FileNotFoundError(path)
        except OSError:
            os.close(fd)
            missing.append(d)
            continue
        _held[d] = fd
    return missing


def release(dist_dirs=None) -> None:
    """Drop this process's leases on ``dist_dirs`` (all leases when None).

    Only closes the descriptors: a forked child that shares one keeps the lease alive.
    """
    for d in list(_held) if dist_dirs is None else [os.fspath(x) for x in dist_dirs]:
        fd = _held.pop(d, None)
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass


def held() -> list[str]:
    """The dist directories this process holds leases on."""
    return sorted(_held)


@contextlib.contextmanager
def exclusive(dist_dir: str):
    """``with exclusive(d) as free:`` -- ``free`` is False when a live process holds ``d``.

    While the block runs with ``free`` True, nobody can take a new lease on ``d``
    (:func:`hold` waits, then finds the dist gone if the block moved it away).
    A dist without a manifest is free (nobody can hold it).
    """
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(os.path.join(dist_dir, DIST_MANIFEST), _O_FLAGS)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free = True
        except BlockingIOError:
            free = False
        yield free
    finally:
        os.close(fd)


def in_use(dist_dir: str) -> bool:
    """True when a live process holds a lease on ``dist_dir``."""
    with exclusive(dist_dir) as free:
        return not free
