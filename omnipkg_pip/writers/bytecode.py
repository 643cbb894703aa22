"""``.pyc`` for the store: compiled by the target interpreter, hash-based, deterministic.

Every ``.py`` of a dist is compiled with ``UNCHECKED_HASH`` invalidation and with
its path inside the dist as the code's file name, so the same source gives the
same bytes in every dist (they dedupe as objects) and a pyc never goes stale
behind a hard link (store objects never change; ``doctor`` catches edits).
pip's own timestamp ``.pyc`` never enter the store.

Per interpreter the compiled files are listed in ``omnipkg-pyc-<cache_tag>.json``
inside the dist directory, written last: a dist without it for an interpreter
simply has not been compiled for it yet.

A source that another stored version of the same distribution has at the same path
with the same bytes is not compiled again: its pyc object (listed in that dist's pyc
manifest for the same cache tag, and checked against its sha256) is linked instead.
Between two releases most files are unchanged (rich 13.4.2 -> 13.5.3: 68 of 78).

Only what will run is compiled at install: a dist of the bubble that the main environment
has at the same version is served from main (the hook keeps main's copy when it satisfies),
so its ``.pyc`` would never be read (77 % of rich's compile is pygments, which main usually
has). Such a dist stays uncompiled until it is routed: the hook then imports its sources
compiled in memory, writing nothing (``omnipkg_hook.finder``), and the next ``pip-omni
install`` compiles every dist of this interpreter's bubbles that main no longer serves
(:func:`compile_pending`).

What may be left uncompiled is written down, so that install reads only that:
``cache/pyc-pending/<interpreter key>/`` holds one empty file per dist that may lack that
interpreter's ``.pyc``, named ``<name>@<version>@<tag>`` (:func:`note_pending`). A bubble
published with such a dist marks it (``bubbles.write_bubble``, an archive's import);
:func:`ensure_compiled` marks a dist before compiling and clears the mark once its pyc
manifest is written, so a compile a crash interrupted is still there to finish. The
directory's existence means "complete for this interpreter": when it is missing (a store
from before it, or ``cache/`` emptied) the next install scans every bubble once, as it
always did, and makes it.

``install --no-compile`` compiles nothing, the root included: its bubbles' dists are marked
like the ones above (:func:`start_list` first makes the list), and :func:`compile_pending`
compiles them when main does not serve them -- at the next install, ``pip-omni store
compile``, or the background compile ``pip-omni run`` starts after its program
(:mod:`omnipkg_pip.writers.later`). It takes the writer lock per dist, so that background
compile lets other writers in between two dists, and two compiles at once do each dist once.
"""

from __future__ import annotations

import json
import os

from omnipkg_hook.distnames import pyc_manifest_name
from omnipkg_hook.store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    make_tmpdir,
    normalize,
    put_object,
)

__all__ = ["pyc_manifest_name", "compile_staged", "ensure_compiled", "served_by_main", "compile_pending",
           "note_pending", "start_list"]

# One .py -> the bytes py_compile would write with UNCHECKED_HASH (the same header and
# marshal), made in memory: no temporary .pyc per file. On some filesystems creating a
# file costs far more than compiling it, and py_compile creates two per .pyc (its own
# temporary, then the result we read back). Runs in the target interpreter; the
# in-process path execs this same text, so both give identical bytes.
_PYC_FUNC = r"""
import importlib.util as _util, marshal as _marshal
def pyc_bytes(src, dfile):
    with open(src, "rb") as f:
        source = f.read()
    code = compile(source, dfile, "exec", dont_inherit=True)
    # magic, flags (bit 0: hash-based; bit 1 clear: unchecked), source hash, code
    return _util.MAGIC_NUMBER + b"\x01\x00\x00\x00" + _util.source_hash(source) + _marshal.dumps(code)
"""

_COMPILE = _PYC_FUNC + r"""
import base64, json, sys
out = []
for src, dfile in json.load(sys.stdin):
    try:
        out.append([dfile, base64.b64encode(pyc_bytes(src, dfile)).decode("ascii"), None])
    except Exception as e:
        text = str(e).strip()
        out.append([dfile, None, text.splitlines()[-1] if text else type(e).__name__])
json.dump(out, sys.stdout)
"""

_namespace: dict = {}


def _pyc_bytes(src: str, dfile: str) -> bytes:
    # _PYC_FUNC made on first use: its importlib.util is not on the path of an install that
    # compiles nothing (a bubble from stored, compiled dists).
    # Threads may race here: each makes a whole function, and any one of them is right.
    func = _namespace.get("pyc_bytes")
    if func is None:
        made: dict = {}
        exec(compile(_PYC_FUNC, __file__ + ":_PYC_FUNC", "exec"), made)
        func = _namespace["pyc_bytes"] = made["pyc_bytes"]
    return func(src, dfile)


