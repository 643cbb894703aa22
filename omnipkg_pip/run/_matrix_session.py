"""The parent side of ``pytest --omnipkg-matrix`` (see :mod:`omnipkg_pip.pytest_plugin`).

This process collects nothing and runs nothing itself: it starts one child pytest per cell
(``python -c BOOT runner --pins P -- -m pytest ARGS``: the pins applied strictly, exactly
as ``pip-omni run`` applies them), reads the reports each child writes to its pipe, and
replays them here, in the main thread, with the cell appended to the test id.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading

import pytest

from ..pytest_plugin import _CACHE_OPTS, _OURS, REPORT_FD
from . import matrix, ondemand

__all__ = ["MatrixSession"]


class _Cell:
    def __init__(self, axes: list[tuple[str, str]]) -> None:
        self.axes = axes
        self.pins = [f"{n}=={v}" for n, v in axes if v != matrix.MAIN]
        self.label = ",".join(f"{n}={v}" for n, v in axes)
        self.collected = 0
        self.exit: int | None = None
        self.status: int | None = None  # pytest's exit status, from the child's last report
        self.output = b""


def _child_args(args: tuple[str, ...]) -> list[str]:
    """The session's own arguments without ours and without ``--junitxml`` (this process writes it)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _OURS:
            skip = "=" not in arg and name != "--omnipkg-offline"
            continue
        out.append(arg)
    if not any(a.split("=", 1)[0] in _CACHE_OPTS for a in out):
        out += ["-p", "no:cacheprovider"]  # cells would race on .pytest_cache
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        out += ["-p", "omnipkg_pip.pytest_plugin"]
    return out


def _tuples(report) -> None:
    """JSON made the report's tuples lists; pytest's reporters check for tuples."""
    if isinstance(getattr(report, "location", None), list):
        report.location = tuple(report.location)
    if isinstance(report.longrepr, list):
        report.longrepr = tuple(report.longrepr)
    report.sections = [tuple(s) for s in report.sections]


