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
"""

from __future__ import annotations

import os
import sys

__all__ = ["main", "apply_pins", "execute"]


def apply_pins(value: str, *, again: bool = False) -> None:
    """Make ``value`` (an ``OMNIPKG_PINS`` value) the pins of this process; raises
    :class:`~omnipkg_hook.errors.OmnipkgError` when it cannot be satisfied.

    A value applied before with the same store, interpreter and ``sys.path`` comes from
    the start-up cache (:mod:`omnipkg_hook.startup`): no resolving, no ``json``.
    ``again=True``: after a failure (the missing bubbles were made since).
    """
    if again:
        from .._requirements import split_pins
        from ..pins import pin

        pin(*split_pins(value), replace=True)
        return
    os.environ["OMNIPKG_PINS"] = value
    from .. import startup

    if "omnipkg_hook.pins" not in sys.modules and startup.applied is None and startup.load(value):
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
