"""Several runs of one command: interpreters × ``--matrix`` values, in parallel, one table.

    pip-omni run --matrix rich=13.4.2,13.5.3,main --python 3.9,3.12 -- -m pytest -q

The cells are the product of the axes (``NAME=V1,V2``: exact versions, or ``main`` for the
main environment's copy) and the interpreters. Every bubble a cell needs is checked for
every interpreter first and made on demand, in this process (``--offline`` refuses and
names the command), so nothing runs against a wrong version; a cell starts as soon as the
bubbles of its own pins are published, while the others are still being made, and a cell
whose bubble could not be made is reported as failed (exit status 1, the error as its
output), after which the error names the bubbles not made and the command that retries
them. Cells run in parallel (``--jobs``, default: the
number of CPUs), each in its own process under its interpreter with its pins (the
workers' runner). Output of each cell is kept and shown for the cells that failed;
``--stream`` shows it live, each line prefixed with the cell -- the default when only
``--python`` makes several cells. Then one table (cell, interpreter, exit status, wall
time, and pytest's passed/failed/skipped when the command is pytest); ``--json`` prints
it as JSON on stdout instead (the output goes to stderr)::

    [{"cell": "rich=13.4.2", "pins": "rich==13.4.2", "python": "3.12", "version": "3.12.1",
      "path": "...", "exit": 0, "seconds": 1.2, "passed": 50, "failed": 0, "skipped": 0}]

pip-omni's exit status is the first non-zero exit status of a cell (in table order).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import normalize

from . import ondemand

__all__ = ["Cell", "parse_axes", "cells", "run_cells", "main", "pytest_counts"]

MAIN = "main"


class Cell:
    __slots__ = ("axes", "python", "pins", "exit", "seconds", "output", "counts", "error")

    def __init__(self, axes: list[tuple[str, str]], python, pins: list[str]) -> None:
        self.axes = axes
        self.python = python
        self.pins = pins
        self.exit: int | None = None
        self.seconds = 0.0
        self.output = ""
        self.counts: dict[str, int] | None = None
        self.error: str | None = None  # why it did not run: a bubble of its pins could not be made

    @property
    def name(self) -> str:
        return " ".join(f"{n}={v}" for n, v in self.axes) or "-"

    @property
    def label(self) -> str:
        short = ".".join(self.python.version.split(".")[:2])
        return f"{self.name} py{short}" if self.axes else short

    def row(self) -> dict:
        row = {"cell": self.name, "pins": ",".join(self.pins), "python": ".".join(self.python.version.split(".")[:2]),
               "version": self.python.version, "path": self.python.executable, "exit": self.exit,
               "seconds": round(self.seconds, 3)}
        if self.counts is not None:
            row.update(self.counts)
        if self.error is not None:
            row["error"] = self.error
        return row


def parse_axes(values: list[str]) -> list[tuple[str, list[str]]]:
    """``["rich=13.4.2,13.5.3,main"]`` -> ``[("rich", ["13.4.2", "13.5.3", "main"])]``."""
    from omnipkg_hook._pep440 import InvalidVersion, parse_version

    axes: list[tuple[str, list[str]]] = []
    for text in values:
        name, eq, rest = text.partition("=")
        name = name.strip()
        versions = [v.strip() for v in rest.split(",") if v.strip()]
        if not eq or not name or not versions or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise OmnipkgError(f"--matrix {text!r} is not NAME=V1,V2,...", "e.g. --matrix rich=13.4.2,13.5.3,main")
        for v in versions:
            if v != MAIN:
                try:
                    parse_version(v)
                except InvalidVersion:
                    raise OmnipkgError(f"--matrix {text!r}: {v!r} is not a version",
                                       "give exact versions (13.4.2) or main for the main environment's copy") from None
        if normalize(name) in (normalize(n) for n, _ in axes):
            raise OmnipkgError(f"--matrix names {name!r} twice", "give each distribution one --matrix with all its values")
        axes.append((name, list(dict.fromkeys(versions))))
    return axes


def cells(axes, pythons, base: dict[str, list[str]]) -> list[Cell]:
    """The product of the axes and the interpreters, axes first. ``base[executable]``: the
    pins of every cell under that interpreter, except where an axis names the distribution."""
    from itertools import product

    from omnipkg_hook._requirements import parse_requirement

    names = {normalize(n) for n, _ in axes}
    out = []
    for combo in product(*[[(n, v) for v in vs] for n, vs in axes]):
        for py in pythons:
            kept = [t for t in base.get(py.executable, []) if parse_requirement(t).key not in names]
            out.append(Cell(list(combo), py, kept + [f"{n}=={v}" for n, v in combo if v != MAIN]))
    return out


def _check_main(cell_list: list[Cell], store) -> None:
    from .. import environment

    seen: dict[str, dict] = {}
    for cell in cell_list:
        for name, value in cell.axes:
            if value != MAIN:
                continue
            py = cell.python
            if py.executable not in seen:
                seen[py.executable] = environment.installed(py, store)
            if normalize(name) not in seen[py.executable]:
                raise OmnipkgError(f"--matrix {name}=main: the main environment of Python {py.version} has no {name}",
                                   f"drop 'main' from the values, or install {name} there")


_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)\b")


def pytest_counts(output: str) -> dict[str, int] | None:
    """passed/failed/skipped/errors from pytest's last summary line, None if there is none."""
    for line in reversed(output.splitlines()[-50:]):
        if re.search(r"\bin [\d.]+s\b", line) and (_COUNT.search(line) or "no tests ran" in line):
            counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
            for n, what in _COUNT.findall(line):
                key = "errors" if what.startswith("error") else what
                if key in counts:
                    counts[key] += int(n)
            return counts
    return None


