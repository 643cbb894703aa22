"""``pip-omni doctor``: check the whole store, report every problem once, repair on request.

What is checked (``Report.problems``; every problem found before any is reported):

===================  ========================================================================
kind                 meaning
===================  ========================================================================
``object-corrupt``   an object's bytes do not match its name. Full check: rehashed. Quick
                     check: its size differs from a manifest's, or it was modified after a
                     dist naming it was published (an edit in place through a hard link, which
                     changes the file for every dist that shares the object).
``object-missing``   a manifest names an object that is not in ``objects/``.
``object-stray``     a file in ``objects/`` whose name is not a sha256.
``dist-manifest``    a dist directory whose ``omnipkg-dist.json`` (or a ``.pyc`` manifest)
                     is missing, damaged, or describes another dist.
``dist-tampered``    a dist whose ``omnipkg-dist.json`` (or this interpreter's ``.pyc``
                     manifest) does not hash to what a bubble recorded when it was made: it
                     was replaced. Never trusted: ``--repair`` sets the dist aside and
                     rebuilds it from the recorded manifest, never from the one found.
``file-missing``     a file of a dist's manifests is not in the dist directory.
``file-changed``     a dist file whose bytes are not its object's (size, mtime, or full rehash).
``file-unlinked``    a dist file that is no longer a hard link to its object.
``file-extra``       a file in a dist directory that no manifest lists.
``bubble-damaged``   a bubble manifest that cannot be read, or names a path outside ``dists/``.
``bubble-dist``      a bubble names a dist that is missing or has another version, or (this
                     interpreter's bubbles) one not compiled for this interpreter.
``bubble-deferred``  a bubble ``pip-omni run`` made waits for a dist to be stored (one the
                     main environment has at that version, :mod:`omnipkg_pip.writers.deferred`)
                     and cannot wait any more: its kept wheel is gone or has other bytes, or
                     (this interpreter's bubbles) main no longer has that version, so the pin
                     fails until it is stored. ``--repair`` stores it. A bubble that merely
                     waits is no problem: a note counts them.
``tmp-leftover``     staging left in ``tmp/`` by an interrupted writer (doctor holds the
                     writer lock, so nothing in ``tmp/`` is in use). Not a problem: no
                     reader ever looks there, so a store after ``kill -9`` of an install
                     is clean (DESIGN.md). Listed as ``leftovers``; ``--repair`` and ``gc``
                     clear them.
``main-env``         something of pip-omni's in the running interpreter's main environment:
                     a store dist's metadata, a renamed folder, a ``.pth`` into the store,
                     two metadata directories for one distribution (:mod:`.mainenv`).
===================  ========================================================================

``quick`` checks by ``stat`` only (sizes, inodes, mtimes: manifests are written after the
objects they name, and objects never change). The default rehashes every object and every
dist file that is not a hard link to its object. ``--repair`` is :mod:`omnipkg_pip.integrity.healing`.
Everything runs under the store's writer lock; readers (pinned processes) never wait.

``--json`` prints one object::

    {"store": str, "mode": "quick" | "full", "clean": bool,
     "counts": {"objects": int, "dists": int, "bubbles": int, "files": int, "hashed_bytes": int},
     "problems": [{"kind": str, "path": str, "file": str | null, "detail": str}],
     "leftovers": [problem, ...],       # tmp-leftover entries: harmless, not counted in "clean"
     "actions": [{"action": str, "path": str, "detail": str}],     # --repair only, else []
     "remaining": [problem, ...],       # after --repair; without it the same as "problems"
     "waiting": {bubble path: [dist name, ...]},   # stored later (pip-omni run), not yet stored
     "notes": [str], "seconds": float,
     "sources": [{"path": str, "wheel": str | null, "wheel_sha256": str | null, "origin": str | null}]}

``sources`` says where each dist came from: the wheel file it was made from, that wheel's
sha256 (a wheel with other files under the same name, version and tag is refused at
ingest), and the index URL or local path when it was recorded (``origin``). ``-v`` prints it.

``path`` is relative to the store (``objects/ab/cd...``, ``dists/rich/13.4.2/py3-none-any``,
``bubbles/rich/13.4.2/<key>.json``, ``tmp/...``), absolute for ``main-env``. ``clean`` is
true when nothing remains; the command exits 1 otherwise.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from dataclasses import asdict, dataclass, field

from omnipkg_hook import distnames
from omnipkg_hook.errors import StoreCorruptError
from omnipkg_hook.store import (
    DIST_MANIFEST,
    Store,
    file_sha256,
    interpreter_key,
    read_manifest,
    tmp_in_use,
)

from ..text import plural
from ..writers.layout import (
    PYC_PREFIX,
    PYC_SUFFIX,
    dist_links,
    entry_ok,
    manifest_problem,
    object_sha,
    safe_rel,
    walk_dists,
)
from . import mainenv

__all__ = ["KINDS", "Problem", "Report", "Scanner", "check"]

KINDS = (
    "object-corrupt", "object-missing", "object-stray", "dist-manifest", "dist-tampered", "file-missing",
    "file-changed", "file-unlinked", "file-extra", "bubble-damaged", "bubble-dist",
    "tmp-leftover", "main-env",
)  # fmt: skip

_OBJECT_NAME = re.compile(r"^[0-9a-f]{62}x?$")
_PREFIX = re.compile(r"^[0-9a-f]{2}$")


@dataclass
class Problem:
    kind: str
    path: str
    detail: str
    file: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        where = f"{self.path}: {self.file}" if self.file else self.path
        return f"{self.kind:15} {where}: {self.detail}"


@dataclass
class Dist:
    """One dist directory as the check found it."""

    rel: str
    path: str
    manifest: dict | None = None
    manifest_mtime: int = 0
    manifest_sha: str | None = None  # sha256 of omnipkg-dist.json as found
    pyc: dict = field(default_factory=dict)  # cache tag -> (pyc manifest, mtime_ns)
    pyc_sha: dict = field(default_factory=dict)  # cache tag -> sha256 of its .pyc manifest
    bad_pyc: list = field(default_factory=list)  # pyc manifest file names that cannot be read
    problems: list = field(default_factory=list)

    def entries(self):
        """Every (entry, mtime of the manifest listing it) of the dist and its .pyc manifests."""
        if self.manifest is not None:
            for e in self.manifest["files"]:
                yield e, self.manifest_mtime
        for m, mtime in self.pyc.values():
            for e in m["files"]:
                yield e, mtime


@dataclass
class Report:
    store: str
    mode: str
    problems: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    dists: dict = field(default_factory=dict)  # rel -> Dist
    bubbles: list = field(default_factory=list)  # (rel, manifest or None)
    refs: dict = field(default_factory=dict)  # object path -> [(dist rel, file, manifest mtime, size)]
    leftovers: list = field(default_factory=list)  # tmp-leftover: harmless, cleared by --repair
    waiting: dict = field(default_factory=dict)  # bubble rel -> the dists it waits for (stored later)

    def by_kind(self, *kinds) -> list:
        return [p for p in self.problems + self.leftovers if p.kind in kinds]


class Scanner:
    """Reads the store and finds problems. ``verified`` (object path -> (ino, size, mtime)) are
    objects already rehashed and found good; a second check skips them while they are unchanged."""

    def __init__(self, store: Store, full: bool) -> None:
        self.store = store
        self.full = full
        self.verified: dict[str, tuple] = {}
        self._ostat: dict[str, os.stat_result | None] = {}
        self.hashed = 0

    # -- objects ---------------------------------------------------------------------------

    def forget_stats(self) -> None:
        """Objects changed (a repair): stat them afresh."""
        self._ostat.clear()

    def ostat(self, obj: str):
        if obj not in self._ostat:
            try:
                self._ostat[obj] = os.stat(obj)
            except OSError:
                self._ostat[obj] = None
        return self._ostat[obj]

    def object_good(self, obj: str) -> bool | None:
        """Rehash ``obj``: True/False, None when it cannot be read."""
        st = self.ostat(obj)
        if st is None:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self.verified.get(obj) == stamp:
            return True
        try:
            good = file_sha256(obj) == object_sha(obj)
        except OSError:
            return None
        self.hashed += st.st_size
        if good:
            self.verified[obj] = stamp
        return good

    def scan_objects(self, report: Report) -> int:
        count = 0
        rel = os.path.relpath
        for prefix in _ls(self.store.objects):
            pdir = os.path.join(self.store.objects, prefix)
            if not _PREFIX.match(prefix) or not os.path.isdir(pdir):
                report.problems.append(Problem("object-stray", rel(pdir, self.store.root), "not an object directory"))
                continue
            for name in _ls(pdir):
                obj = os.path.join(pdir, name)
                if not _OBJECT_NAME.match(name):
                    report.problems.append(Problem("object-stray", rel(obj, self.store.root), "not a sha256 name"))
                    continue
                count += 1
                if self.full and self.object_good(obj) is False:
                    report.problems.append(Problem(
                        "object-corrupt", rel(obj, self.store.root),
                        "its bytes do not match its name (edited in place through a hard link?)" + _sharers(report, obj),
                    ))  # fmt: skip
        return count

    # -- dists -----------------------------------------------------------------------------

    def load_dist(self, rel: str) -> Dist:
        path = self.store.abspath(rel)
        d = Dist(rel, path)
        mpath = os.path.join(path, DIST_MANIFEST)
        try:
            d.manifest = read_manifest(mpath)
            d.manifest_mtime = os.stat(mpath).st_mtime_ns
            d.manifest_sha = file_sha256(mpath)  # a small file: what bubbles recorded is checked against it
            problem = manifest_problem(d.manifest, rel)
        except FileNotFoundError:
            problem = f"{DIST_MANIFEST} is missing"
        except (OSError, StoreCorruptError) as e:
            problem = f"{DIST_MANIFEST} cannot be read ({getattr(e, 'message', e)})"
        if problem:
            d.manifest = None
            d.problems.append(Problem("dist-manifest", rel, problem, DIST_MANIFEST))
            return d
        for name in _ls(path):
            if not (name.startswith(PYC_PREFIX) and name.endswith(PYC_SUFFIX)):
                continue
            tag = name[len(PYC_PREFIX):-len(PYC_SUFFIX)]
            try:
                m = read_manifest(os.path.join(path, name))
                if not isinstance(m.get("files"), list) or not all(entry_ok(e) for e in m["files"]):
                    raise StoreCorruptError("its file list is damaged")
                reserved = distnames.file_list_problem(m["files"], tag)
                if reserved:
                    raise StoreCorruptError(f"it lists a file that is not a .pyc of its own ({reserved})")
                d.pyc[tag] = (m, os.stat(os.path.join(path, name)).st_mtime_ns)
                d.pyc_sha[tag] = file_sha256(os.path.join(path, name))
            except (OSError, StoreCorruptError) as e:
                d.bad_pyc.append(name)
                d.problems.append(Problem("dist-manifest", rel, f"cannot be read ({getattr(e, 'message', e)})", name))
        return d

    def check_dist(self, d: Dist, report: Report | None = None) -> list:
        """Problems of the files of ``d`` (appended to ``d.problems`` and returned)."""
        if d.manifest is None:
            return d.problems
        expected: dict[str, tuple] = {}
        for e, mtime in d.entries():
            expected[e["path"]] = (e, mtime)
        found = _walk_files(d.path)
        allowed = {DIST_MANIFEST, *(PYC_PREFIX + t + PYC_SUFFIX for t in d.pyc), *d.bad_pyc}
        unlisted = {f".{n[len(PYC_PREFIX):-len(PYC_SUFFIX)]}.pyc" for n in d.bad_pyc}  # the damaged manifest's own
        for rel in sorted(found - set(expected) - allowed):
            if not (unlisted and "__pycache__/" in rel and rel.endswith(tuple(unlisted))):
                d.problems.append(Problem("file-extra", d.rel, "no manifest lists it", rel))
        lstat = os.lstat
        for rel, (e, mtime) in expected.items():
            obj = self.store.object_path(e["sha256"], bool(e.get("mode", 0o644) & 0o111))
            if report is not None:
                report.refs.setdefault(obj, []).append((d.rel, rel, mtime, e["size"]))
            try:
                st = lstat(d.path + "/" + rel)
            except OSError:
                d.problems.append(Problem("file-missing", d.rel, "missing", rel))
                continue
            if not stat.S_ISREG(st.st_mode):
                d.problems.append(Problem("file-changed", d.rel, "not a regular file", rel))
                continue
            ost = self.ostat(obj)
            if ost is not None and (ost.st_ino, ost.st_dev) == (st.st_ino, st.st_dev):
                continue  # the object itself; object problems are reported once, per object
            if st.st_size != e["size"] or st.st_mtime_ns > mtime:
                why = f"{st.st_size} bytes, not {e['size']}" if st.st_size != e["size"] else "modified after it was published"
                d.problems.append(Problem("file-changed", d.rel, why, rel))
                continue
            if self.full:
                try:
                    good = file_sha256(d.path + "/" + rel) == e["sha256"]
                    self.hashed += st.st_size
                except OSError:
                    good = False
                if not good:
                    d.problems.append(Problem("file-changed", d.rel, "its bytes are not the manifest's", rel))
                    continue
            if ost is not None:
                d.problems.append(Problem("file-unlinked", d.rel, "not a hard link to its object any more", rel))
        return d.problems

    def object_problems(self, report: Report) -> None:
        """``object-missing`` and (by stat) ``object-corrupt`` for every object a manifest names."""
        seen = {p.path for p in report.by_kind("object-corrupt")}
        cut = len(self.store.root) + 1
        for obj, refs in sorted(report.refs.items()):
            rel = obj[cut:]
            st = self.ostat(obj)
            if st is None:
                report.problems.append(Problem("object-missing", rel, "named by a manifest, not in objects/" + _sharers(report, obj)))
                continue
            if rel in seen:
                continue
            sizes = {size for _, _, _, size in refs}
            oldest = min(mtime for _, _, mtime, _ in refs)  # objects are written before manifests
            suspect = None
            if st.st_size not in sizes:
                suspect = f"{st.st_size} bytes, the manifests say {min(sizes)}"
            elif st.st_mtime_ns > oldest:
                suspect = "modified after a dist naming it was published"
            if suspect and (not self.full or self.object_good(obj) is False):
                report.problems.append(Problem(
                    "object-corrupt", rel,
                    f"{suspect} (edited in place through a hard link?)" + _sharers(report, obj),
                ))  # fmt: skip
                seen.add(rel)

    # -- bubbles ---------------------------------------------------------------------------

    def main_serves(self, name: str, version) -> bool:
        """Whether this interpreter's main environment has ``name`` at ``version`` (so its
        bubble copy is left uncompiled on purpose: ``omnipkg_pip.writers.bytecode``)."""
        main = getattr(self, "_main", None)
        if main is None:
            from omnipkg_hook.store import main_versions

            main = self._main = {n: v for n, (v, _where) in main_versions(exclude=self.store.root).items()}
        return main.get(name) == version

    def scan_bubbles(self, report: Report) -> None:
        key = interpreter_key()
        tag = sys.implementation.cache_tag
        flagged: set[str] = set()
        for _name, _version, k, path in self.store.iter_bubbles():
            rel = os.path.relpath(path, self.store.root)
            try:
                m = read_manifest(path)
                dists = m["dists"]
                if not isinstance(dists, dict) or not all(
                    isinstance(e, dict) and isinstance(e.get("path"), str) and e["path"].startswith("dists/")
                    and safe_rel(e["path"]) for e in dists.values()
                ):
                    raise StoreCorruptError("its list of dists is damaged or names a path outside dists/")
            except (OSError, StoreCorruptError, KeyError, TypeError) as e:
                report.bubbles.append((rel, None))
                report.problems.append(Problem("bubble-damaged", rel, f"cannot be used ({getattr(e, 'message', e)})"))
                continue
            report.bubbles.append((rel, m))
            for dname, entry in sorted(dists.items()):
                d = report.dists.get(entry["path"])
                tampered = tampered_with(d, entry, tag if k == key else None) if d is not None else None
                if tampered and entry["path"] not in flagged:
                    flagged.add(entry["path"])
                    name, found, recorded = tampered
                    report.problems.append(Problem(
                        "dist-tampered", entry["path"], f"sha256 {found}, not the {recorded} recorded when {rel} "
                        "was made: replaced; not trusted (`--repair` rebuilds the dist from the record)", name,
                    ))  # fmt: skip
                if d is None:
                    report.problems.append(Problem("bubble-dist", rel, f"{dname} {entry.get('version')}: {entry['path']} is missing"))
                elif d.manifest is not None and d.manifest.get("version") != entry.get("version"):
                    report.problems.append(Problem(
                        "bubble-dist", rel, f"{dname}: {entry['path']} holds version {d.manifest.get('version')}, "
                        f"not {entry.get('version')}",
                    ))  # fmt: skip
                elif k == key and d.manifest is not None and tag not in d.pyc and (
                    PYC_PREFIX + tag + PYC_SUFFIX) not in d.bad_pyc and not self.main_serves(dname, entry.get("version")):
                    # (a dist main has at this version is compiled only once main stops serving it)
                    report.problems.append(Problem("bubble-dist", rel, f"{dname}: {entry['path']} is not compiled for {tag}"))
            if m.get("deferred") is not None:
                self._waiting(report, rel, m, k == key)

    def _waiting(self, report: Report, rel: str, m: dict, ours: bool) -> None:
        """The dists a bubble waits for to be stored (``"deferred"``): a problem only where
        they cannot wait (see ``bubble-deferred``)."""
        from ..writers import deferred

        waiting = m["deferred"]
        if not isinstance(waiting, dict) or not all(deferred.sound(n, r) for n, r in waiting.items()):
            report.problems.append(Problem("bubble-damaged", rel, "its record of the dists it waits for is damaged; "
                                           "uninstall that version and make the bubble again"))
            return
        report.waiting[rel] = sorted(waiting)
        for dname, rec in sorted(waiting.items()):
            if os.path.isfile(os.path.join(self.store.dist_path(dname, rec["version"], rec["tag"]), DIST_MANIFEST)):
                continue  # stored meanwhile (another bubble): completing it takes that dist
            kept = deferred.kept_wheel(self.store, rec)
            what = f"{dname} {rec['version']}, waiting to be stored"
            if not os.path.isfile(kept):
                report.problems.append(Problem("bubble-deferred", rel, f"{what}: its kept wheel "
                                               f"{os.path.relpath(kept, self.store.root)} is gone; uninstall that "
                                               "version and make the bubble again", rec["wheel"]))
                continue
            if self.full:
                found = file_sha256(kept)
                self.hashed += os.path.getsize(kept)
                if found != rec["wheel_sha256"]:
                    report.problems.append(Problem("bubble-deferred", rel, f"{what}: its kept wheel has sha256 "
                                                   f"{found}, not the {rec['wheel_sha256']} recorded; not trusted",
                                                   rec["wheel"]))
                    continue
            if ours and not self.main_serves(dname, rec["version"]):
                report.problems.append(Problem("bubble-deferred", rel, f"{what}: the main environment no longer has "
                                               "that version, so the pin fails until it is stored (`--repair` or "
                                               "`pip-omni store compile`)", rec["wheel"]))


def waiting_notes(waiting: dict) -> list[str]:
    """The note on the bubbles that wait for a dist to be stored (``Report.waiting``), if any."""
    if not waiting:
        return []
    n = sum(len(v) for v in waiting.values())
    waits = "waits" if len(waiting) == 1 else "wait"
    return [f"{plural(len(waiting), 'bubble')} of `pip-omni run` {waits} for {plural(n, 'dist')} the main "
            "environment has at that version to be stored; its background step, `pip-omni store compile` or "
            "`doctor --repair` stores them"]


def tampered_with(d: Dist, entry: dict, cache_tag: str | None) -> tuple[str, str, str] | None:
    """``(file name, sha256 found, sha256 recorded)`` of the first of ``d``'s manifests that is
    not what the bubble ``entry`` recorded (its ``.pyc`` manifest only for ``cache_tag``, the
    bubble's own interpreter), or None."""
    checks = [("manifest", DIST_MANIFEST, d.manifest_sha)]
    if cache_tag is not None and cache_tag in d.pyc_sha:
        checks.append(("pyc_manifest", distnames.pyc_manifest_name(cache_tag), d.pyc_sha[cache_tag]))
    for key, name, found in checks:
        recorded = entry.get(key)
        if recorded and found and found != recorded:
            return name, found, recorded
    return None


def _sharers(report: Report, obj: str) -> str:
    refs = report.refs.get(obj)
    if not refs:
        return ""
    shown = ", ".join(f"{d}/{f}" for d, f, _, _ in refs[:3])
    more = f" and {len(refs) - 3} more" if len(refs) > 3 else ""
    return f"; used by {shown}{more}"


def _ls(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _walk_files(root: str) -> set[str]:
    """Every non-directory under ``root``, as "/"-joined relative paths."""
    out = set()
    stack = [("", root)]
    while stack:
        prefix, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((rel + "/", entry.path))
            else:
                out.add(rel)
    return out


# -- the whole check -----------------------------------------------------------------------


def check(store: Store, *, full: bool = True, scanner: Scanner | None = None, main: bool = True) -> Report:
    """Check ``store`` (the caller holds its writer lock). Returns every problem found."""
    scanner = scanner or Scanner(store, full)
    scanner.forget_stats()
    scanner.hashed = 0
    report = Report(store.root, "full" if full else "quick")
    for rel, target in dist_links(store):
        report.problems.append(Problem("dist-manifest", rel, f"a symbolic link (to {target!r}), never followed: "
                                       "pip-omni makes none; --repair sets it aside and rebuilds what bubbles name"))
    for rel, _path in walk_dists(store):
        d = scanner.load_dist(rel)
        report.dists[rel] = d
        scanner.check_dist(d, report)
        report.problems += d.problems
    report.counts["objects"] = scanner.scan_objects(report)
    scanner.object_problems(report)
    scanner.scan_bubbles(report)
    for entry in _ls(store.tmp):
        if tmp_in_use(os.path.join(store.tmp, entry)):
            continue  # a download in progress (omnipkg_hook.store.DownloadDir), not a leftover
        report.leftovers.append(Problem("tmp-leftover", f"tmp/{entry}", "left by an interrupted writer"))
    if report.leftovers:
        report.notes.append(f"{plural(len(report.leftovers), 'staging leftover')} in tmp/ from interrupted writers: "
                            "harmless; `pip-omni gc` or `doctor --repair` removes them")
    if main:
        problems, notes = mainenv.check_main(store)
        report.problems += [Problem("main-env", path, detail) for path, detail in problems]
        report.notes += notes
    q = os.path.join(store.root, "quarantine")
    if os.path.isdir(q) and _ls(q):
        report.notes.append(f"{q} holds what earlier repairs set aside; delete it when you no longer need it")
    report.counts.update(
        dists=len(report.dists), bubbles=len(report.bubbles),
        files=sum(len(r) for r in report.refs.values()), hashed_bytes=scanner.hashed,
    )  # fmt: skip
    return report


