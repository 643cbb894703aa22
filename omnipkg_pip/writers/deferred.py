"""Stored later: the dists of a run's bubbles that the main environment has at the same version.

A bubble ``pip-omni run`` makes on demand (``install --no-compile --store-later``) does not
wait for the storing of a dist the main environment has at that very version (pygments for
rich, 350 files): the hook serves main's copy of such a dist whenever it satisfies the bubble
(rule 3 of :mod:`omnipkg_hook.resolve`), so while main keeps it the bubble's copy is never
read. The bubble is published without it: its manifest names it under ``"deferred"``
(version, tag, the wheel's file name and sha256, where it came from, its evaluated
requirements) instead of under ``"dists"``, and the wheel itself is kept, checked only as far
as its directory, METADATA and file names, in ``<store>/cache/deferred-wheels/<sha256>/``.
A mark ``<store>/cache/deferred/<interpreter key>/<root>@<version>`` is made before the
manifest is published.

:func:`complete` stores what was deferred and rewrites each such bubble whole, as
``bubbles.write_bubble`` would have written it (under the writer lock; the manifest by rename,
so a reader sees the bubble before or after, never between): the background compile after the
run (:mod:`.later`) runs it first, and so do every install that compiles and ``store
compile``, so what a run killed before its background step left is finished by the next one.
The kept wheel goes through :func:`.ingest.ingest_wheel` then, with every check a wheel gets,
after its sha256 is found to be the one recorded; a wheel that fails leaves the bubble as it
was, with one line saying why. Until then, should main stop serving the dist, the pin fails
in one line naming the command that finishes it (:mod:`omnipkg_hook.resolve`); export and
push refuse such a bubble (:func:`.archive.chosen_bubbles`).
"""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import OmnipkgError, WheelRejectedError
from omnipkg_hook.store import (
    DIST_MANIFEST,
    Store,
    WriteLock,
    file_sha256,
    make_tmpdir,
    read_manifest,
)

# Imported by every install (deferred.complete: a listdir when nothing waits): nothing beyond
# what the warm path has, shutil included (tests/cli/test_warm_path.py).
__all__ = ["light_manifest", "note", "marks", "complete", "sound", "kept_wheel", "kept_wheels_in_use", "MARKS",
           "WHEELS"]

MARKS = ("cache", "deferred")
WHEELS = ("cache", "deferred-wheels")


def _dir(store: Store, parts: tuple[str, ...]) -> str:
    return os.path.join(store.root, *parts)


def light_manifest(store: Store, wheel_path: str, origin: dict | None = None) -> dict:
    """What resolving the closure needs of a wheel whose storing is deferred (name, version,
    tag, requirements), read from its directory and METADATA only, and the wheel kept for
    :func:`complete`. The caller holds the write lock. Raises ``WheelRejectedError`` for an
    archive the ingest would refuse on sight (nothing is kept then)."""
    from .ingest import checked_metadata, open_checked, wheel_name

    filename = os.path.basename(wheel_path)
    name, version, tag = wheel_name(filename)
    with open_checked(wheel_path, filename) as zf:
        _wheel, meta = checked_metadata(zf, filename, name, version)
    sha = file_sha256(wheel_path)
    _keep(store, wheel_path, filename, sha)
    from omnipkg_hook.store import normalize

    return {
        "deferred": True, "name": normalize(name), "version": version, "tag": tag,
        "wheel": filename, "wheel_sha256": sha, "requires_dist": meta.get_all("Requires-Dist") or [],
        **({"origin": origin["url"]} if origin and origin.get("url") else {}),
    }


