"""Run a script, ``-c`` code or ``-m`` module with pins, exactly as ``python`` would.

``pip-omni run`` uses :func:`execute` in its own process when the script runs under the
interpreter pip-omni runs on, and starts this module under any other interpreter through
the workers' ``BOOT`` (:mod:`omnipkg_hook.workers.spawn`), so that interpreter needs no
pip-omni installed::

    python -c BOOT .../omnipkg_hook/workers/_boot.py runner [--pins PINS] [--stdin-source]
        -- (-c CODE | -m MODULE | PATH | -) [ARGS...]

What "as python would" means here: ``sys.argv``, ``sys.path[0]``, a fresh ``__main__``
module, ``python``'s one-line errors for a missing script or module, its exit status
(``SystemExit`` is left to the interpreter), and a traceback that shows the user's frames
only (none of this module's, ``runpy``'s or ``_boot.py``'s). With ``--stdin-source`` the
program text of ``-`` is read from stdin first (the caller read it to find its metadata).

The pins are applied strictly: a run that cannot get the versions it asked for fails
with status 1 and one line on stderr, it never runs against the wrong version.

Several cells under one interpreter (``pip-omni run --matrix``, the pytest plugin) fork
from one zygote of this interpreter instead of starting it once per cell::

    python -c BOOT .../_boot.py runner --zygote --fd N [--preload MODULE]...
    python -c BOOT .../_boot.py runner --zygote --listen-fd N --keep SECONDS --lock PATH [--preload MODULE]...

(the second: kept between runs, serving clients of a listening socket one at a time,
:func:`omnipkg_hook.workers.zygote.serve_kept`).

It applies no pins, imports the ``--preload`` modules (``pytest``: and pytest's own
plugins), and serves FORKs (:func:`omnipkg_hook.workers.zygote.serve_cells`). A FORK's body
is the cell: ``{"pins": P, "target": [...], "source": bytes | None, "env": {...},
"fd_env": {NAME: i}, "done": True}`` with the descriptors ``[stdout, stderr, notice, done, *extra]``
(``done`` only when the body says so); the child
puts them on fds 1 and 2 (stdin is ``/dev/null``), makes ``env`` its whole environment (and ``NAME`` the number
of ``extra[i]``), applies the pins, and runs the target as :func:`main` would. A pin that
routes a module the zygote had already imported cannot be honoured in a fork: the child
writes ``b"refused <names>"`` on ``notice`` and exits without running anything, and the
owner runs that cell the slow way. Otherwise ``notice`` is closed just before the target runs,
and ``done`` as soon as it has returned or raised, before the interpreter's shutdown (the
owner frees the cell's job slot then; it still reads the output to EOF and waits for the exit).
The cell then ends as ``python`` ends but without freeing the session (:func:`_end_cell`).
"""

from __future__ import annotations

import os
import sys

__all__ = ["main", "apply_pins", "execute"]


def apply_pins(value: str, *, again: bool = False) -> None:
    """Make ``value`` (an ``OMNIPKG_PINS`` value) the pins of this process; raises
    :class:`~omnipkg_hook.errors.OmnipkgError` when it cannot be satisfied.

    A value applied before with the same store, interpreter and ``sys.path`` comes from
    the start-up cache (:func:`omnipkg_hook.finder.load`): no resolving, no ``json``.
    ``again=True``: after a failure (the missing bubbles were made since).
    """
    if again:
        from .._requirements import split_pins
        from ..pins import pin

        pin(*split_pins(value), replace=True)
        return
    os.environ["OMNIPKG_PINS"] = value
    from .. import finder

    if "omnipkg_hook.pins" not in sys.modules and finder.applied is None and finder.load(value):
        return
    from ..pins import from_environment

    from_environment(exit_on_error=False, strict=True, cache=True)


def _fresh_main():
    import builtins
    import types

    module = types.ModuleType("__main__")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    return module


def _set_path0(entry: str) -> None:
    if getattr(sys.flags, "safe_path", False):  # python -P adds no script directory
        return
    if sys.path:
        sys.path[0] = entry
    else:
        sys.path.insert(0, entry)


def _exec_user(code, namespace) -> None:
    exec(code, namespace)  # the user's frames start below this one


def _run_module(name: str) -> None:
    import runpy

    runpy._run_module_as_main(name, alter_argv=True)  # what `python -m` calls


