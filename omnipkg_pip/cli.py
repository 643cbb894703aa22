"""``pip-omni``: argparse front end. Unknown commands pass through to pip unchanged.

Each command lives in ``omnipkg_pip/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
The top level catches :class:`OmnipkgError` once: one line and the hint on
stderr, exit 1; the traceback only with ``--verbose``.
"""

from __future__ import annotations

import importlib
import os
import sys

from omnipkg_hook.errors import OmnipkgError

__all__ = ["main", "COMMANDS"]

# name -> module under omnipkg_pip.commands (imported only when that command runs,
# except for building --help, so `pip-omni list` does not pay for `install`).
COMMANDS = {
    "install": "install",
    "list": "listing",
    "show": "listing",
    "uninstall": "uninstall",
    "gc": "gc",
    "store": "gc",
    "why": "why",
    "daemon": "daemon",
    "demo": "demo",
    "python": "interpreters",
    "swap": "interpreters",
    "run": "run",
    "doctor": "doctor",
}


def _color() -> bool:
    return "NO_COLOR" not in os.environ and sys.stderr.isatty()


def error(message: str, hint: str | None = None) -> None:
    """Print ``pip-omni: error: message`` (+ hint) to stderr."""
    red, reset = ("\033[31m", "\033[0m") if _color() else ("", "")
    print(f"{red}pip-omni: error:{reset} {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def build_parser(only: str | None = None):
    import argparse  # not at import: `pip-omni run` parses its own arguments

    parser = argparse.ArgumentParser(
        prog="pip-omni",
        description="Many versions of one package in one environment. "
        "Commands pip-omni does not define are passed to pip unchanged.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen = set()
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        if module in seen:
            continue
        try:
            mod = importlib.import_module(f"omnipkg_pip.commands.{module}")
        except ModuleNotFoundError as e:
            if e.name == f"omnipkg_pip.commands.{module}":
                continue  # not built yet
            raise
        seen.add(module)
        mod.register(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"pip-omni {__version__}"


def pip_passthrough(argv: list[str]) -> int:
    """Hand ``argv`` to ``python -m pip`` as it is (``pip-omni freeze`` == ``pip freeze``)."""
    import subprocess

    from .pip import target_python

    return subprocess.call([target_python(), "-m", "pip", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS:
        return pip_passthrough(argv)
    if argv[:1] == ["run"]:  # python's rules: everything after the script is the script's
        from .commands.run import parse_or_exit

        args = parse_or_exit(argv[1:])
    else:
        parser = build_parser(only=first)
        args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if not argv else 2
    verbose = getattr(args, "verbose", 0)
    try:
        return int(args.func(args) or 0)
    except OmnipkgError as e:
        if verbose:
            import traceback

            traceback.print_exc()
        error(e.message, e.hint)
        return 1
    except BrokenPipeError:  # `pip-omni list | head`: the reader left; say nothing
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 1
    except OSError as e:  # a full disk, a read-only store, a file we may not read: one line
        if verbose:
            import traceback

            traceback.print_exc()
        from omnipkg_hook.store import find_store, store_oserror

        try:
            known = store_oserror(find_store(), e)
        except OmnipkgError:  # no store to name (a broken pyproject setting): the plain line
            known = None
        line = f"{e.strerror}: {os.fsdecode(e.filename)!r}" if e.strerror and e.filename else str(e) or repr(e)
        error(*(known.message, known.hint) if known else (line, "rerun with -v for the traceback"))
        return 1
    except KeyboardInterrupt:
        error("interrupted; nothing half-done is visible in the store (staging is left in tmp/ for gc)")
        return 130