def _is_pytest(target: list[str]) -> bool:
    if target[:1] == ["-m"]:
        return target[1:2] in (["pytest"], ["py.test"])
    return bool(target) and os.path.basename(target[0]) in ("pytest", "py.test")


def _pump(stream, prefix: str, sink, lock) -> None:
    from .. import progress

    for line in iter(stream.readline, b""):
        text = f"{prefix} {line.decode('utf-8', 'replace')}"
        text = text if text.endswith("\n") else text + "\n"

        def write(text=text) -> None:
            sink.write(text)
            sink.flush()

        with lock:  # a spinner still making bubbles for later cells is cleared first, drawn again below
            progress.above(write)
    stream.close()


def cell_env(store_root: str) -> dict:
    from omnipkg_hook.workers import spawn

    return spawn.worker_env(dict(os.environ), store_root)


class Slot:
    """One of the ``jobs`` places of ``gate`` (a semaphore), taken now, given back at most once."""

    def __init__(self, gate: threading.Semaphore) -> None:
        gate.acquire()
        self.gate: threading.Semaphore | None = gate

    def release(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.release()


def run_cells(cell_list: list[Cell], target: list[str], *, store_root: str, jobs: int, stream: bool,
              source: bytes | None = None, out=None, zygotes: Zygotes | None = None,
              making: ondemand.Making | None = None, umask: int = -1) -> None:
    """Run every cell (``jobs`` at a time); fills in ``exit``, ``seconds``, ``output``, ``counts``.

    Cells of an interpreter that has more than one are forked from its zygote
    (:mod:`omnipkg_pip.run.cellfork`; ``zygotes``: started earlier by the caller, closed here)
    where that works, else each starts the interpreter (with ``umask``: the user's, while
    the store's writer lock, held in this process when ``making`` makes bubbles, sets its own).
    ``making``: the bubbles being made; a cell waits for its own, holding no slot, and
    fails with the error if one of them could not be made."""
    out = out or sys.stdout
    lock = threading.Lock()
    env = cell_env(store_root)
    is_pytest = _is_pytest(target)
    if zygotes is None:
        zygotes = Zygotes(env, None, target, [c.python.executable for c in cell_list])

    # ``jobs`` cells run at a time: a cell holds its slot until its program has returned
    # (a forked cell's interpreter shutdown overlaps the next cell), or its process ended
    gate = threading.Semaphore(max(1, jobs))
    stopping = threading.Event()

    def one(cell: Cell) -> None:
        if making is not None:
            why = making.wait(cell.python, cell.pins)
            if why:
                cell.exit, cell.error, cell.output = 1, why, f"pip-omni: not run: {why}\n"
                if stream:
                    with lock:
                        sys.stderr.write(f"[{cell.label}] {cell.output}")
                        sys.stderr.flush()
                return
        slot = Slot(gate)
        try:
            if stopping.is_set():
                return
            t0 = time.perf_counter()
            if not _forked(cell, zygotes.get(cell.python.executable), target, source, stream, out, lock,
                           slot.release):
                _spawned(cell, env, target, source, stream, out, lock, umask)
            cell.seconds = time.perf_counter() - t0
        finally:
            slot.release()
        if is_pytest and not stream:
            cell.counts = pytest_counts(cell.output)

    errors: list[BaseException] = []

    def guarded(cell: Cell, finished: threading.Event) -> None:
        try:
            one(cell)
        except BaseException as e:  # raised in the caller's thread, after the others have ended
            errors.append(e)
        finally:
            finished.set()

    # a thread per cell (not concurrent.futures: its import, with logging's, is ~6 ms of a warm run).
    # Waited for by an Event of its own, not join(): a join that ^C interrupts marks a thread
    # that still runs as stopped (CPython before 3.13), so a second join would not wait for it.
    done = [threading.Event() for _ in cell_list]
    threads = [threading.Thread(target=guarded, args=(c, e), name=f"cell-{i}", daemon=True)
               for i, (c, e) in enumerate(zip(cell_list, done))]
    try:
        for t in threads:
            t.start()
        try:
            for e in done:
                e.wait()
        except KeyboardInterrupt:
            stopping.set()
            if making is not None:
                making.stop()
            _interrupted(done, zygotes)
            raise
    finally:
        zygotes.close()
    if errors:
        raise errors[0]


def _interrupted(done: list[threading.Event], zygotes: Zygotes) -> None:
    """^C: no new cell starts; the running ones get it (forwarded to those of kept zygotes,
    which are not in the terminal's process group) and are waited for, as ``python`` ends."""
    while True:
        zygotes.interrupt()
        try:
            for e in done:
                e.wait()
            return
        except KeyboardInterrupt:  # again: forward it again
            continue


class Zygotes:
    """One :class:`~omnipkg_pip.run.cellfork.CellZygote` per interpreter that runs more than one
    cell, all started at once; :meth:`get` waits for one. None where forking is off or the
    zygote failed (said once, on stderr)."""

    def __init__(self, env: dict, cwd: str | None, target: list[str], pythons: list[str]) -> None:
        from . import cellfork

        self.zygotes: dict = {}
        self.failed: set[str] = set()
        self.lock = threading.Lock()
        if not cellfork.enabled():
            return
        for py in dict.fromkeys(pythons):
            if pythons.count(py) > 1:
                try:
                    self.zygotes[py] = cellfork.CellZygote(py, env, cwd, cellfork.preload_for(target))
                except OSError as e:
                    self._say(py, e)

    def _say(self, python: str, error: BaseException) -> None:
        with self.lock:
            if python in self.failed:
                return
            self.failed.add(python)
        print(f"pip-omni: the cells of {python} start one interpreter each ({error})", file=sys.stderr)

    def compile_ahead(self, cell_list: list[Cell], names: set[str]):
        """A watcher for :data:`omnipkg_pip.writers.WHEEL_WATCHERS`: each wheel of a project in
        ``names`` (the axes) that a bubble being made will hold goes to every zygote, which
        compiles its sources for the cells it has yet to fork (their bubbles have no ``.pyc``)."""
        counts = {py: sum(c.python.executable == py for c in cell_list) for py in self.zygotes}
        told: set[str] = set()

        def watcher(path: str) -> None:
            filename = os.path.basename(path)
            if normalize(filename.split("-", 1)[0]) not in names or filename in told:
                return
            told.add(filename)
            for py, zygote in self.zygotes.items():
                zygote.compile_ahead([path], counts[py])

        return watcher

    def get(self, python: str):
        from omnipkg_hook.errors import OmnipkgError

        zygote = self.zygotes.get(python)
        if zygote is None:
            return None
        try:
            return zygote.ready()
        except (OmnipkgError, OSError) as e:
            self._say(python, e)
            return None

    def interrupt(self) -> None:
        for zygote in self.zygotes.values():
            zygote.interrupt()

    def kill(self) -> None:
        for zygote in self.zygotes.values():
            zygote.kill_cells()

    def close(self) -> None:
        for zygote in self.zygotes.values():
            zygote.close()


def _forked(cell: Cell, zygote, target, source, stream: bool, out, lock, release=lambda: None) -> bool:
    """Run ``cell`` forked from ``zygote``; False if it has to be started the slow way.
    ``release()`` is called once its program has returned (see :meth:`CellZygote.program_ended`)."""
    if zygote is None:
        return False
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe() if stream else (out_r, out_w)
    try:
        pid = zygote.start(cell.pins, target, source if target[0] == "-" else None, out=out_w, err=err_w)
    except (OSError, OmnipkgError) as e:  # the zygote died: this cell starts the slow way
        print(f"pip-omni: {e}", file=sys.stderr)
        pid = None
    finally:
        for fd in {out_w, err_w}:
            os.close(fd)
    if pid is None:
        for fd in {out_r, err_r}:
            os.close(fd)
        return False
    if stream:
        prefix = f"[{cell.label}]"
        pumps = [threading.Thread(target=_pump, args=(os.fdopen(out_r, "rb"), prefix, out, lock)),
                 threading.Thread(target=_pump, args=(os.fdopen(err_r, "rb"), prefix, sys.stderr, lock))]
    else:
        data: list[bytes] = []
        pumps = [threading.Thread(target=lambda: data.append(_read_all(out_r)))]
    for t in pumps:
        t.start()
    zygote.program_ended(pid)
    release()
    for t in pumps:
        t.join()
    if not stream:
        cell.output = b"".join(data).decode("utf-8", "replace")
    cell.exit = zygote.wait(pid)
    return True


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _spawned(cell: Cell, env: dict, target, source, stream: bool, out, lock, umask: int = -1) -> None:
    import subprocess  # not at import: forked cells of a kept zygote start no process

    from omnipkg_hook.workers import spawn

    args = ["--pins", ",".join(cell.pins)] if cell.pins else []
    if target[0] == "-":
        args.append("--stdin-source")
    cmd = spawn.command(cell.python.executable, "runner", [*args, "--", *target])
    stdin = subprocess.PIPE if target[0] == "-" else subprocess.DEVNULL
    if stream:
        proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                umask=umask)
        prefix = f"[{cell.label}]"
        pumps = [threading.Thread(target=_pump, args=(proc.stdout, prefix, out, lock)),
                 threading.Thread(target=_pump, args=(proc.stderr, prefix, sys.stderr, lock))]
        for t in pumps:
            t.start()
        _feed(proc, target, source)
        cell.exit = _status(proc.wait())
        for t in pumps:
            t.join()
    else:
        proc = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                umask=umask)
        data, _ = proc.communicate(source if target[0] == "-" else None)
        cell.output = data.decode("utf-8", "replace")
        cell.exit = _status(proc.returncode)