def execute(target: list[str], source: bytes | None = None) -> int:
    """Run ``target`` (``["-c", CODE, *args]``, ``["-m", MOD, *args]`` or ``[PATH | "-", *args]``)
    in this process as ``python`` would; returns the exit status of an uncaught exception
    (after printing it as ``python`` does). ``SystemExit`` propagates.

    ``source``: the program's text when the caller has read it already (``-`` or a path).
    """
    mode, rest = target[0], target[1:]
    if mode == "-c":
        code_text, args = rest[0], rest[1:]
        sys.argv = ["-c", *args]
        _set_path0("")
        if sys.version_info >= (3, 13):  # python -c shows the source lines of "<string>" in tracebacks
            import linecache

            linecache.cache["<string>"] = (len(code_text), None, code_text.splitlines(True), "<string>")
        return _guarded(lambda: compile(code_text, "<string>", "exec", dont_inherit=True), _fresh_main())
    if mode == "-m":
        module, args = rest[0], rest[1:]
        sys.argv = [module, *args]
        _set_path0(os.getcwd())
        _fresh_main()
        return _guarded(None, None, module=module)
    sys.argv = [mode, *rest]
    if mode == "-":
        if source is None:
            source = sys.stdin.buffer.read()
        _set_path0("")
        return _guarded(lambda: compile(source, "<stdin>", "exec", dont_inherit=True), _fresh_main())
    path = os.path.abspath(mode)
    if os.path.isdir(path) or (source is None and _is_zip(path)):
        _set_path0(path)  # a directory or zip with __main__.py, as python runs it
        _fresh_main()
        return _guarded(None, None, module="__main__")
    if source is None:
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError as e:
            print(f"{sys.executable}: can't open file {path!r}: [Errno {e.errno}] {e.strerror}", file=sys.stderr)
            return 2
    _set_path0(os.path.dirname(os.path.realpath(path)))
    main = _fresh_main()
    main.__file__ = path
    main.__cached__ = None
    try:
        from importlib.machinery import SourceFileLoader

        main.__loader__ = SourceFileLoader("__main__", path)
    except ImportError:  # pragma: no cover
        pass
    return _guarded(lambda: compile(source, path, "exec", dont_inherit=True), main)


