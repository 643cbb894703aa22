"""`pip-omni run --matrix` makes its bubbles in its own process, and a cell starts as soon as
the bubbles of its pins are published (omnipkg_pip/run/ondemand.py, ``Making``).

The order is proved with a loopback index that holds back one wheel until a cell has run,
never with a clock: a run that waited for every bubble before its first cell would hold
that wheel until the gate gives up, and the test says so."""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from simple_index import index, venv  # noqa: E402, F401 (fixtures)
from test_interpreters import need  # noqa: E402

from run.test_kept_zygote import _wait_gone  # noqa: E402

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHER = "3.12" if HERE != "3.12" else "3.13"

# every Popen of every Python process of the venv (pip-omni itself, pip, the cells), logged
POPEN_LOG_PTH = (
    "import os, sys; p = os.environ.get('OMNI_TEST_POPEN_LOG'); p and sys.addaudithook(lambda e, a, p=p: "
    "e == 'subprocess.Popen' and open(p, 'a').write(repr([os.fsdecode(x) for x in a[1]]) + chr(10)))\n"
)

MARK = """\
import os, sys, lib
here = os.path.dirname(os.path.abspath(__file__))
open(os.path.join(here, "ran-%s-%d.%d" % ((lib.V,) + sys.version_info[:2])), "w").write(str(os.getpid()))
print("lib", lib.V, "on", "%d.%d" % sys.version_info[:2])
"""

SLEEPER = """\
import os, time, lib
here = os.path.dirname(os.path.abspath(__file__))
open(os.path.join(here, "pid-" + lib.V), "w").write(str(os.getpid()))
try:
    time.sleep(120)
except KeyboardInterrupt:
    open(os.path.join(here, "ki-" + lib.V), "w").write("KeyboardInterrupt")
    raise
"""


class Gate(dict):
    """``index.files`` that holds one wheel back until ``until()`` holds (or :meth:`open`, or
    ``limit`` seconds: so a run that never lets it through ends, and the test sees it)."""

    def __init__(self, files: dict, held: str, until, limit: float = 90.0) -> None:
        super().__init__(files)
        self.held, self.until, self.limit = held, until, limit
        self.opened = threading.Event()
        self.outcome: list[str] = []  # per request of the held wheel: "cell ran first" or "gave up"

    def open(self) -> None:
        self.opened.set()

    def __getitem__(self, name: str) -> bytes:
        if name == self.held:
            end = time.monotonic() + self.limit
            while not self.until() and not self.opened.is_set() and time.monotonic() < end:
                time.sleep(0.02)
            self.outcome.append("cell ran first" if self.until() else "gave up")
        return super().__getitem__(name)


def _libs(index) -> dict[str, str]:
    names = {v: index.add("lib", v, files={"lib/__init__.py": f"V = {v!r}\n"}).name for v in ("1.0", "2.0", "3.0")}
    for name in names.values():  # the pages list these: they do not read the files (which a Gate holds back)
        index.listed_sha[name] = index.sha(name)
    return names


def _env(venv, index) -> dict:
    return {**venv.env, "PIP_INDEX_URL": f"{index.url}/simple",
            "OMNIPKG_RUNTIME_DIR": os.environ["OMNIPKG_RUNTIME_DIR"]}