def _feed(proc, target, source) -> None:
    if target[0] == "-":
        try:
            proc.stdin.write(source or b"")
            proc.stdin.close()
        except BrokenPipeError:
            pass


def _status(code: int) -> int:
    return 128 - code if code < 0 else code


def print_table(cell_list: list[Cell], out) -> None:
    counts = any(c.counts is not None for c in cell_list)
    named = any(c.axes for c in cell_list)
    head = (["Cell"] if named else []) + ["Python", "Exit", "Time"] + (["Passed", "Failed", "Skipped"] if counts else [])
    head += [] if named else ["Path"]
    rows = []
    for c in cell_list:
        row = ([c.name] if named else []) + [c.python.version, str(c.exit), f"{c.seconds:.2f}s"]
        if counts:
            k = c.counts or {}
            row += [str(k.get("passed", "-")), str(k.get("failed", 0) + k.get("errors", 0) if k else "-"),
                    str(k.get("skipped", "-"))]
        rows.append(row + ([] if named else [c.python.executable]))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(file=out)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), file=out)
    for c, row in zip(cell_list, rows):
        mark = "" if c.exit == 0 else "  FAILED"
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + mark, file=out)


def main(opts, store, texts: tuple[list[str], list[str]], meta, source: bytes | None) -> int:
    """``pip-omni run`` with several cells (or ``--table``/``--json``): see the module docstring."""
    from ..pythons import interpreters

    specs = [s.strip() for v in opts.python for s in v.split(",") if s.strip()] or [None]
    pythons = []
    for spec in specs:
        py = interpreters.resolve_python(store, spec)
        if meta is not None and meta.requires_python is not None:
            from omnipkg_hook._pep440 import SpecifierSet

            if not SpecifierSet(meta.requires_python).contains(py.version, prereleases=True):
                raise OmnipkgError(f"{meta.where} requires Python {meta.requires_python}; "
                                   f"--python {spec} is Python {py.version}", "leave that interpreter out")
        if py.executable not in (p.executable for p in pythons):
            pythons.append(py)
    axes = parse_axes(opts.matrix)
    base = {py.executable: ondemand.requirements(*texts, py.markers) for py in pythons}
    cell_list = cells(axes, pythons, base)
    if len(cell_list) == 1 and not opts.json:  # --table with one interpreter: the real terminal
        making = _prepare(cell_list, pythons, store, opts)
        if making is not None:
            making.finish("nothing was run")
        return _single(cell_list[0], opts, store, source)
    umask = os.umask(0o022)  # the user's, for the cells: the writer lock sets its own while held
    os.umask(umask)
    # the zygotes start now: their interpreters and imports overlap the checks and bubbles
    zygotes = Zygotes(cell_env(store.root), None, opts.target, [c.python.executable for c in cell_list])
    from .. import writers  # the zygotes compile ahead the axes' wheels the bubbles are made of

    watcher = zygotes.compile_ahead(cell_list, {normalize(name) for name, _values in axes})
    writers.WHEEL_WATCHERS.append(watcher)
    try:
        try:
            making = _prepare(cell_list, pythons, store, opts)
        except BaseException:
            zygotes.close()
            raise
        stream = opts.stream or not axes
        out = sys.stderr if opts.json else sys.stdout
        try:
            run_cells(cell_list, opts.target, store_root=store.root, jobs=opts.jobs or os.cpu_count() or 1,
                      stream=stream, source=source, out=out, zygotes=zygotes, making=making, umask=umask)
        except KeyboardInterrupt:
            if making is not None:
                making.abandon()  # bubbles still being made: the process ends now, as a killed install
            raise
    finally:
        writers.WHEEL_WATCHERS.remove(watcher)
    if not stream:
        for c in cell_list:
            if c.exit != 0 and c.output:
                print(f"==== {c.label}: exit status {c.exit} ====", file=out)
                out.write(c.output if c.output.endswith("\n") else c.output + "\n")
    if opts.json:
        json.dump([c.row() for c in cell_list], sys.stdout, indent=1)
        print()
    else:
        print_table(cell_list, out)
    status = next((c.exit for c in cell_list if c.exit != 0), 0)
    if making is not None:
        try:
            making.finish("the cells that need them did not run")
        except OmnipkgError as e:
            e.exit_status = status  # the status is the cells' (the table's first non-zero one), as always
            raise
    return status