def _is_zip(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head == b"PK\x03\x04"


def _guarded(make_code, main, module: str | None = None) -> int:
    try:
        if module is not None:
            _run_module(module)
        else:
            _exec_user(make_code(), main.__dict__)
    except SystemExit:
        raise
    except BaseException as e:  # noqa: B036 - printed as python prints it, status as python's
        tb = _user_frames(e.__traceback__)
        e.__traceback__ = tb  # the hook prints the exception's own traceback (3.11+)
        sys.excepthook(type(e), e, tb)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    return 0


_OURS = frozenset((_exec_user.__code__, _run_module.__code__))


def _user_frames(tb):
    """The traceback below our own frames (and runpy's): what ``python script.py`` shows."""
    import runpy

    t = tb
    while t is not None and t.tb_frame.f_code not in _OURS:
        t = t.tb_next
    if t is None:  # raised before the user's code ran (compiling it): python shows no frames
        return None
    t = t.tb_next
    skip = {os.path.normcase(os.path.abspath(f)) for f in (runpy.__file__, __file__)}
    while t is not None and (os.path.normcase(os.path.abspath(t.tb_frame.f_code.co_filename)) in skip
                             or t.tb_frame.f_code.co_filename == "<frozen runpy>"):
        t = t.tb_next
    return t


def _preload(names: list[str]):
    import importlib

    done, failed = [], {}
    for name in names:
        try:
            importlib.import_module(name)
            done.append(name)
            if name == "pytest":  # what every pytest session imports next: its own plugins
                from _pytest.config import default_plugins

                for plugin in default_plugins:
                    try:
                        importlib.import_module(f"_pytest.{plugin}")
                    except ImportError:
                        pass
        except Exception as e:  # the cells import it again and fail as they would anyway
            failed[name] = f"{type(e).__name__}: {e}"
    return done, failed


def _zygote(argv: list[str]) -> int:
    import signal
    import socket

    from . import protocol as P
    from . import zygote
    from .worker import worker_info

    def opt(name: str):
        return argv[argv.index(name) + 1] if name in argv else None

    names = [argv[i + 1] for i, a in enumerate(argv) if a == "--preload"]
    os.environ.pop("OMNIPKG_PINS", None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is for the cells (same process group)
    load = lambda: _preload(names)  # noqa: E731
    if opt("--listen-fd") is not None:  # kept between runs (omnipkg_pip/run/cellfork.py)
        listener = socket.socket(fileno=int(opt("--listen-fd")))
        return zygote.serve_kept(listener, worker_info("cells"), load, _cell, idle=float(opt("--keep")),
                                 lock_path=opt("--lock"))
    control = P.Connection(socket.socket(fileno=int(opt("--fd"))), fds=True)
    return zygote.serve_cells(control, worker_info("cells"), load, _cell)


def _cell(body, fds: list[int]) -> int:
    """In a child of the zygote: become the cell (see the module docstring). Once the
    program has run, the cell ends in :func:`_end_cell` and never returns from here."""
    import signal

    from . import protocol as P

    spec = P.loads(body)
    out, err, notice, *extra = fds
    done = extra.pop(0) if spec.get("done") else None  # closed when the program has returned
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
    for fd in {null, out, err}:
        if fd > 2:
            os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ.clear()  # exactly the client's environment (a kept zygote's may differ in _, SHLVL...)
    os.environ.update(spec["env"])
    for name, i in spec["fd_env"].items():
        os.environ[name] = str(extra[i])
    for fd in extra if done is None else [*extra, done]:
        os.set_inheritable(fd, False)
    pins = spec["pins"]
    if pins:
        from ..errors import OmnipkgError

        before = set(sys.modules)  # applying pins may drop what it reroutes: look first
        try:
            apply_pins(pins)
        except OmnipkgError as e:
            os.close(notice)
            hint = f" (hint: {e.hint})" if e.hint else ""
            print(f"pip-omni run: error: {e.message}{hint}", file=sys.stderr)
            return 1
        from ..finder import FINDER

        clash = sorted(n for n in FINDER.routes if n in before)
        if clash:
            os.write(notice, ("refused " + " ".join(clash)).encode())
            os._exit(0)
    os.close(notice)
    try:
        status = execute(spec["target"], spec["source"])
    except SystemExit as e:
        status = _exit_status(e)
    finally:
        if done is not None:  # before the interpreter's shutdown: the owner may start its next cell
            os.close(done)
    _end_cell(status)


def _exit_status(e: SystemExit) -> int:
    """The status ``python`` exits with for an uncaught ``e`` (printing a non-int code)."""
    code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:  # noqa: BLE001 - as python: a code that cannot be printed still exits 1
        pass
    return 1


def _end_cell(status: int) -> None:
    """End a forked cell as ``python`` ends, minus the teardown nobody sees.

    What a program can observe of an interpreter's end is done as Py_FinalizeEx does it:
    non-daemon threads are joined, ``atexit`` runs (so ``weakref.finalize``, logging's and
    coverage's handlers), ``sys.stdout``/``sys.stderr`` are flushed (status 120 if that
    fails, as python), and so is every file object still open (in CPython it would be
    flushed when freed). Then ``os._exit``: freeing every module and object of the session
    (18-24 ms a cell, most of it copy-on-write of the zygote's pages) is skipped, as a
    ``multiprocessing`` fork child skips it. What that leaves out: ``__del__`` of objects a
    program keeps alive until exit, and C ``stdio`` buffers of C extensions (README).
    """
    import atexit
    import threading

    try:
        threading._shutdown()
        atexit._run_exitfuncs()
    except KeyboardInterrupt:
        status = 130 if status == 0 else status
    _flush_open_files()
    for f in (sys.stdout, sys.stderr):
        try:
            if f is not None and not getattr(f, "closed", False):
                f.flush()
        except Exception:  # noqa: BLE001 - python reports it and exits 120
            status = 120 if status == 0 else status
    os._exit(status)


def _flush_open_files() -> None:
    """Flush every open writable file object of the program (text before binary: a text
    file's buffer flushes into its binary one)."""
    import gc
    import io

    texts, binaries = [], []
    for obj in gc.get_objects():  # the frozen zygote's objects are not listed: none was opened here
        if isinstance(obj, io.TextIOBase):
            texts.append(obj)
        elif isinstance(obj, (io.BufferedWriter, io.BufferedRandom)):
            binaries.append(obj)
    for f in (*texts, *binaries):
        if f is sys.stdout or f is sys.stderr:
            continue
        try:
            if not f.closed and f.writable():
                f.flush()
        except Exception:  # noqa: BLE001 - what the interpreter's own finalizer would ignore too
            pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--zygote"]:
        return _zygote(argv)
    pins = None
    stdin_source = False
    while argv and argv[0] in ("--pins", "--stdin-source"):
        if argv[0] == "--pins":
            pins, argv = argv[1], argv[2:]
        else:
            stdin_source, argv = True, argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("pip-omni run: nothing to run", file=sys.stderr)
        return 2
    if pins:
        from ..errors import OmnipkgError

        try:
            apply_pins(pins)
        except OmnipkgError as e:
            hint = f" (hint: {e.hint})" if e.hint else ""
            print(f"pip-omni run: error: {e.message}{hint}", file=sys.stderr)
            return 1
    else:
        os.environ.pop("OMNIPKG_PINS", None)
    source = sys.stdin.buffer.read() if stdin_source else None
    return execute(argv, source)
