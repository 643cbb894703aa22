"""Cells forked from a zygote (`--matrix`, the plugin): the same results as a fresh
interpreter per cell, the pins honoured, and a pin the zygote cannot honour run the slow way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cells are forked on Linux only")

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"

PROG = """\
import atexit, os, sys, threading, time, lib
atexit.register(lambda: print("atexit", lib.V, flush=True))
print("lib", lib.V, "ppid", os.getppid(), "argv", sys.argv[1:], "path0",
      sys.path[0] == os.path.dirname(os.path.realpath(__file__)), flush=True)
sys.stdout.write("unflushed " + lib.V)  # python flushes it at exit, unless killed
KEPT = open(lib.V + ".log", "w")  # open until the end: python flushes it as it frees it
KEPT.write("kept " + lib.V)
def late():
    time.sleep(0.1)
    print(" thread", lib.V, flush=True)
threading.Thread(target=late).start()  # python joins it before atexit
if lib.V == "2.0":
    sys.exit(3)
if lib.V == "3.0":
    os.kill(os.getpid(), 9)
"""


def _matrix(venv, *args, cwd, env=None):
    proc = subprocess.Popen([str(venv.path / "bin" / "pip-omni"), "run", *args], cwd=cwd, text=True,
                            env={**venv.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    return proc.pid, proc.returncode, out, err


@pytest.mark.parametrize("fork", ["1", "0"])
def test_forked_cells_end_as_python_ends(omni_venv, libs, wheelhouse, tmp_path, fork):
    (tmp_path / "prog.py").write_text(PROG)
    pid, code, out, err = _matrix(omni_venv, "--matrix", "lib=1.0,2.0,3.0", "--no-index", "-f", str(wheelhouse),
                                  "--stream", "--json", "--", "prog.py", "a", cwd=tmp_path,
                                  env={"OMNIPKG_MATRIX_FORK": fork, "PYTHONUNBUFFERED": ""})
    assert code == 3, err
    assert [(r["cell"], r["exit"]) for r in json.loads(out)] == [("lib=1.0", 0), ("lib=2.0", 3), ("lib=3.0", 137)]
    lines = {}
    for line in err.splitlines():
        m = re.match(rf"\[lib=(\S+) py{HERE}\] (.*)", line)
        if m:
            lines.setdefault(m.group(1), []).append(m.group(2))
    parents = set()
    for v in ("1.0", "2.0", "3.0"):
        first = lines[v][0].split()
        assert first[:2] == ["lib", v] and lines[v][0].endswith("argv ['a'] path0 True"), lines[v]
        parents.add(int(first[3]))
    # the thread joined, then atexit, then the flush, as python does
    assert lines["1.0"][1:] == ["unflushed 1.0 thread 1.0", "atexit 1.0"]
    assert lines["2.0"][1:] == ["unflushed 2.0 thread 2.0", "atexit 2.0"]  # SystemExit too
    assert lines["3.0"][1:] == []  # killed: nothing flushed, no atexit
    assert [(tmp_path / f"{v}.log").read_text() for v in ("1.0", "2.0", "3.0")] == ["kept 1.0", "kept 2.0", ""]
    if fork == "1":  # all three are children of one zygote, not of pip-omni
        assert len(parents) == 1 and pid not in parents
    else:
        assert parents == {pid}


FAKE_INICONFIG = """\
VERSION = "99.0"

class ParseError(Exception):
    pass

class SectionWrapper:
    pass

class IniConfig:
    def __init__(self, path, data=None):
        self.path, self.sections = path, {}
"""

SUITE = """\
import iniconfig, os

def test_which():
    print("ICV", getattr(iniconfig, "VERSION", "real"), "PPID", os.getppid())