def _prepare(cell_list: list[Cell], pythons, store, opts) -> ondemand.Making | None:
    """Check the ``main`` values and start making the bubbles the cells need (or refuse,
    offline); None: every one is there."""
    _check_main(cell_list, store)
    jobs = []
    for py in pythons:
        wanted = list(dict.fromkeys(p for c in cell_list if c.python is py for p in c.pins))
        jobs.append((py, ondemand.missing_for(store, py, wanted)))
    return ondemand.start(store, jobs, offline=opts.offline, index=opts.index())


def _single(cell: Cell, opts, store, source) -> int:
    t0 = time.perf_counter()
    cell.exit = run_attached(cell.python.executable, cell.pins, opts.target, source, store.root)
    cell.seconds = time.perf_counter() - t0
    print_table([cell], sys.stdout)
    return cell.exit


def run_attached(python: str, pins: list[str], target: list[str], source: bytes | None, store_root: str) -> int:
    """One run under ``python`` on the real terminal (stdin, stdout and stderr are ours; ^C
    reaches the child, which decides); its exit status, a signal as 128 + N."""
    import signal
    import subprocess

    from omnipkg_hook.workers import spawn

    args = ["--pins", ",".join(pins)] if pins else []
    if target[0] == "-":
        args.append("--stdin-source")
    cmd = spawn.command(python, "runner", [*args, "--", *target])
    proc = subprocess.Popen(cmd, env=spawn.worker_env(dict(os.environ), store_root),
                            stdin=subprocess.PIPE if target[0] == "-" else None)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _feed(proc, target, source)
        return _status(proc.wait())
    finally:
        signal.signal(signal.SIGINT, old)