def _keep(store: Store, wheel_path: str, filename: str, sha: str) -> None:
    """``<store>/cache/deferred-wheels/<sha>/<filename>``, made in ``tmp/`` and renamed into
    place (a copy, or a hard link to a download the store's own ``tmp/`` holds)."""
    import shutil

    final = os.path.join(_dir(store, WHEELS), sha)
    if os.path.isfile(os.path.join(final, filename)):
        return
    os.makedirs(_dir(store, WHEELS), exist_ok=True)
    work = make_tmpdir(store, "deferred-")
    try:
        staged = os.path.join(work, filename)
        inside = os.path.realpath(wheel_path).startswith(os.path.realpath(store.tmp) + os.sep)
        try:
            if not inside:
                raise OSError("not the store's own download: copied")
            os.link(wheel_path, staged)
        except OSError:
            shutil.copyfile(wheel_path, staged)
        try:
            os.rename(work, final)
            work = None
        except OSError:  # made meanwhile by another bubble's deferral (the lock is re-entrant per thread only)
            if not os.path.isfile(os.path.join(final, filename)):
                raise
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


def note(store: Store, key: str, root: str, version: str) -> None:
    """Mark the bubble ``root==version`` of interpreter ``key`` as having deferred dists (before
    its manifest is published; the caller holds the write lock)."""
    base = os.path.join(_dir(store, MARKS), key)
    os.makedirs(base, exist_ok=True)
    try:
        os.close(os.open(os.path.join(base, f"{root}@{version}"),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644))
    except FileExistsError:
        pass


def marks(store: Store, key: str) -> list[tuple[str, str]]:
    """``(root, version)`` of interpreter ``key``'s bubbles marked as having deferred dists."""
    try:
        names = os.listdir(os.path.join(_dir(store, MARKS), key))
    except OSError:
        return []
    out = []
    for n in sorted(names):
        root, sep, version = n.partition("@")
        if sep and root and version and "@" not in version:
            out.append((root, version))
    return out


def _clear(store: Store, key: str, root: str, version: str) -> None:
    try:
        os.unlink(os.path.join(_dir(store, MARKS), key, f"{root}@{version}"))
    except FileNotFoundError:
        pass


def complete(store: Store, interpreter, *, quiet: bool = False, failed: list | None = None) -> list[str]:
    """Store the deferred dists of ``interpreter``'s marked bubbles and rewrite those bubbles
    complete. Returns the bubbles completed (``root==version``). A listdir when there is
    nothing to do; the lock is taken per bubble. A wheel that fails is one line on stderr
    (or ``(root==version, why)`` appended to ``failed``), and its bubble and mark stay as
    they were."""
    todo = marks(store, interpreter.key)
    if not todo:
        return []
    from omnipkg_hook.stdlib import stdlib_module_names

    from . import bubbles, bytecode
    from .ingest import ingest_wheel

    done = []
    stdlib = stdlib_module_names(interpreter.version_info)
    for root, version in todo:
        path = store.bubble_path(root, version, interpreter.key)
        try:
            with WriteLock(store):
                try:
                    m = read_manifest(path)
                except FileNotFoundError:  # uninstalled meanwhile
                    _clear(store, interpreter.key, root, version)
                    continue
                waiting = m.get("deferred") or {}
                if not isinstance(waiting, dict):
                    raise OmnipkgError("its record of what it deferred is damaged",
                                       f"`pip-omni uninstall {root}=={version}` and make the bubble again")
                added = {}
                for name, rec in sorted(waiting.items()):
                    if not sound(name, rec):
                        raise OmnipkgError(f"its record of the deferred {name!r} is damaged",
                                           f"`pip-omni uninstall {root}=={version}` and make the bubble again")
                    dist_dir = store.dist_path(name, rec["version"], rec["tag"])
                    kept = kept_wheel(store, rec)
                    stored = os.path.join(dist_dir, DIST_MANIFEST)
                    if os.path.isfile(kept):
                        found = file_sha256(kept)
                        if found != rec["wheel_sha256"]:
                            raise WheelRejectedError(f"rejected {rec['wheel']!r}: sha256 {found}, not the "
                                                     f"{rec['wheel_sha256']} recorded when it was kept; nothing stored")
                        # every check of a wheel; a dist stored meanwhile is checked to be this wheel's
                        dm = ingest_wheel(store, kept, interpreter, compile=False,
                                          origin={"url": rec["origin"]} if rec.get("origin") else None)
                    elif os.path.exists(stored):
                        dm = read_manifest(stored)
                    else:
                        raise OmnipkgError(f"the kept wheel {rec['wheel']!r} is gone",
                                           f"`pip-omni uninstall {root}=={version}` and make the bubble again")
                    if (dm["name"], dm["version"], dm["tag"]) != (name, rec["version"], rec["tag"]):
                        raise WheelRejectedError(f"rejected {rec['wheel']!r}: it holds {dm['name']} {dm['version']} "
                                                 f"{dm['tag']}, not what was deferred")
                    added[name] = bubbles.dist_entry(store, dm, rec.get("requires", {}), stdlib,
                                                     interpreter.cache_tag)
                if added:
                    m["dists"] = dict(sorted({**m["dists"], **added}.items()))
                m.pop("deferred", None)
                bytecode.note_pending(store, [store.abspath(e["path"]) for e in added.values()
                                              if "pyc_manifest" not in e], interpreter.key)
                from omnipkg_hook.store import write_json_atomic

                write_json_atomic(store, path, m, fsync=False)  # by rename: the bubble before or after
                _clear(store, interpreter.key, root, version)
                done.append(f"{root}=={version}")
        except (OmnipkgError, OSError, ValueError, KeyError, TypeError) as e:
            text = getattr(e, "message", None) or str(e)
            if failed is not None:
                failed.append((f"{root}=={version}", text))
            elif not quiet:
                print(f"pip-omni: could not store what the bubble {root}=={version} deferred: {text}",
                      file=sys.stderr)
    _sweep(store)
    return done