"""


def test_a_pin_of_what_the_zygote_imported_runs_the_slow_way(venv_with_pytest, wheel, wheelhouse, tmp_path):
    """pytest imports iniconfig, so the zygote has it: a cell pinning another iniconfig gets
    it in a fresh interpreter, while the other cells are forked."""
    wheel("iniconfig", "99.0", files={"iniconfig/__init__.py": FAKE_INICONFIG})
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_ini.py").write_text(SUITE)
    pid, code, out, err = _matrix(venv_with_pytest, "--matrix", "iniconfig=99.0,main", "--jobs", "1",
                                  "--no-index", "-f", str(wheelhouse), "--stream", "--", "-m", "pytest", "-q", "-s",
                                  "-p", "no:cacheprovider", "suite", cwd=tmp_path)
    assert code == 0, out + err
    found = re.findall(r"\[iniconfig=(\S+) py[\d.]+\] .*ICV (\S+) PPID (\d+)", out)
    seen = {cell: v for cell, v, _ in found}
    ppid = {cell: int(p) for cell, _, p in found}
    assert seen.keys() == {"99.0", "main"}
    assert seen["99.0"] == "99.0" and seen["main"] == "real"
    assert ppid["99.0"] == pid  # started by pip-omni itself: the zygote could not honour the pin
    assert ppid["main"] != pid  # forked
    # pytest marks the packages of its plugins' dists for rewriting; ours are imported first
    assert "PytestAssertRewriteWarning" not in out


def test_zygote_preloads_and_reports_the_status(tmp_path):
    """The owner's side directly: what the zygote imported serves the cell; the cell's exit
    status comes back; QUIT ends a zygote that is not kept."""
    from omnipkg_pip.run import matrix
    from omnipkg_pip.run.cellfork import CellZygote

    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "dep.py").write_text("V = 'main'\n")
    env = {**matrix.cell_env(str(tmp_path / "store")), "PYTHONPATH": str(tmp_path / "main")}
    z = CellZygote(sys.executable, env, str(tmp_path), ["dep"], keep=0).ready()
    try:
        assert z.proc.info["preloaded"] == ["dep"]
        r, w = os.pipe()
        pid = z.start([], ["-c", "import dep, sys; print(dep.V); sys.exit(5)"], None, out=w, err=w)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            assert f.read() == b"main\n"
        assert z.wait(pid) == 5
    finally:
        z.close()
    assert z.proc.popen.wait(10) == 0


@pytest.mark.parametrize(("ending", "status", "said"), [
    ("sys.exit()", 0, b""),
    ("sys.exit(None)", 0, b""),
    ("sys.exit(300)", 300 & 0xFF, b""),
    ("sys.exit('bad input')", 1, b"bad input\n"),
    ("raise ValueError('v')", 1, b"ValueError: v\n"),
    ("sys.stdout = open(os.devnull, 'w'); sys.stdout.close()", 0, b""),  # a closed stream is not flushed
    ("class W:\n closed = False\n def write(self, s): pass\n def flush(self): raise OSError('full')\n"
     "sys.stdout = W()", 120, b""),  # a flush that fails at exit: 120
])
def test_a_cell_exits_with_pythons_status(tmp_path, ending, status, said):
    """A forked cell skips the interpreter's teardown (``os._exit`` after atexit and the
    flushes): its status is still the one ``python -c`` gives for each way a program ends."""
    from omnipkg_pip.run import matrix
    from omnipkg_pip.run.cellfork import CellZygote

    code = f"import os, sys\n{ending}\n"
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert plain.returncode == status and said in plain.stderr
    z = CellZygote(sys.executable, matrix.cell_env(str(tmp_path / "store")), str(tmp_path), [], keep=0).ready()
    try:
        r, w = os.pipe()
        pid = z.start([], ["-c", code], None, out=w, err=w)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            text = f.read()
        assert z.wait(pid) == status, text
        assert said in text
    finally:
        z.close()


def test_a_cell_says_when_its_program_has_returned_before_its_shutdown(tmp_path):
    """``program_ended`` returns once the program has returned, while the cell's
    ``atexit`` still runs (here: blocked until the test lets it go); what the cell writes
    then still arrives, and its exit status is the one its shutdown gives."""
    import threading

    from omnipkg_pip.run import matrix
    from omnipkg_pip.run.cellfork import CellZygote

    env = matrix.cell_env(str(tmp_path / "store"))
    z = CellZygote(sys.executable, env, str(tmp_path), [], keep=0).ready()
    gate_r, gate_w = os.pipe()
    try:
        r, w = os.pipe()
        code = ("import atexit, os, sys\n"
                "def bye():\n"
                "    os.read(int(os.environ['GATE']), 1)\n"
                "    print('bye', flush=True)\n"
                "atexit.register(bye)\n"
                "print('ran', flush=True)\n"
                "sys.exit(4)\n")
        pid = z.start([], ["-c", code], None, out=w, err=w, extra={"GATE": gate_r})
        os.close(w)
        os.close(gate_r)
        gate_r = -1
        ended = threading.Thread(target=z.program_ended, args=(pid,), daemon=True)
        ended.start()
        ended.join(60)  # a hang guard: without the signal it waits for the exit, which waits for us
        assert not ended.is_alive(), "program_ended() waited for the cell's exit"
        os.kill(pid, 0)  # still alive: in its atexit
        os.write(gate_w, b"x")
        with os.fdopen(r, "rb") as f:
            assert f.read() == b"ran\nbye\n"
        assert z.wait(pid) == 4
        z.program_ended(pid)  # after the end: returns at once
    finally:
        os.close(gate_w)
        if gate_r >= 0:
            os.close(gate_r)
        z.close()


def test_the_next_cell_starts_when_a_program_returns_not_when_it_exits(tmp_path):
    """``--jobs 1``: cell 2 starts while cell 1 is still in its shutdown (its ``atexit``
    waits for a file cell 2 writes; before, the slot was held until the exit: status 3)."""
    from omnipkg_pip.run import matrix

    class Py:
        executable = sys.executable
        version = ".".join(map(str, sys.version_info[:3]))

    code = ("import atexit, os, sys, time\n"
            "mark = os.path.join(os.environ['MARKS'], 'second')\n"
            "def wait():\n"
            "    for _ in range(600):\n"
            "        if os.path.exists(mark): return\n"
            "        time.sleep(0.05)\n"
            "    os._exit(3)\n"
            "if os.path.exists(os.path.join(os.environ['MARKS'], 'first')):\n"
            "    open(mark, 'w').close()\n"
            "else:\n"
            "    open(os.path.join(os.environ['MARKS'], 'first'), 'w').close()\n"
            "    atexit.register(wait)\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    os.environ["MARKS"] = str(marks)
    try:
        env = matrix.cell_env(str(tmp_path / "store"))
        cell_list = [matrix.Cell([("x", "a")], Py, []), matrix.Cell([("x", "b")], Py, [])]
        zygotes = matrix.Zygotes(env, None, ["-c", code], [sys.executable] * 2)
        assert zygotes.zygotes[sys.executable]
        for z in zygotes.zygotes.values():
            z.keep = 0
        matrix.run_cells(cell_list, ["-c", code], store_root=str(tmp_path / "store"), jobs=1, stream=False,
                         zygotes=zygotes)
    finally:
        del os.environ["MARKS"]
    assert [c.exit for c in cell_list] == [0, 0], [c.output for c in cell_list]


SEEN = """\
import os, sys, lib

