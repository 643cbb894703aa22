"""A cell zygote compiles ahead the sources of the wheels its owner is making bubbles of
(COMPILE; omnipkg_hook/workers/zygote.py), and a forked cell that imports those sources from
a dist with no ``.pyc`` takes the code object instead of compiling (omnipkg_hook/uncompiled.py):
the same module, its file name its own, and nothing but the same bytes ever gets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cells are forked on Linux only")

LIB = "V = {v!r}\ndef version():\n    return V\n"

# A cell program: serve `src` from its sources as the hook serves a dist with no .pyc, import
# `lib` from there, and say where its code came from.
CELL = """\
import json, sys
import omnipkg_hook.uncompiled as u
from omnipkg_hook.finder import FINDER
src = {src!r}
u.serve_from_sources(FINDER, src)
sys.path.insert(0, src)
import lib
print(json.dumps({{"V": lib.V, "used": u.USED[0], "left": len(u.PRECOMPILED),
                  "file": lib.version.__code__.co_filename, "own": lib.__file__}}))
"""


def _cell(z, code: str) -> dict:
    r, w = os.pipe()
    pid = z.start([], ["-c", code], None, out=w, err=w)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        text = f.read()
    assert z.wait(pid) == 0, text
    return json.loads(text.splitlines()[-1])


def _until_used(z, code: str, tries: int = 60) -> dict:
    """Fork cells until one imports precompiled code: the zygote compiles only while no
    request waits, so the first forks may come before it has."""
    for _ in range(tries):
        got = _cell(z, code)
        if got["used"]:
            return got
        time.sleep(0.05)
    raise AssertionError(f"no cell took precompiled code in {tries} forks: {got}")


def _zygote(tmp_path, keep=0):
    from omnipkg_pip.run import matrix
    from omnipkg_pip.run.cellfork import CellZygote

    return CellZygote(sys.executable, matrix.cell_env(str(tmp_path / "store")), str(tmp_path), [], keep=keep).ready()


def _tell(ahead, paths, cells):
    """A COMPILE as the owner sends it: the wheels' names, and their files as descriptors."""
    from omnipkg_hook.workers import protocol as P

    ahead.add(P.dumps({"wheels": [str(p) for p in paths], "cells": cells}), [os.open(p, os.O_RDONLY) for p in paths])


def _wheel_and_sources(wheel, tmp_path, version="1.0"):
    path = wheel("lib", version, files={"lib/__init__.py": LIB.format(v=version)})
    src = tmp_path / f"src-{version}"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "__init__.py").write_text(LIB.format(v=version))
    return str(path), str(src)


def test_a_forked_cell_imports_the_code_its_zygote_compiled_ahead(wheel, tmp_path):
    path, src = _wheel_and_sources(wheel, tmp_path)
    z = _zygote(tmp_path)
    try:
        assert _cell(z, CELL.format(src=src))["used"] == 0  # nothing asked yet: the cell compiles
        z.compile_ahead([path], cells=1000)
        got = _until_used(z, CELL.format(src=src))
        # the module is the one its source makes, and its code names its own file
        assert got["V"] == "1.0" and got["used"] == 1 and got["left"] == 0
        assert got["file"] == got["own"] == os.path.join(src, "lib", "__init__.py")
    finally:
        z.close()


def test_a_wheel_removed_before_the_zygote_reads_it_is_compiled_all_the_same(wheel, tmp_path):
    """A bubble's wheels are removed once it is made, and a zygote still importing pytest may
    read its COMPILE only after that: the wheel goes as an open file, not as a path."""
    from omnipkg_pip.run import matrix
    from omnipkg_pip.run.cellfork import CellZygote

    path, src = _wheel_and_sources(wheel, tmp_path)
    z = CellZygote(sys.executable, matrix.cell_env(str(tmp_path / "store")), str(tmp_path), [], keep=0)
    try:
        z.compile_ahead([path], cells=1000)  # sent before the zygote is ready: it reads it later
        os.unlink(path)
        got = _until_used(z.ready(), CELL.format(src=src))
        assert got["V"] == "1.0" and got["used"] == 1
    finally:
        z.close()


