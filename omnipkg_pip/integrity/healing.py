"""``pip-omni doctor --repair``: put right what :mod:`omnipkg_pip.integrity.doctor` found.

Nothing is ever deleted: whatever is replaced or removed is first set aside under
``<store>/quarantine/<timestamp>/``, at the same relative path it had in the store
(``quarantine/<ts>/objects/ab/cd...``, ``quarantine/<ts>/dists/rich/13.4.2/py3-none-any``).
Every change is a rename (or a hard link, then a rename), so a repair killed at any
moment leaves a store that the next ``doctor --repair`` finishes. In order:

1. staging left in ``tmp/`` and stray files in ``objects/`` are set aside;
2. each corrupt object is set aside and made again, by preference from a good copy
   already on disk (the same bytes under the other mode's name, or a dist file that
   is a copy and still hashes right), else from the dist's wheel fetched again and
   checked against the ``wheel_sha256`` its manifest recorded: from where the store got
   it (``origin``: a local file is copied, a URL is fetched by ``pip download``), else by
   name and version from the index pip is configured with now;
   a missing object likewise (a dist file still linked to it is the good copy);
3. each damaged dist directory is rebuilt from objects in ``tmp/`` and swapped in
   (``renameat2(RENAME_EXCHANGE)`` where Linux has it: there is no moment without
   the dist); its manifest file is linked, not copied, so leases held on it stay
   valid. A ``.pyc`` manifest whose objects cannot be had is dropped and the dist
   compiled again for the interpreters its bubbles name. A dist whose manifest is
   gone gets it back from the bubble's record of it, the quarantine, or the wheel;
   a dist whose manifest is not the one its bubbles recorded (``dist-tampered``) is
   set aside whole and rebuilt from the record: repair trusts only what was recorded
   when the bubble was made, never a list found in the store. Every file it makes is
   new (a link to an object, or an object linked): nothing is opened for writing in a
   dist, so nothing is written through a hard link;
4. what this interpreter's bubbles wait for is stored (``pip-omni run``'s bubbles, for a
   dist the main environment has at that version: :mod:`omnipkg_pip.writers.deferred`);
5. a damaged bubble manifest is made again from the dists in the store (bubbles of
   this interpreter), else set aside with the command that reinstalls it, and what this
   interpreter's bubbles name is compiled for it.

The main environment is never changed: its problems are reported with what to do.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import sys
import time

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import (
    DIST_MANIFEST,
    Store,
    interpreter_key,
    make_tmpdir,
    makedirs,
    materialize,
    normalize,
    put_object,
    read_manifest,
)

from ..writers.layout import (
    PYC_PREFIX,
    PYC_SUFFIX,
    dist_links,
    manifest_problem,
    materialize_into,
    object_sha,
)
from .doctor import Dist, Report, Scanner, file_sha256, tampered_with

__all__ = ["repair"]


def repair(store: Store, report: Report, scanner: Scanner, log=None) -> list[dict]:
    """Repair what ``report`` found (the caller holds the writer lock); the actions taken."""
    h = _Healer(store, report, scanner, log)
    try:
        h.set_aside_leftovers()
        h.links()
        h.objects()
        h.dists()
        h.waiting()
        h.bubbles()
    finally:
        for work in h.work:
            shutil.rmtree(work, ignore_errors=True)
        for download in h.downloads:
            download.__exit__(None, None, None)
    return h.actions


class _Healer:
    def __init__(self, store: Store, report: Report, scanner: Scanner, log) -> None:
        self.store = store
        self.report = report
        self.scanner = scanner
        self.log = log
        self.quarantine = os.path.join(store.root, "quarantine", time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}")
        self.actions: list[dict] = []
        self.work: list[str] = []  # our own staging (tmp/, downloads), removed at the end
        self.downloads: list = []  # DownloadDirs in tmp/, released at the end
        self.fetched: dict[str, object] = {}  # wheel file name -> scratch Store, or the reason it failed
        self.key = interpreter_key()
        self.tag = sys.implementation.cache_tag
        self.recompiled: set[str] = set()  # dist rels whose .pyc manifest for self.tag was compiled here

    # -- small tools -------------------------------------------------------------------------

    def act(self, action: str, path: str, detail: str = "") -> None:
        self.actions.append({"action": action, "path": path, "detail": detail})
        if self.log:
            self.log(f"{action} {path}" + (f": {detail}" if detail else ""))

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.store.root)

    def set_aside(self, path: str, as_rel: str | None = None, *, link: bool = False) -> str:
        """Move ``path`` (or hard-link it, ``link=True``) into the quarantine; its new store-relative path."""
        dest = os.path.join(self.quarantine, as_rel or self.rel(path))
        base, n = dest, 1
        while os.path.lexists(dest):
            dest, n = f"{base}.{n}", n + 1
        makedirs(os.path.dirname(dest))
        (os.link if link else os.rename)(path, dest)
        return self.rel(dest)

    def staging(self, prefix: str) -> str:
        work = make_tmpdir(self.store, prefix)
        self.work.append(work)
        return work

    def oldest_ref(self, obj: str) -> int | None:
        refs = self.report.refs.get(obj)
        return min(m for _, _, m, _ in refs) if refs else None

    # -- 1. leftovers --------------------------------------------------------------------------

    def set_aside_leftovers(self) -> None:
        from omnipkg_hook.store import claim_tmp

        for p in self.report.by_kind("tmp-leftover", "object-stray"):
            path = self.store.abspath(p.path)
            with claim_tmp(path) as free:  # a download that started since the check stays
                if free and os.path.lexists(path):
                    self.act("set aside", p.path, f"{p.detail}; now {self.set_aside(path)}")

    # -- 2. objects ----------------------------------------------------------------------------

    def objects(self) -> None:
        bad_inodes: dict[str, tuple] = {}
        for p in self.report.by_kind("object-corrupt"):
            obj = self.store.abspath(p.path)
            good = self.scanner.object_good(obj)
            if good is None:
                continue
            if good:  # a quick check's suspicion: the bytes are right, only the timestamp moved
                oldest = self.oldest_ref(obj)
                if oldest is not None:
                    os.utime(obj, ns=(time.time_ns(), oldest))
                self.act("kept", p.path, "its bytes match its name; its timestamp was reset")
                continue
            st = os.stat(obj)
            bad_inodes[obj] = (st.st_ino, st.st_dev)
            where = self.set_aside(obj, link=True)
            os.unlink(obj)  # the bad bytes live on in the quarantine; nothing may link them again
            self.act("set aside", p.path, f"its bytes do not match its name; now {where}")
        self.scanner.forget_stats()
        missing = [o for o in sorted(self.report.refs) if not os.path.exists(o)]
        still = [o for o in missing if not self._from_disk(o, bad_inodes.get(o))]
        refs = self._bubble_refs() if still else {}
        for obj in still:
            if os.path.exists(obj):
                continue  # a wheel fetched for an earlier object brought it back
            for dist_rel, _file, _m, _s in self.report.refs[obj]:
                d = self.report.dists.get(dist_rel)
                if d is None or d.manifest is None or self._tampered(d, refs.get(dist_rel, [])):
                    continue  # a forged manifest names no wheel to fetch
                # The wheel gives the dist's files and this interpreter's .pyc, not other interpreters'.
                mine = d.manifest["files"] + (d.pyc[self.tag][0]["files"] if self.tag in d.pyc else [])
                if obj in {_object(self.store, e) for e in mine} and self._from_wheel(d.manifest, still):
                    break
        self.scanner.forget_stats()

    def _from_disk(self, obj: str, bad: tuple | None) -> bool:
        """Make ``obj`` again from a good copy already in the store."""
        sha = object_sha(obj)
        twin = obj[:-1] if obj.endswith("x") else obj + "x"
        candidates = [(os.path.join(self.store.abspath(d), *f.split("/")), True) for d, f, _, _ in self.report.refs.get(obj, [])]
        candidates.insert(0, (twin, False))
        candidates += [(os.path.join(self.store.abspath(d), *f.split("/")), False)
                       for d, f, _, _ in self.report.refs.get(twin, [])]
        for path, same_mode in candidates:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or (bad and (st.st_ino, st.st_dev) == bad):
                continue
            try:
                if file_sha256(path) != sha:
                    continue
            except OSError:
                continue
            self._publish_object(obj, path, link=same_mode)
            self.act("restored", self.rel(obj), f"from the good copy {self.rel(path)}")
            return True
        return False

    def _publish_object(self, obj: str, source: str, *, link: bool) -> None:
        staged = os.path.join(self.staging("heal-"), "object")
        if link:
            os.link(source, staged)
        else:
            shutil.copyfile(source, staged)
        os.chmod(staged, 0o555 if obj.endswith("x") else 0o444)
        oldest = self.oldest_ref(obj)
        if oldest is not None:  # manifests are newer than their objects: keep it so for the quick check
            os.utime(staged, ns=(time.time_ns(), oldest))
        makedirs(os.path.dirname(obj))
        if not os.path.exists(obj):
            os.rename(staged, obj)

    def _fetch(self, manifest: dict):
        """The wheel of ``manifest`` fetched again and ingested into a scratch store, or why not."""
        wheel = manifest.get("wheel")
        if not wheel:
            return "its manifest does not name its wheel"
        if wheel in self.fetched:
            return self.fetched[wheel]
        from omnipkg_hook.store import DownloadDir

        from .. import pip
        from ..pythons import interp
        from ..writers.ingest import ingest_wheel

        work = self.staging("heal-fetch-")
        # pip downloads into tmp/ (gc and doctor clear what a killed repair leaves), in a
        # directory held by a flock pip inherits: no gc removes it while that pip lives.
        download = DownloadDir(self.store, "refetch-").__enter__()
        self.downloads.append(download)
        dest = download.path
        name = manifest.get("project_name") or manifest["name"]
        sha = manifest.get("wheel_sha256")
        url = _origin_url(manifest)

        def by_pip(sub: str, spec: list[str]) -> tuple[str | None, str]:
            out = os.path.join(dest, sub)  # one directory each: a file one source gave is not taken for another's
            result = pip.run_pip(sys.executable, ["download", "--no-deps", "--only-binary", ":all:", "--dest", out, *spec],
                                 what=f"fetch {wheel} again", check=False, hold=download)
            found = _find_wheel(out, manifest)
            lines = [x for x in result.output.splitlines() if x.startswith("ERROR")]
            return found, f"pip could not fetch it ({lines[-1] if lines else 'exit ' + str(result.returncode)})"

        # From where the store got it first, then by name from the index pip is configured
        # with now; the first copy with the recorded sha256 is taken.
        sources = [("its recorded origin", lambda: (_from_origin(manifest, dest), None))]
        if url:  # the very file, through pip (its config and auth)
            sources.append(("its recorded origin", lambda: by_pip("origin", [url])))
        sources.append((None, lambda: by_pip("index", [*_tag_args(manifest["tag"]), f"{name}=={manifest['version']}"])))
        reasons: list[str] = []
        answer = None
        try:
            for where, get in sources:
                path, why = get()
                if path is None:
                    if why:
                        reasons.append(why)
                    continue
                if sha and file_sha256(path) != sha:
                    reasons.append(f"the wheel from {where or 'the index'} is not the one installed (sha256 differs); "
                                   "not used")
                    continue
                scratch = Store(os.path.join(work, "scratch"))
                ingest_wheel(scratch, path, interp.current())
                scratch.wheel = path
                scratch.where = where
                answer = scratch
                break
            if answer is None:
                answer = "; ".join(reasons)
        except (OmnipkgError, OSError) as e:
            answer = f"fetching it failed ({getattr(e, 'message', e)})"
        self.fetched[wheel] = answer
        if isinstance(answer, str):
            self.act("could not fetch", wheel, answer)
        return answer

    def _from_wheel(self, manifest: dict, wanted) -> bool:
        """Every object of ``wanted`` still missing that ``manifest``'s wheel has; True if it got any."""
        scratch = self._fetch(manifest)
        if isinstance(scratch, str):
            return False
        got = 0
        for o in wanted:
            found = os.path.join(scratch.objects, os.path.relpath(o, self.store.objects))
            if not os.path.exists(o) and os.path.exists(found):
                self._publish_object(o, found, link=True)
                checked = "checked against its recorded sha256" if manifest.get("wheel_sha256") else "no recorded sha256"
                again = f"fetched again from {scratch.where}" if scratch.where else "fetched again"
                self.act("restored", self.rel(o), f"from {os.path.basename(scratch.wheel)}, {again} ({checked})")
                got += 1
        return got > 0

    # -- 3. dists ------------------------------------------------------------------------------

    def _bubble_refs(self) -> dict[str, list[tuple[str, dict, dict]]]:
        """dist rel -> [(bubble rel, bubble manifest, its entry for the dist)]."""
        out: dict[str, list] = {}
        for rel, m in self.report.bubbles:
            if m is not None:
                for entry in m["dists"].values():
                    out.setdefault(entry["path"], []).append((rel, m, entry))
        return out

    def _tampered(self, d: Dist, refs) -> tuple | None:
        """How ``d``'s manifests differ from what a bubble using it recorded, or None."""
        for _b, m, entry in refs:
            mine = m.get("interpreter", {}).get("key") == self.key
            found = tampered_with(d, entry, self.tag if mine else None)
            if found:
                return found
        return None

    def links(self) -> None:
        """Set aside every symbolic link in ``dists/`` (the link itself, renamed: what it points
        at is never read, written or moved); :meth:`dists` then rebuilds what bubbles name there."""
        for rel, target in dist_links(self.store):
            self.act("set aside", rel, f"a symbolic link (to {target!r}); now {self.set_aside(self.store.abspath(rel))}")

    def dists(self) -> None:
        refs = self._bubble_refs()
        for rel in sorted(set(self.report.dists) | set(refs)):
            d = self.scanner.load_dist(rel) if os.path.isdir(self.store.abspath(rel)) else None
            tampered = None
            if d is not None:
                self.scanner.check_dist(d)
                tampered = self._tampered(d, refs.get(rel, []))
                if not d.problems and not tampered:
                    continue
            elif rel not in refs:
                continue
            if rel not in refs and (d is None or d.manifest is None):
                self.act("set aside", rel, f"damaged and no bubble uses it; now {self.set_aside(self.store.abspath(rel))}")
                continue
            try:
                self._rebuild(rel, d, refs.get(rel, []), tampered)
            except (OmnipkgError, OSError) as e:
                self.act("could not repair", rel, str(getattr(e, "message", e)))

    def _manifest_for(self, rel: str, refs) -> tuple[bytes | None, str]:
        """The dist manifest of a dist whose own is gone or not trusted: (bytes, where from).
        Where its bubbles recorded it, only bytes with that sha256 are taken."""
        import hashlib

        recorded = {entry["manifest"] for _b, _m, entry in refs if entry.get("manifest")}

        def trusted(data: bytes) -> bool:
            return not recorded or hashlib.sha256(data).hexdigest() in recorded

        for _b, _m, entry in refs:
            sha = entry.get("manifest")
            if sha:
                obj = self.store.object_path(sha)
                try:
                    if file_sha256(obj) == sha:
                        with open(obj, "rb") as f:
                            return f.read(), "the bubble's record of it"
                except OSError:
                    pass
        q = os.path.join(self.store.root, "quarantine")
        patterns = [os.path.join(q, "*", rel, DIST_MANIFEST), os.path.join(q, "*", "tmp", "*", "*", DIST_MANIFEST)]
        for candidate in sorted({p for pat in patterns for p in glob.glob(pat)}, reverse=True):
            try:
                with open(candidate, "rb") as f:
                    data = f.read()
                m = json.loads(data)
                if isinstance(m, dict) and m.get("format") == 1 and manifest_problem(m, rel) is None and trusted(data):
                    return data, self.rel(candidate)
            except (OSError, ValueError):
                continue
        _, name, version, tag = rel.split("/")
        scratch = self._fetch({"name": name, "version": version, "tag": tag, "wheel": f"{name} {version} {tag}"})
        if isinstance(scratch, str):
            return None, scratch
        with open(os.path.join(scratch.dists, name, version, tag, DIST_MANIFEST), "rb") as f:
            data = f.read()
        if not trusted(data):
            return None, "the wheel fetched again does not give the manifest its bubbles recorded"
        if recorded:
            return data, "its wheel, fetched again (its manifest checked against the bubble's record)"
        return data, "its wheel, fetched again (no recorded sha256 to check it against)"

    def _rebuild(self, rel: str, d: Dist | None, refs, tampered: tuple | None = None) -> None:
        path = self.store.abspath(rel)
        old_manifest = os.path.join(path, DIST_MANIFEST)
        if tampered:  # nothing the directory holds is trusted: neither its manifest nor its .pyc lists
            d = None
        if d is not None and d.manifest is not None:
            manifest, data, source = d.manifest, None, None
        else:
            data, source = self._manifest_for(rel, refs)
            if data is None:
                why = f"its {tampered[0]} was replaced (tampered with)" if tampered else "its manifest is gone"
                self.act("could not repair", rel, f"{why} and {source}; reinstall its bubble")
                return
            manifest = json.loads(data)
        missing = [e for e in manifest["files"] if not os.path.exists(_object(self.store, e))]
        if missing and self._from_wheel(manifest, [_object(self.store, e) for e in missing]):
            missing = [e for e in missing if not os.path.exists(_object(self.store, e))]
        if missing:
            self.act("could not repair", rel, f"the objects of {', '.join(e['path'] for e in missing[:3])} are gone and its wheel "
                     "could not be fetched; reinstall its bubble")  # fmt: skip
            return
        new = os.path.join(self.staging("heal-"), "dist")
        materialize(self.store, manifest["files"], new)
        if data is None:
            os.link(old_manifest, os.path.join(new, DIST_MANIFEST))  # same inode: leases stay valid
        else:  # manifests are objects: link it, never write a file in a dist
            os.link(self.store.object_path(put_object(self.store, data)), os.path.join(new, DIST_MANIFEST))
        dropped = self._bytecode(d, new)
        self._compile(rel, manifest, new, dropped, refs)
        if os.path.lexists(path):
            if _exchange(new, path):
                where = self.set_aside(new, rel)
            else:
                where = self.set_aside(path)
                os.rename(new, path)
            why = f"its {tampered[0]} was replaced (tampered with, sha256 {tampered[1]}); " if tampered else ""
            self.act("rebuilt", rel, f"{why}from objects{' and ' + source if source else ''}; the old directory is now {where}")
        else:
            makedirs(os.path.dirname(path))
            os.rename(new, path)
            self.act("rebuilt", rel, f"from objects and {source}")

    def _bytecode(self, d: Dist | None, new: str) -> set[str]:
        """Link every .pyc manifest of ``d`` whose objects are all there into ``new``; the cache tags dropped."""
        dropped = set()
        if d is None:
            return dropped
        dropped.update(n[len(PYC_PREFIX):-len(PYC_SUFFIX)] for n in d.bad_pyc)
        for tag, (m, _mtime) in d.pyc.items():
            if not all(os.path.exists(_object(self.store, e)) for e in m["files"]):
                dropped.add(tag)
                continue
            materialize_into(self.store, m["files"], new)
            name = PYC_PREFIX + tag + PYC_SUFFIX
            os.link(os.path.join(d.path, name), os.path.join(new, name))
        return dropped

    def _compile(self, rel: str, manifest: dict, new: str, dropped: set, refs) -> None:
        from ..pythons import interp
        from ..writers import bytecode

        wanted = set(dropped)
        executables = {}
        for _b, m, _e in refs:
            info = m.get("interpreter", {})
            if info.get("key") == self.key:
                wanted.add(self.tag)
            elif info.get("executable"):
                executables[info["key"]] = info["executable"]
        for tag in sorted(wanted):
            if os.path.exists(os.path.join(new, PYC_PREFIX + tag + PYC_SUFFIX)):
                continue
            interpreter = None
            if tag == self.tag:
                interpreter = interp.current()
            else:
                for exe in executables.values():
                    try:
                        candidate = interp.inspect(exe)
                    except OmnipkgError:
                        continue
                    if candidate.cache_tag == tag:
                        interpreter = candidate
                        break
            if interpreter is None:
                bytecode.note_pending(self.store, [self.store.abspath(rel)])  # for install's compile_pending
                self.act("dropped", f"{rel}/{PYC_PREFIX}{tag}{PYC_SUFFIX}",
                         "its .pyc objects are gone and no interpreter for it is at hand; it compiles again on install")
                continue
            bytecode.ensure_compiled(self.store, manifest, new, interpreter)
            if tag == self.tag:
                self.recompiled.add(rel)
            if tag in dropped:
                self.act("compiled", rel, f"again for {tag} (its .pyc manifest was damaged, or its objects gone)")

    # -- 4. bubbles ----------------------------------------------------------------------------

    def bubbles(self) -> None:
        from ..pythons import interp
        from ..writers import bubbles, bytecode

        for rel, m in self.report.bubbles:
            path = self.store.abspath(rel)
            _, name, version, fname = rel.split("/")
            key = fname[: -len(".json")]
            if m is None:
                if not os.path.exists(path):
                    continue
                where = self.set_aside(path, link=True)
                made = None
                if key == self.key:
                    try:
                        made = bubbles.bubble_from_store(self.store, f"{name}=={version}")
                    except OmnipkgError:
                        made = None
                if made is not None and made.get("version") == version:
                    self.act("rebuilt", rel, f"from the dists in the store; the damaged file is now {where}")
                    continue
                os.unlink(path)
                self.act("set aside", rel, f"damaged, and the store cannot make it again; now {where}; "
                         f"reinstall with `pip-omni install {name}=={version}`"
                         + ("" if key == self.key else f" for the interpreter {key}"))  # fmt: skip
                continue
            if key != self.key:
                continue
            for entry in m["dists"].values():  # compiled for this interpreter, as a bubble must be
                dist_path = self.store.abspath(entry["path"])
                pyc = os.path.join(dist_path, PYC_PREFIX + self.tag + PYC_SUFFIX)
                if os.path.isdir(dist_path) and not os.path.exists(pyc):
                    try:
                        manifest = self.scanner.load_dist(entry["path"]).manifest
                        if manifest is not None and bytecode.ensure_compiled(self.store, manifest, dist_path, interp.current()):
                            self.recompiled.add(entry["path"])
                            self.act("compiled", entry["path"], f"for {self.tag}")
                    except (OmnipkgError, OSError) as e:
                        self.act("could not repair", entry["path"], f"compiling failed ({getattr(e, 'message', e)})")
        self._record_recompiled()

    def waiting(self) -> None:
        """Store what this interpreter's bubbles wait for (``writers.deferred``), each marked
        again first (a mark is lost if a crash came between it and the manifest's rename)."""
        ours = [rel for rel in self.report.waiting if rel.endswith(f"/{self.key}.json")]
        if not ours:
            return
        from ..pythons import interp
        from ..writers import deferred

        for rel in ours:
            _, name, version, _fname = rel.split("/")
            deferred.note(self.store, self.key, name, version)
        failed: list = []
        done = set(deferred.complete(self.store, interp.current(), failed=failed))
        why = dict(failed)
        for rel in ours:
            _, name, version, _fname = rel.split("/")
            if f"{name}=={version}" in done:
                self.act("stored", rel, f"what it waited for: {', '.join(self.report.waiting[rel])}")
                self._reread(rel)  # compiled next, as every bubble of this interpreter
            elif f"{name}=={version}" in why:
                self.act("could not repair", rel, why[f"{name}=={version}"])

    def _reread(self, rel: str) -> None:
        for i, (r, _m) in enumerate(self.report.bubbles):
            if r == rel:
                try:
                    self.report.bubbles[i] = (rel, read_manifest(self.store.abspath(rel)))
                except (OSError, OmnipkgError):
                    pass

    def _record_recompiled(self) -> None:
        """The bubbles of this interpreter record the ``.pyc`` manifests compiled here.

        Such a manifest is made from the recorded sources, so it is trusted; but its bytes need
        not be the ones recorded: ``marshal`` writes a reference only for an object something
        else also holds, so a ``.pyc`` depends on what the compiling process holds (CPython 3.9,
        3.10, 3.13 here). Without this, the next check would call the dist tampered with."""
        if not self.recompiled:
            return
        from omnipkg_hook.store import write_json_atomic

        name = PYC_PREFIX + self.tag + PYC_SUFFIX
        for rel, m in self.report.bubbles:
            if m is None or rel.rsplit("/", 1)[-1][: -len(".json")] != self.key:
                continue  # rebuilt bubbles record what is there; other interpreters' have their own
            changed = []
            for dname, entry in m["dists"].items():
                if entry.get("path") not in self.recompiled or "pyc_manifest" not in entry:
                    continue
                try:
                    with open(os.path.join(self.store.abspath(entry["path"]), name), "rb") as f:
                        sha = put_object(self.store, f.read())  # it is an object already: nothing written
                except OSError:
                    continue
                if sha != entry["pyc_manifest"]:
                    entry["pyc_manifest"] = sha
                    changed.append(dname)
            if changed:
                write_json_atomic(self.store, self.store.abspath(rel), m, fsync=False)
                self.act("recorded", rel, f"the .pyc manifest compiled again here for {', '.join(sorted(changed))}")