def _sources(manifest: dict) -> list[str]:
    return [
        f["path"]
        for f in manifest["files"]
        if f["path"].endswith(".py")
        and not f["path"].startswith("_omnipkg_data/")
        and ".dist-info/" not in f["path"]
    ]


def _pyc_rel(rel: str, cache_tag: str) -> str:
    head, _, name = rel.rpartition("/")
    pyc = f"__pycache__/{name[:-3]}.{cache_tag}.pyc"
    return f"{head}/{pyc}" if head else pyc


def _compile_in_process(jobs: list[list[str]], compiled: dict, bad: list) -> None:
    for src, dfile in jobs:
        try:
            compiled[dfile] = _pyc_bytes(src, dfile)
        except Exception as e:  # what py_compile turns into PyCompileError, and unreadable files
            bad.append([dfile, str(e) or type(e).__name__])


def _compile_subprocess(executable: str, jobs: list[list[str]], compiled: dict, bad: list) -> None:
    import base64
    import subprocess

    proc = subprocess.run(
        [executable, "-I", "-S", "-c", _COMPILE],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        bad.append(["*", f"compiler exited {proc.returncode}: {proc.stderr.strip()[-300:]}"])
        return
    for dfile, data, error in json.loads(proc.stdout or "[]"):
        if data is None:
            bad.append([dfile, error])
        else:
            compiled[dfile] = base64.b64decode(data)


def _run_jobs(interpreter, jobs: list[list[str]]) -> tuple[dict[str, bytes], list[list[str]]]:
    """Compile ``jobs`` (``[source path, name in the dist]``) with ``interpreter``, spread
    over the machine's cores. Returns ``{name in the dist: pyc bytes}`` and the failures."""
    if not jobs:
        return {}, []
    cores = max(1, min(os.cpu_count() or 1, 4))
    if interpreter.is_current and (len(jobs) < 64 or cores == 1):
        compiled: dict[str, bytes] = {}
        bad: list = []
        _compile_in_process(jobs, compiled, bad)
        return compiled, bad
    import threading

    parts = cores if len(jobs) >= 64 else 1
    chunks = [jobs[i::parts] for i in range(parts)]
    results = [({}, []) for _ in chunks]
    threads = []
    local = None
    for i, chunk in enumerate(chunks):
        if interpreter.is_current and i == 0:
            local = chunk  # this process compiles one share itself
            continue
        t = threading.Thread(target=_compile_subprocess, args=(interpreter.executable, chunk, *results[i]))
        t.start()
        threads.append(t)
    if local is not None:
        _compile_in_process(local, *results[0])
    for t in threads:
        t.join()
    compiled = {k: v for c, _ in results for k, v in c.items()}
    return compiled, [b for _, bad in results for b in bad]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _stored_pyc(store: Store, name: str, cache_tag: str) -> dict[tuple[str, str], str]:
    """``(source path, source sha256) -> pyc sha256`` from every stored dist of ``name``
    already compiled for ``cache_tag``. Unreadable manifests are skipped (compiled anew)."""
    found: dict[tuple[str, str], str] = {}
    base = os.path.join(store.dists, normalize(name))
    for version in _listdir(base):
        for tag in _listdir(os.path.join(base, version)):
            dist_dir = os.path.join(base, version, tag)
            try:
                with open(os.path.join(dist_dir, pyc_manifest_name(cache_tag)), encoding="utf-8") as f:
                    pyc = {e["path"]: e["sha256"] for e in json.load(f)["files"]}
                with open(os.path.join(dist_dir, DIST_MANIFEST), encoding="utf-8") as f:
                    files = json.load(f)["files"]
                for e in files:
                    if e["path"].endswith(".py"):
                        sha = pyc.get(_pyc_rel(e["path"], cache_tag))
                        if sha:
                            found[(e["path"], e["sha256"])] = sha
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
    return found


def _read_object(store: Store, sha: str) -> bytes | None:
    """The bytes of object ``sha``, or None if it is missing or does not hash to ``sha``."""
    import hashlib

    try:
        with open(store.object_path(sha), "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha else None


def _compile(manifest: dict, src_root: str, interpreter, store: Store | None = None) -> tuple[dict, list]:
    """``{pyc path in the dist: bytes}`` for every source of ``manifest``, and the failures.

    With ``store``, a source another stored version already compiled (same path, same
    bytes, same cache tag) reuses that pyc object instead of being compiled again.
    """
    tag = interpreter.cache_tag
    name = manifest.get("name")
    reuse = _stored_pyc(store, name, tag) if store is not None and name else {}
    source_sha = {f["path"]: f["sha256"] for f in manifest["files"]} if reuse else {}
    compiled: dict[str, bytes] = {}
    jobs = []
    for rel in _sources(manifest):
        pyc_sha = reuse.get((rel, source_sha.get(rel)))
        data = _read_object(store, pyc_sha) if pyc_sha else None
        if data is not None:
            compiled[_pyc_rel(rel, tag)] = data
        else:
            jobs.append([os.path.join(src_root, *rel.split("/")), rel])
    by_source, bad = _run_jobs(interpreter, jobs)
    compiled.update((_pyc_rel(rel, tag), data) for rel, data in by_source.items())
    return compiled, bad


def compile_staged(store: Store, manifest: dict, dest, interpreter) -> None:
    """Compile a dist being staged (``dest`` is its StoreDestination)."""
    compiled, _bad = _compile(manifest, dest.dist_dir, interpreter, store)
    entries = [dest.add_bytes(rel, data, False) for rel, data in sorted(compiled.items())]
    record = {"format": FORMAT, "cache_tag": interpreter.cache_tag, "files": entries}
    dest.add_bytes(pyc_manifest_name(interpreter.cache_tag), json.dumps(record, indent=1).encode("utf-8"), False)


def served_by_main(name: str, version: str, main: dict | None) -> bool:
    """Whether the main environment (``{name: version}``; None: unknown) has this very
    version, so the hook serves main's copy and this dist's ``.pyc`` would not be read."""
    return main is not None and main.get(normalize(name)) == version


def ensure_compiled(store: Store, manifest: dict, dist_dir: str, interpreter) -> bool:
    """Compile a published dist for ``interpreter`` if it is not yet. True if it did work.

    Each pyc is linked in by its own rename; the pyc manifest is written last.
    """
    target = os.path.join(dist_dir, pyc_manifest_name(interpreter.cache_tag))
    if os.path.exists(target):
        return False
    marks = note_pending(store, [dist_dir], interpreter.key)  # until the pyc manifest is there
    work = make_tmpdir(store, "pyc-")
    made: set = set()
    try:
        compiled, _bad = _compile(manifest, dist_dir, interpreter, store)
        entries = []
        for rel, data in sorted(compiled.items()):
            entries.append(_link_published(store, dist_dir, rel, data, work, made))
        record = {"format": FORMAT, "cache_tag": interpreter.cache_tag, "files": entries}
        _link_published(store, dist_dir, pyc_manifest_name(interpreter.cache_tag),
                        json.dumps(record, indent=1).encode("utf-8"), work, made)  # last: by rename
        _clear(marks)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return True


_PENDING = ("cache", "pyc-pending")


def _pending_dir(store: Store, key: str) -> str:
    return os.path.join(store.root, *_PENDING, key)


def _mark_name(store: Store, dist_dir: str) -> str | None:
    """``dists/<name>/<version>/<tag>`` -> ``<name>@<version>@<tag>`` (no ``@`` in any of them)."""
    parts = os.path.relpath(dist_dir, store.dists).split(os.sep)
    if len(parts) != 3 or any(not p or p in (os.curdir, os.pardir) or "@" in p for p in parts):
        return None
    return "@".join(parts)


def note_pending(store: Store, dist_dirs, key: str | None = None) -> list[str]:
    """Mark ``dist_dirs`` as possibly lacking the ``.pyc`` of interpreter ``key`` (None: of every
    interpreter with a pending list); returns the marks made. The caller holds the write lock.
    Nothing is marked for an interpreter without a list yet: its first install scans instead."""
    keys = [key] if key is not None else _listdir(os.path.join(store.root, *_PENDING))
    made = []
    for k in keys:
        base = _pending_dir(store, k)
        if not os.path.isdir(base):
            continue
        for dist_dir in dist_dirs:
            name = _mark_name(store, dist_dir)
            if name is None:
                continue
            path = os.path.join(base, name)
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644))
            except FileExistsError:
                pass
            made.append(path)
    return made