def test_precompiled_code_serves_only_the_same_bytes(wheel, tmp_path):
    """The cell's source differs from the wheel's (another build, an edited file): the key is
    the sha256 of what the cell read, so it compiles its own, and the entry stays unused."""
    path, _src = _wheel_and_sources(wheel, tmp_path, "1.0")
    other = tmp_path / "other"
    (other / "lib").mkdir(parents=True)
    (other / "lib" / "__init__.py").write_text(LIB.format(v="1.0") + "# edited\n")
    same_code = CELL.format(src=_src)
    z = _zygote(tmp_path)
    try:
        z.compile_ahead([path], cells=1000)
        _until_used(z, same_code)  # compiled by now
        got = _cell(z, CELL.format(src=str(other)))
        assert got == {**got, "V": "1.0", "used": 0, "left": 1}
    finally:
        z.close()


def test_a_cell_takes_a_precompiled_entry_by_the_sha256_of_its_source(tmp_path):
    """The loader's side alone: an entry under the sha256 of the file's bytes is what the
    import executes (here one made of other source, to tell the two apart), once, with the
    file's own name; a file of other bytes is compiled as usual."""
    (tmp_path / "m.py").write_text("X = 'compiled here'\n")
    (tmp_path / "n.py").write_text("X = 'n'\n")
    prog = f"""
import hashlib, sys
import omnipkg_hook.uncompiled as u
from omnipkg_hook.finder import FINDER
d = {str(tmp_path)!r}
u.serve_from_sources(FINDER, d)
sys.path.insert(0, d)
key = hashlib.sha256(open(d + "/m.py", "rb").read()).digest()
u.PRECOMPILED[key] = compile("X = 'ahead'\\ndef f():\\n    pass\\n", "wheel/m.py", "exec", dont_inherit=True)
import m, n
print(m.X, m.f.__code__.co_filename == m.__file__, n.X, u.USED[0], len(u.PRECOMPILED))
"""
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ahead", "True", "n", "1", "0"]