class MatrixSession:
    def __init__(self, config) -> None:
        from itertools import product

        from omnipkg_hook.store import Store

        self.config = config
        axes = matrix.parse_axes(config.getoption("omnipkg_matrix"))
        self.cells = [_Cell(list(c)) for c in product(*[[(n, v) for v in vs] for n, vs in axes])]
        self.grid: dict[str, dict[str, str]] = {}  # test id -> cell label -> outcome
        self.crashed: list[_Cell] = []
        self.stopping = False
        self.spawned: set = set()  # cells started the slow way, while they run
        self.store = Store()
        self.env = matrix.cell_env(self.store.root)
        self.env["PYTEST_ADDOPTS"] = ""  # already in the arguments the parent saw
        # started now: the zygote's interpreter and imports overlap this session's own start
        self.zygotes = matrix.Zygotes(self.env, str(config.invocation_params.dir), ["-m", "pytest"],
                                      [sys.executable] * len(self.cells))
        self.events: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.finished: list[threading.Event] = []  # one per thread, set when it ends
        self.failed: BaseException | None = None  # _prepare's error, raised where the cells are awaited
        self.started = self.replayed = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session) -> None:
        """The cells start here, when the session starts: they run while it goes on (the
        other plugins' ``pytest_sessionstart``: the fixture scan, the header; collection:
        ~20 ms), their reports wait in ``events`` for :meth:`pytest_runtestloop`, which
        replays them in the main thread. Not for ``--fixtures`` and
        ``--fixtures-per-test``: those sessions run no tests (nor, before, any cell)."""
        option = self.config.option
        if not (getattr(option, "showfixtures", False) or getattr(option, "show_fixtures_per_test", False)):
            self._start()

    def _start(self) -> None:
        self.started = True
        try:
            self._prepare()
        except BaseException as e:  # raised in pytest_runtestloop, where it always was
            self.failed = e
            return
        jobs = self.config.getoption("omnipkg_jobs") or os.cpu_count() or 1
        gate = threading.Semaphore(max(1, jobs))
        # each cell's thread is waited for by an Event of its own, not join(): a join that ^C
        # interrupts marks a running thread stopped (CPython before 3.13), see run/matrix.py
        self.finished = [threading.Event() for _ in self.cells]
        self.threads = [threading.Thread(target=self._run_then_set, args=(cell, self.events, gate, finished),
                                         daemon=True)
                        for cell, finished in zip(self.cells, self.finished)]
        for t in self.threads:
            t.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session) -> bool:
        session.items = []
        return True  # the children collect

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session) -> bool:
        if not self.started:
            self._start()
        if self.failed is not None:
            raise self.failed
        self.replayed = True
        events = self.events
        done = 0
        try:
            while done < len(self.cells):
                cell, kind, data = events.get()
                if kind == "eof":
                    done += 1
                    if cell.status is None:
                        self.crashed.append(cell)
                else:
                    self._replay(session, cell, kind, data)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        self._wait_threads()
        return True

    def _wait_threads(self) -> None:
        for finished in self.finished:
            finished.wait()

    def _interrupted(self) -> None:
        """^C: no new cell starts; the running ones get it (forwarded to those of a kept
        zygote, which are not in the terminal's process group) and are waited for, however
        many times ^C comes again."""
        self.stopping = True
        while True:
            self.zygotes.interrupt()
            try:
                self._wait_threads()
                return
            except KeyboardInterrupt:
                continue

    def pytest_unconfigure(self, config) -> None:
        if self.threads and not self.replayed:  # the session ended before its test loop (an error, ^C)
            self.stopping = True
            self.zygotes.kill()
            for proc in list(self.spawned):
                proc.kill()
            self._wait_threads()
        self.zygotes.close()
        ondemand.compile_later()  # the bubbles _prepare made: compiled now that the cells have ended

    def _prepare(self) -> None:
        store = self.store
        wanted = list(dict.fromkeys(p for c in self.cells for p in c.pins))
        missing = ondemand.missing_here(wanted, store)
        version = ".".join(map(str, sys.version_info[:3]))
        ondemand.make_bubbles(sys.executable, version, missing, offline=self.config.getoption("omnipkg_offline"),
                              index=[])

    def _run_then_set(self, cell: _Cell, events: queue.Queue, gate, finished: threading.Event) -> None:
        try:
            self._run(cell, events, gate)
        finally:
            finished.set()

    def _run(self, cell: _Cell, events: queue.Queue, gate) -> None:
        from omnipkg_hook.errors import OmnipkgError
        from omnipkg_hook.workers import spawn

        slot = matrix.Slot(gate)  # given back once the cell's program has returned (its shutdown overlaps the next)
        try:
            if self.stopping:
                events.put((cell, "eof", None))
                return
            target = ["-m", "pytest", *_child_args(self.config.invocation_params.args)]
            read, write = os.pipe()
            out_r, out_w = os.pipe()
            pid = proc = None
            try:
                zygote = self.zygotes.get(sys.executable)
                if zygote is not None:
                    try:
                        pid = zygote.start(cell.pins, target, None, out=out_w, err=out_w, extra={REPORT_FD: write})
                    except (OSError, OmnipkgError) as e:  # the zygote died: this cell the slow way
                        sys.stderr.write(f"pip-omni: {e}\n")
                if pid is None:
                    args = ["--pins", ",".join(cell.pins)] if cell.pins else []
                    env = {**self.env, REPORT_FD: str(write)}
                    proc = subprocess.Popen(spawn.command(sys.executable, "runner", [*args, "--", *target]), env=env,
                                            cwd=str(self.config.invocation_params.dir), pass_fds=[write],
                                            stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w)
                    self.spawned.add(proc)
            finally:
                os.close(write)
                os.close(out_w)
            out: list[bytes] = []
            drain = threading.Thread(target=lambda: out.append(matrix._read_all(out_r)), daemon=True)
            drain.start()
            with os.fdopen(read, encoding="utf-8") as reports:
                for line in reports:
                    kind, data = json.loads(line)
                    events.put((cell, kind, data))
            if pid is not None:
                zygote.program_ended(pid)
                slot.release()
            cell.exit = zygote.wait(pid) if pid is not None else proc.wait()
            self.spawned.discard(proc)
            drain.join()
            cell.output = b"".join(out)
        finally:
            slot.release()
        events.put((cell, "eof", None))

    def _replay(self, session, cell: _Cell, kind: str, data) -> None:
        hook = self.config.hook
        if kind == "collected":
            cell.collected = data
            session.testscollected += data
        elif kind == "finish":
            cell.status = data
        elif kind in ("test", "collect"):
            report = hook.pytest_report_from_serializable(config=self.config, data=data)
            _tuples(report)
            base = report.nodeid
            report.nodeid = f"{base}[{cell.label}]"
            if kind == "collect":
                self._outcome(base, cell, "error")
                hook.pytest_collectreport(report=report)
                return
            if report.when == "setup":
                hook.pytest_runtest_logstart(nodeid=report.nodeid, location=report.location)
            hook.pytest_runtest_logreport(report=report)
            if report.failed:
                self._outcome(base, cell, "error" if report.when != "call" else "FAILED")
            elif report.skipped and report.when != "teardown":
                self._outcome(base, cell, "xfail" if hasattr(report, "wasxfail") else "skipped")
            elif report.when == "call":
                self._outcome(base, cell, "passed")
            if report.when == "teardown":
                hook.pytest_runtest_logfinish(nodeid=report.nodeid, location=report.location)

    def _outcome(self, test: str, cell: _Cell, outcome: str) -> None:
        row = self.grid.setdefault(test, {})
        if row.get(cell.label) not in ("FAILED", "error"):
            row[cell.label] = outcome

    def pytest_terminal_summary(self, terminalreporter) -> None:
        tr = terminalreporter
        labels = [c.label for c in self.cells]
        tr.write_sep("=", f"omnipkg matrix: {len(self.grid)} tests x {len(labels)} cells")
        bad = {t: row for t, row in self.grid.items() if any(v in ("FAILED", "error") for v in row.values())}
        for cell in self.crashed:
            tr.write_line(f"cell {cell.label}: pytest did not finish (exit status {cell.exit}); its output:")
            tr.write_line(cell.output.decode("utf-8", "replace").rstrip())
        if not bad:
            tr.write_line(f"no test failed in any cell ({', '.join(labels)})")
            return
        width = max(len(t) for t in [*bad, "test"])
        widths = [max(len(lb), 7) for lb in labels]
        tr.write_line("test".ljust(width) + "  " + "  ".join(lb.ljust(w) for lb, w in zip(labels, widths)))
        for test, row in sorted(bad.items()):
            cells = [row.get(lb, "-").ljust(w) for lb, w in zip(labels, widths)]
            tr.write_line(test.ljust(width) + "  " + "  ".join(cells).rstrip())
        tr.write_line(f"{len(self.grid) - len(bad)} other tests passed or were skipped in every cell")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        if self.crashed and session.exitstatus in (0, 5):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