def _clear(marks) -> None:
    for path in marks:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def compile_pending(store: Store, interpreter, main: dict) -> list[str]:
    """Compile the dists of ``interpreter``'s bubbles that lack its ``.pyc`` and that main
    (``{name: version}``) does not serve at their version any more: the ones installed
    uncompiled because main had them, after main changed, and compiles a crash interrupted.
    Returns their paths.

    Reads only the pending list (a listdir; see the module docstring), without the lock;
    locks only when there is work. Without a list yet, scans every bubble once and makes it.
    """
    from omnipkg_hook.errors import OmnipkgError
    from omnipkg_hook.store import WriteLock, read_manifest

    base = _pending_dir(store, interpreter.key)
    try:
        marks = os.listdir(base)
    except FileNotFoundError:
        marks = _start_pending(store, interpreter)
    except OSError:
        return []
    name = pyc_manifest_name(interpreter.cache_tag)
    todo = {}
    for mark in marks:
        dist, _, rest = mark.partition("@")
        version, _, tag = rest.partition("@")
        if not tag:
            continue
        dist_dir = os.path.join(store.dists, dist, version, tag)
        if not served_by_main(dist, version, main):
            todo[dist_dir] = os.path.join(base, mark)
        elif os.path.exists(os.path.join(dist_dir, name)):
            _clear([os.path.join(base, mark)])  # compiled after all (an archive brought its .pyc)
    done = []
    for dist_dir, mark in sorted(todo.items()):
        # The lock is taken per dist: a compile in the background (omnipkg_pip.writers.later)
        # lets another writer in between two dists, and the check under it is what makes two
        # compiles at once do each dist once.
        with WriteLock(store):
            if os.path.exists(os.path.join(dist_dir, name)) or not os.path.isdir(dist_dir):
                _clear([mark])  # compiled since, or gone (gc)
                continue
            try:
                manifest = read_manifest(os.path.join(dist_dir, DIST_MANIFEST))
            except (OSError, ValueError, OmnipkgError):
                continue  # doctor reports it; the mark stays
            if ensure_compiled(store, manifest, dist_dir, interpreter):
                done.append(dist_dir)
    return done