def _hostile(wheelhouse):
    """Archives a zygote must shrug off: not a zip, cut short, a member larger than it reads,
    one that does not compile, one that is not UTF-8, a path outside the dist."""
    bad = []
    p = wheelhouse / "notazip-1.0-py3-none-any.whl"
    p.write_bytes(b"PK\x03\x04 this is not a zip archive")
    bad.append(p)
    p = wheelhouse / "big-1.0-py3-none-any.whl"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big/__init__.py", b"#" * (5 << 20))  # 5 MiB that deflate to a few KiB
        zf.writestr("big/syntax.py", b"def broken(:\n")
        zf.writestr("big/latin.py", b"X = '\xe9'\n")
        zf.writestr("../escape.py", b"X = 1\n")
    bad.append(p)
    whole = p.read_bytes()
    p = wheelhouse / "cut-1.0-py3-none-any.whl"
    p.write_bytes(whole[: len(whole) // 2])
    bad.append(p)
    return [str(b) for b in bad]


def _files(folder) -> dict:
    """What writing would change of each file in ``folder``: inode, size, mtime, mode."""
    out = {}
    for name in os.listdir(folder):
        st = os.stat(os.path.join(folder, name))
        out[name] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def test_hostile_wheels_cost_the_zygote_nothing(wheel, wheelhouse, tmp_path):
    """Bad archives are skipped: the zygote still compiles the good wheel after them, forks,
    writes nothing, and a source that does not compile fails in the cell with its own name."""
    path, src = _wheel_and_sources(wheel, tmp_path)
    hostile = _hostile(wheelhouse)
    before = _files(wheelhouse)
    z = _zygote(tmp_path)
    try:
        z.compile_ahead([*hostile, path], cells=1000)
        assert _until_used(z, CELL.format(src=src))["V"] == "1.0"
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "syntax.py").write_bytes(b"def broken(:\n")
        r, w = os.pipe()
        prog = (f"import sys; import omnipkg_hook.uncompiled as u; from omnipkg_hook.finder import FINDER; "
                f"u.serve_from_sources(FINDER, {str(tmp_path / 'bad')!r}); sys.path.insert(0, {str(tmp_path / 'bad')!r}); "
                "import syntax")
        pid = z.start([], ["-c", prog], None, out=w, err=w)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            text = f.read().decode()
        assert z.wait(pid) == 1
        assert "SyntaxError" in text and os.path.join(str(tmp_path), "bad", "syntax.py") in text
    finally:
        z.close()
    assert _files(wheelhouse) == before  # read (atime may move), never written
    assert z.proc.popen.wait(10) == 0


def test_a_kept_zygote_forgets_one_clients_code_before_the_next(wheel, tmp_path, runtime_dir):
    path, src = _wheel_and_sources(wheel, tmp_path)
    first = _zygote(tmp_path, keep=30)
    try:
        first.compile_ahead([path], cells=1000)
        _until_used(first, CELL.format(src=src))
        pid = first.proc.pid
    finally:
        first.close()
    second = _zygote(tmp_path, keep=30)
    try:
        assert second.proc.pid == pid  # the same kept zygote
        assert _cell(second, CELL.format(src=src))["used"] == 0
    finally:
        second.close()


def test_the_zygote_stops_compiling_once_every_cell_has_started(wheel):
    """``cells``: after that many forks what is still queued is dropped (compiling then would
    only take the cores from the cells)."""
    from omnipkg_hook.workers.zygote import _Ahead

    ahead = _Ahead()
    _tell(ahead, [str(wheel("lib", "1.0")), str(wheel("lib", "2.0"))], 2)
    assert ahead.busy()
    ahead.forked()
    assert ahead.busy()  # one cell is still to come
    ahead.forked()
    assert not ahead.busy()
    _tell(ahead, [str(wheel("lib", "3.0"))], 2)  # told after the last fork
    assert not ahead.busy()


def test_the_zygote_pauses_for_the_last_cell_while_its_siblings_take_every_core(wheel):
    """Two cells or more to come: compiling a source they share once spares a compile in each.
    Only the last to come: compiling it here merely moves its work onto cores its running
    siblings need, so it waits until a core is free of cells."""
    from omnipkg_hook.workers.zygote import _Ahead

    cores = os.cpu_count() or 1
    ahead = _Ahead()
    _tell(ahead, [wheel("lib", "1.0"), wheel("lib", "2.0"), wheel("lib", "3.0")], 3)
    assert ahead.worth(live=cores + 5)  # three to come
    ahead.forked()
    assert ahead.worth(live=cores + 5)  # two to come
    ahead.forked()
    assert not ahead.worth(live=cores) and ahead.busy()  # the last one: paused, not dropped
    assert ahead.worth(live=cores - 1)


def test_a_compile_frame_whose_files_do_not_match_its_names_is_ignored_and_its_files_closed(wheel):
    from omnipkg_hook.workers import protocol as P
    from omnipkg_hook.workers.zygote import _Ahead

    path = wheel("lib", "1.0")
    fds = [os.open(path, os.O_RDONLY), os.open(path, os.O_RDONLY)]
    ahead = _Ahead()
    ahead.add(P.dumps({"wheels": [str(path)], "cells": 2}), fds)  # one name, two files
    assert not ahead.busy()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    ahead.add(b"not a frame", [os.open(path, os.O_RDONLY)])
    assert not ahead.busy()


def test_what_a_zygote_compiles_first_is_what_a_cell_imports_first(wheel):
    """Packages first, then modules by how many siblings import them at their top level; a
    module only a function imports (a leaf, as ``rich.progress``) is left to the cell."""
    from omnipkg_hook.workers.zygote import _Ahead

    path = wheel("pkg", "1.0", files={
        "pkg/__init__.py": "from .b import B\n",
        "pkg/a.py": "A = 1\n",
        "pkg/b.py": "from pkg.a import A\nfrom . import c\nB = A\n",
        "pkg/c.py": "import pkg.a\n",
        "pkg/leaf.py": "def f():\n    from . import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/data.txt": "not a source",
    })
    ahead = _Ahead()
    _tell(ahead, [str(path)], 5)
    ahead.step()  # reads the wheel
    assert ahead.pending() == ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py"]


def test_a_source_two_wheels_share_is_scanned_for_its_imports_once(wheel, monkeypatch):
    """The versions of a project share most of their sources: what one imports is read once."""
    from omnipkg_hook.workers import zygote

    files = {"pkg/__init__.py": "from . import core\n", "pkg/core.py": "from . import util\n", "pkg/util.py": "U = 1\n"}
    one = wheel("pkg", "1.0", files=files)
    two = wheel("pkg", "2.0", files={**files, "pkg/util.py": "U = 2\n"})
    scanned = []
    real = zygote._imports_of
    monkeypatch.setattr(zygote, "_imports_of", lambda m, p, d: scanned.append(m) or real(m, p, d))
    ahead = zygote._Ahead()
    _tell(ahead, [one, two], 2)
    ahead.step()
    ahead.step()
    assert sorted(scanned) == ["pkg", "pkg.core", "pkg.util", "pkg.util"]  # util differs; the rest once
    assert ahead.pending() == ["pkg/__init__.py", "pkg/core.py", "pkg/util.py", "pkg/util.py"]


def test_a_source_several_wheels_share_is_compiled_before_one_only_a_wheel_has(wheel):
    """Compiled once in the zygote, a source two versions share spares a compile in each of
    their cells: it comes first, whatever the order the wheels came in."""
    from omnipkg_hook.workers.zygote import _Ahead

    shared = "from . import util\nX = 1\n"
    one = wheel("pkg", "1.0", files={"pkg/__init__.py": "from . import core\n", "pkg/core.py": shared,
                                     "pkg/util.py": "U = 1\n"})
    two = wheel("pkg", "2.0", files={"pkg/__init__.py": "from . import core\n", "pkg/core.py": shared,
                                     "pkg/util.py": "U = 2\n"})
    ahead = _Ahead()
    _tell(ahead, [str(one), str(two)], 2)
    ahead.step()
    ahead.step()  # both read before anything is compiled
    assert ahead.pending() == ["pkg/__init__.py", "pkg/core.py", "pkg/util.py", "pkg/util.py"]
    ahead.step()
    ahead.step()
    from omnipkg_hook.uncompiled import PRECOMPILED

    assert len(PRECOMPILED) == 2 and ahead.pending() == ["pkg/util.py", "pkg/util.py"]
    ahead.clear()


def test_once_a_cell_has_started_what_only_its_own_wheel_holds_is_dropped(wheel):
    """The cell of pkg 1.0 has forked: compiling 1.0's own util.py could serve no cell to come,
    only take a core from the running ones; 2.0's stays queued."""
    from omnipkg_hook.workers import protocol as P
    from omnipkg_hook.workers.zygote import _Ahead

    one = wheel("pkg", "1.0", files={"pkg/__init__.py": "from . import util\n", "pkg/util.py": "U = 1\n"})
    two = wheel("pkg", "2.0", files={"pkg/__init__.py": "from . import util\n", "pkg/util.py": "U = 2\n"})
    three = wheel("pkg", "3.0", files={"pkg/__init__.py": "from . import util\n", "pkg/util.py": "U = 3\n"})
    ahead = _Ahead()
    _tell(ahead, [str(one), str(two), str(three)], 3)
    ahead.step()
    ahead.step()  # 1.0 and 2.0 read; 3.0 still queued
    ahead.forked(P.dumps({"pins": ["Pkg==1.0"], "env": {}}))
    assert ahead.pending() == ["pkg/__init__.py", "pkg/util.py"]  # the shared __init__, 2.0's util
    ahead.forked(P.dumps({"pins": ["pkg==3.0"], "env": {}}))
    assert [w.rsplit("/", 1)[-1] for w in ahead.wheels] == []  # 3.0's cell started: its wheel is not read
    ahead.step()
    assert ahead.pending() == ["pkg/util.py"]
    ahead.forked(P.dumps({"pins": ["not a pin"], "env": {}}))  # the last cell: nothing is left
    assert not ahead.busy()


def test_a_cold_matrix_serves_its_cells_from_code_compiled_ahead(omni_venv, libs, wheelhouse, tmp_path):
    """End to end: the bubbles of a cold `--matrix` are made in its process, each axis wheel
    goes to the zygote as it is fetched, and every cell gets its own version, its code naming
    its own file, whether it took code compiled ahead or compiled it itself (which of the two
    depends on timing; the tests above pin down each)."""
    prog = ("import lib, omnipkg_hook.uncompiled as u; "
            "print(lib.V, lib.version.__code__.co_filename == lib.__file__, u.USED[0])")
    proc = subprocess.run([str(omni_venv.path / "bin" / "pip-omni"), "run", "--matrix", "lib=1.0,2.0,3.0",
                           "--no-index", "-f", str(wheelhouse), "--stream", "--", "-c", prog],
                          cwd=tmp_path, env=omni_venv.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    outputs = dict(line.split("] ", 1) for line in proc.stdout.splitlines() if line.startswith("[lib="))
    assert {c: o.split()[:2] for c, o in outputs.items()} == {
        f"[lib={v} py{here}": [v, "True"] for v in ("1.0", "2.0", "3.0")}