def _object(store: Store, entry: dict) -> str:
    return store.object_path(entry["sha256"], bool(entry.get("mode", 0o644) & 0o111))


def _find_wheel(directory: str, manifest: dict) -> str | None:
    """The wheel in ``directory`` that is ``manifest``'s dist (same name, version and tag)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    exact = os.path.join(directory, manifest.get("wheel") or "-")
    if os.path.exists(exact):
        return exact
    for fname in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        try:
            name, version, _b, _t = parse_wheel_filename(fname)
        except InvalidWheelFilename:
            continue
        tag = "-".join(fname[:-4].split("-")[-3:])
        if (normalize(name), str(version), tag) == (manifest["name"], manifest["version"], manifest["tag"]):
            return os.path.join(directory, fname)
    return None


def _from_origin(manifest: dict, dest: str) -> str | None:
    """The wheel copied from where the store first got it (``origin``, a local file: a ``-f``
    folder, a ``file://`` index), or None (no origin, an sdist's, a URL, gone): then pip
    fetches it by name and version from the index it is configured with now. The caller
    checks the copy's sha256 against the one recorded, so a file changed since is not used."""
    origin = manifest.get("origin") or ""
    if manifest.get("origin_sha256") or not manifest.get("wheel_sha256"):
        return None  # built from an sdist (its wheel is not at the origin), or nothing to check it by
    if origin.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        origin = unquote(urlsplit(origin).path)
    if not os.path.isabs(origin) or not os.path.isfile(origin):
        return None
    path = os.path.join(dest, os.path.basename(origin))
    try:
        shutil.copyfile(origin, path)
    except OSError:
        return None
    return path


def _origin_url(manifest: dict) -> str | None:
    """The recorded origin as an http(s) URL pip can fetch with the sha256 it must have."""
    origin = manifest.get("origin") or ""
    if manifest.get("origin_sha256") or not manifest.get("wheel_sha256") or \
            not origin.startswith(("https://", "http://")) or not origin.split("#", 1)[0].endswith(".whl"):
        return None
    return f"{origin.split('#', 1)[0]}#sha256={manifest['wheel_sha256']}"


def _tag_args(tag: str) -> list[str]:
    """pip download options that fetch the wheel of ``tag`` whatever runs pip."""
    pys, abis, plats = tag.split("-")
    if abis == "none" and plats == "any":
        return []
    py = pys.split(".")[0]
    impl, digits = py[:2], py[2:]
    args = ["--implementation", impl] if impl in ("cp", "pp", "ip", "jy") else []
    if digits:
        args += ["--python-version", digits]
    args += [x for abi in abis.split(".") for x in ("--abi", abi)]
    args += [x for plat in plats.split(".") for x in ("--platform", plat)]
    return args


def _exchange(a: str, b: str) -> bool:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