def start_list(store: Store, interpreter) -> None:
    """Make the pending list of ``interpreter`` if it has none yet, before bubbles are published
    uncompiled (``install --no-compile``): ``note_pending`` marks only on an existing list."""
    if not os.path.isdir(_pending_dir(store, interpreter.key)):
        _start_pending(store, interpreter)


def _start_pending(store: Store, interpreter) -> list[str]:
    """The pending list of an interpreter that has none yet: every bubble of it read once
    (what each install did before the list), the dists lacking its ``.pyc`` marked; made in
    ``tmp/`` and renamed into place. Under the lock, so that no bubble is published between
    the scan and the list. Returns the marks; where the store cannot be written (another
    user's) they are returned without making a list, as the scan always did."""
    from omnipkg_hook.store import WriteLock, makedirs

    name = pyc_manifest_name(interpreter.cache_tag)
    base = _pending_dir(store, interpreter.key)
    with WriteLock(store, optional=True) as lock:
        if lock.held and os.path.isdir(base):  # made meanwhile
            return _listdir(base)
        marks = set()
        for _root, _version, _key, path in store.iter_bubbles(interpreter.key):
            try:
                with open(path, encoding="utf-8") as f:
                    dists = json.load(f)["dists"]
                for entry in dists.values():
                    dist_dir = store.abspath(entry["path"])
                    mark = _mark_name(store, dist_dir)
                    if mark and os.path.isdir(dist_dir) and not os.path.exists(os.path.join(dist_dir, name)):
                        marks.add(mark)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # doctor reports unreadable manifests
        if lock.held:
            makedirs(store.tmp)
            work = os.path.join(store.tmp, f"pyc-pending-{os.getpid()}-{os.urandom(4).hex()}")
            os.mkdir(work, 0o755)
            for mark in marks:
                os.close(os.open(os.path.join(work, mark), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            makedirs(os.path.dirname(base))
            os.rename(work, base)
    return sorted(marks)


def _link_published(store: Store, dist_dir: str, rel: str, data: bytes, work: str, made: set) -> dict:
    """Put ``data`` (an object) at ``rel`` in the published dist: a link made in ``work`` and
    renamed into place. A rename replaces a name, it never writes through one, so whatever
    was at ``rel`` (even a link to another object) is left untouched."""
    sha = put_object(store, data)
    dest = os.path.join(dist_dir, *rel.split("/"))
    parent = os.path.dirname(dest)
    if parent not in made:  # one check per directory, not per file
        _make_dirs_inside(dist_dir, parent)
        made.add(parent)
    tmp_link = os.path.join(work, "link-" + sha)
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.link(store.object_path(sha), tmp_link)
    os.replace(tmp_link, dest)
    return {"path": rel, "sha256": sha, "size": len(data), "mode": 0o644}


def _make_dirs_inside(root: str, path: str) -> None:
    """``os.makedirs(path)`` for a ``path`` under ``root`` that refuses to go through a
    symbolic link (a dist directory tampered with must not send a write out of the store)."""
    import stat

    from omnipkg_hook.errors import StoreCorruptError

    rel = os.path.relpath(path, root)
    here = root
    for part in [] if rel == os.curdir else rel.split(os.sep):
        here = os.path.join(here, part)
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            os.mkdir(here)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise StoreCorruptError(
                f"cannot compile into {root!r}: {here!r} is not a directory (a symbolic link?)",
                "run `pip-omni doctor --repair`",
            )