def sound(name: str, rec) -> bool:
    """A deferred record names a plain wheel file and a sha256 (they become a path)."""
    plain = lambda v: isinstance(v, str) and v and "/" not in v and "\\" not in v and not v.startswith(".")  # noqa: E731
    sha = rec.get("wheel_sha256") if isinstance(rec, dict) else None
    return (isinstance(rec, dict) and plain(name) and plain(rec.get("version")) and plain(rec.get("tag"))
            and plain(rec.get("wheel")) and rec["wheel"].endswith(".whl")
            and isinstance(sha, str) and len(sha) == 64 and set(sha) <= set("0123456789abcdef")
            and isinstance(rec.get("requires", {}), dict))


def kept_wheel(store: Store, rec: dict) -> str:
    """Where the wheel of a :func:`sound` deferred record is kept."""
    return os.path.join(_dir(store, WHEELS), rec["wheel_sha256"], rec["wheel"])


def kept_wheels_in_use(store: Store) -> set[str] | None:
    """The sha256 of the kept wheels a marked bubble of any interpreter still defers; None when
    a marked bubble's record cannot be read (then nothing is known to be unused)."""
    import json

    used = set()
    base = _dir(store, MARKS)
    for key in _listdir(base):
        for root, version in marks(store, key):
            try:
                with open(store.bubble_path(root, version, key), encoding="utf-8") as f:
                    waiting = json.load(f).get("deferred") or {}
                if not all(sound(name, rec) for name, rec in waiting.items()):
                    return None
                used.update(rec["wheel_sha256"] for rec in waiting.values())
            except FileNotFoundError:
                continue  # removed: its mark goes at the next complete()
            except (OSError, ValueError, AttributeError):
                return None
    return used


def _sweep(store: Store) -> None:
    """Remove the kept wheels no marked bubble defers any more (under the lock, taken here)."""
    base = _dir(store, WHEELS)
    if not _listdir(base):
        return
    import shutil

    with WriteLock(store):
        used = kept_wheels_in_use(store)
        if used is None:
            return
        for sha in _listdir(base):
            if sha not in used:
                shutil.rmtree(os.path.join(base, sha), ignore_errors=True)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