def test_seen():
    names = os.environ["NAMES"].split(",")
    print("SEEN", lib.V, ",".join(n for n in names if n in sys.modules), "PPID", os.getppid())
"""


def test_what_a_pytest_zygote_preloads_a_pinned_session_imports_anyway(venv_with_pytest, libs, wheelhouse, tmp_path):
    """The zygote of a pytest matrix imports ahead the standard-library and hook modules of
    ``preload_for``; a test of a forked cell finds exactly those of them that it finds
    under ``OMNIPKG_PINS=... python -m pytest`` (all of them): nothing it could tell apart."""
    from omnipkg_pip.run import matrix
    from omnipkg_pip.run.cellfork import CellZygote, preload_for

    preload = preload_for(["-m", "pytest"])
    names = [n for n in preload if n != "pytest"]
    assert {"runpy", "pdb", "faulthandler", "omnipkg_hook.finder"} <= set(names)
    if hasattr(sys, "stdlib_module_names"):  # the rest is the hook's (standard library only)
        assert {n for n in names if n.split(".")[0] not in sys.stdlib_module_names} <= \
            {"omnipkg_hook.finder", "omnipkg_hook.distributions"}
    z = CellZygote(sys.executable, matrix.cell_env(str(tmp_path / "store")), str(tmp_path), preload, keep=0).ready()
    try:
        assert z.proc.info["preloaded"] == preload and not z.proc.info["preload_errors"]
    finally:
        z.close()

    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_seen.py").write_text(SEEN)
    args = ["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "suite"]
    pid, code, out, err = _matrix(venv_with_pytest, "--matrix", "lib=1.0,2.0", "--no-index", "-f", str(wheelhouse),
                                  "--stream", "--", *args, cwd=tmp_path, env={"NAMES": ",".join(names)})
    assert code == 0, out + err
    found = re.findall(r"\] .*SEEN (\S+) (\S*) PPID (\d+)", out)
    forked = {v: seen for v, seen, _ in found}
    assert len(found) == 2 and all(int(ppid) != pid for _, _, ppid in found), out  # forked from the zygote
    ref = {}
    for v in ("1.0", "2.0"):
        proc = subprocess.run([str(venv_with_pytest.python), *args], cwd=tmp_path, text=True, capture_output=True,
                              env={**venv_with_pytest.env, "OMNIPKG_PINS": f"lib=={v}", "NAMES": ",".join(names)})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        ref.update(re.findall(r"SEEN (\S+) (\S*) PPID", proc.stdout))
    assert forked == ref == {"1.0": ",".join(names), "2.0": ",".join(names)}, (forked, ref)
