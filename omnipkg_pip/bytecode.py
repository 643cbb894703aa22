"""``.pyc`` for the store: compiled by the target interpreter, hash-based, deterministic.

Every ``.py`` of a dist is compiled with ``UNCHECKED_HASH`` invalidation and with
its path inside the dist as the code's file name, so the same source gives the
same bytes in every dist (they dedupe as objects) and a pyc never goes stale
behind a hard link (store objects never change; ``doctor`` catches edits).
pip's own timestamp ``.pyc`` never enter the store.

Per interpreter the compiled files are listed in ``omnipkg-pyc-<cache_tag>.json``
inside the dist directory, written last: a dist without it for an interpreter
simply has not been compiled for it yet.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading

from omnipkg_hook.store import FORMAT, Store, make_tmpdir, write_json_atomic

__all__ = ["pyc_manifest_name", "compile_staged", "ensure_compiled"]

_COMPILE = r"""
import json, py_compile, sys
bad = []
for src, out, dfile in json.load(sys.stdin):
    try:
        py_compile.compile(src, out, dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, ValueError, OSError) as e:
        bad.append([dfile, str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__])
json.dump(bad, sys.stdout)
"""


def pyc_manifest_name(cache_tag: str) -> str:
    return f"omnipkg-pyc-{cache_tag}.json"


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


def _compile_in_process(jobs: list[list[str]]) -> list[list[str]]:
    import py_compile

    bad = []
    for src, out, dfile in jobs:
        try:
            py_compile.compile(
                src, out, dfile, doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except (py_compile.PyCompileError, ValueError, OSError) as e:
            bad.append([dfile, str(e)])
    return bad


def _compile_subprocess(executable: str, jobs: list[list[str]], out: list) -> None:
    proc = subprocess.run(
        [executable, "-I", "-S", "-c", _COMPILE],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        out.append(["*", f"compiler exited {proc.returncode}: {proc.stderr.strip()[-300:]}"])
        return
    out.extend(json.loads(proc.stdout or "[]"))


def _run_jobs(interpreter, jobs: list[list[str]]) -> list[list[str]]:
    """Compile ``jobs`` with ``interpreter``, spread over the machine's cores."""
    if not jobs:
        return []
    cores = max(1, min(os.cpu_count() or 1, 4))
    if interpreter.is_current and (len(jobs) < 64 or cores == 1):
        return _compile_in_process(jobs)
    parts = cores if len(jobs) >= 64 else 1
    chunks = [jobs[i::parts] for i in range(parts)]
    results: list[list] = [[] for _ in chunks]
    threads = []
    local = None
    for i, chunk in enumerate(chunks):
        if interpreter.is_current and i == 0:
            local = chunk  # this process compiles one share itself
            continue
        t = threading.Thread(target=_compile_subprocess, args=(interpreter.executable, chunk, results[i]))
        t.start()
        threads.append(t)
    if local is not None:
        results[0].extend(_compile_in_process(local))
    for t in threads:
        t.join()
    return [b for r in results for b in r]


def _compile(manifest: dict, src_root: str, work: str, interpreter) -> tuple[dict[str, bytes], list]:
    jobs = []
    for rel in _sources(manifest):
        out = os.path.join(work, f"{len(jobs)}.pyc")
        jobs.append([os.path.join(src_root, *rel.split("/")), out, rel])
    bad = _run_jobs(interpreter, jobs)
    failed = {b[0] for b in bad}
    compiled = {}
    for src, out, rel in jobs:
        if rel in failed or not os.path.exists(out):
            continue
        with open(out, "rb") as f:
            compiled[_pyc_rel(rel, interpreter.cache_tag)] = f.read()
    return compiled, bad


def compile_staged(store: Store, manifest: dict, dest, interpreter) -> None:
    """Compile a dist being staged (``dest`` is its StoreDestination)."""
    work = os.path.join(os.path.dirname(dest.dist_dir), "pyc")
    os.makedirs(work)
    compiled, _bad = _compile(manifest, dest.dist_dir, work, interpreter)
    entries = [dest.add_bytes(rel, data, False) for rel, data in sorted(compiled.items())]
    with open(os.path.join(dest.dist_dir, pyc_manifest_name(interpreter.cache_tag)), "w") as f:
        json.dump({"format": FORMAT, "cache_tag": interpreter.cache_tag, "files": entries}, f, indent=1)


def ensure_compiled(store: Store, manifest: dict, dist_dir: str, interpreter) -> bool:
    """Compile a published dist for ``interpreter`` if it is not yet. True if it did work.

    Each pyc is linked in by its own rename; the pyc manifest is written last.
    """
    target = os.path.join(dist_dir, pyc_manifest_name(interpreter.cache_tag))
    if os.path.exists(target):
        return False
    work = make_tmpdir(store, "pyc-")
    try:
        compiled, _bad = _compile(manifest, dist_dir, work, interpreter)
        entries = []
        for rel, data in sorted(compiled.items()):
            entries.append(_link_published(store, dist_dir, rel, data, work))
        write_json_atomic(store, target, {"format": FORMAT, "cache_tag": interpreter.cache_tag, "files": entries})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True


def _link_published(store: Store, dist_dir: str, rel: str, data: bytes, work: str) -> dict:
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    obj = store.object_path(sha)
    if not os.path.exists(obj):
        tmp = os.path.join(work, "obj-" + sha)
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o444)
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        os.rename(tmp, obj)
    dest = os.path.join(dist_dir, *rel.split("/"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp_link = os.path.join(work, "link-" + sha)
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.link(obj, tmp_link)
    os.replace(tmp_link, dest)
    return {"path": rel, "sha256": sha, "size": len(data), "mode": 0o644}