def test_the_bubbles_of_two_interpreters_are_made_with_no_install_process(omni_venv, libs, wheelhouse, tmp_path):
    need(OTHER)
    omni_venv.cli("python", "adopt", OTHER)
    (omni_venv.site / "_popen_log.pth").write_text(POPEN_LOG_PTH)
    (tmp_path / "mark.py").write_text(MARK)
    log = tmp_path / "popen.log"
    proc = omni_venv.run("run", "--matrix", "lib=1.0,2.0,3.0", "--python", f"{HERE},{OTHER}", "--no-index",
                         "-f", str(wheelhouse), "--json", "--", "mark.py", cwd=tmp_path,
                         env={"OMNI_TEST_POPEN_LOG": str(log)})
    rows = json.loads(proc.stdout)
    assert sorted((r["cell"], r["python"], r["exit"]) for r in rows) == sorted(
        (f"lib={v}", py, 0) for v in ("1.0", "2.0", "3.0") for py in (HERE, OTHER))
    for v in ("1.0", "2.0", "3.0"):
        for py in (HERE, OTHER):
            assert (tmp_path / f"ran-{v}-{py}").exists()  # each cell ran under its interpreter with its version
    started = [ast.literal_eval(line) for line in log.read_text().splitlines()]
    # the log sees the processes pip-omni starts: pip, for each interpreter (the -f source is compared)...
    assert any(cmd[1:3] == ["-m", "pip"] and "--dry-run" in cmd for cmd in started), started
    pythons = {cmd[0] for cmd in started if cmd[1:3] == ["-m", "pip"]}
    assert len(pythons) == 2, pythons
    # ...and no `pip-omni install`: its code ran in the `pip-omni run` process
    assert not [cmd for cmd in started if "omnipkg_pip" in cmd and "install" in cmd], started
    assert proc.stderr.count("pip-omni: make 3 bubbles ...") == 2  # its progress all the same


def test_a_cell_starts_while_another_cells_bubble_is_still_being_made(venv, index, tmp_path):
    names = _libs(index)
    (tmp_path / "mark.py").write_text(MARK)
    ran = tmp_path / f"ran-1.0-{HERE}"
    gate = index.files = Gate(index.files, names["3.0"], ran.exists)
    try:
        proc = subprocess.run([str(venv.path / "bin" / "pip-omni"), "run", "--matrix", "lib=1.0,3.0", "--jobs", "2",
                               "--json", "--", "mark.py"], cwd=tmp_path, env=_env(venv, index),
                              capture_output=True, text=True, timeout=300)
    finally:
        gate.open()
    assert proc.returncode == 0, proc.stderr
    # lib 3.0's wheel was served only once the lib=1.0 cell had run: before its bubble could be published
    assert gate.outcome and set(gate.outcome) == {"cell ran first"}, (gate.outcome, proc.stderr)
    rows = json.loads(proc.stdout)
    assert [(r["cell"], r["exit"]) for r in rows] == [("lib=1.0", 0), ("lib=3.0", 0)]  # the table's order
    assert (tmp_path / f"ran-3.0-{HERE}").exists()


def test_ctrl_c_while_a_bubble_is_being_made_stops_the_cells_and_the_run(venv, index, tmp_path):
    names = _libs(index)
    (tmp_path / "prog.py").write_text(SLEEPER)
    gate = index.files = Gate(index.files, names["3.0"], lambda: False, limit=240)
    store = venv.env["OMNIPKG_STORE"]
    proc = subprocess.Popen([str(venv.path / "bin" / "pip-omni"), "run", "--matrix", "lib=1.0,3.0", "--jobs", "2",
                             "--json", "--", "prog.py"], cwd=tmp_path, env=_env(venv, index),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        pid_file = tmp_path / "pid-1.0"
        deadline = time.monotonic() + 240
        while not (pid_file.exists() and pid_file.read_text()):  # the lib=1.0 cell runs; 3.0 is held back
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        cell = int(pid_file.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)  # the held wheel is still held: the run does not wait for it
    finally:
        gate.open()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1]
    assert (tmp_path / "ki-1.0").read_text() == "KeyboardInterrupt"  # the cell got the ^C, as python ends on it
    assert _wait_gone(cell, 30)
    assert not (tmp_path / "pid-3.0").exists()  # its bubble was not made: that cell never started
    assert not os.path.exists(os.path.join(store, "bubbles", "lib", "3.0"))
    assert os.listdir(os.path.join(store, "bubbles", "lib")) == ["1.0"]

