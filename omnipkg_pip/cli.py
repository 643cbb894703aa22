"""``pip-omni``: the front end. Commands pip-omni does not define are pip's, passed on unchanged.

Each command lives in ``omnipkg_pip/commands/<module>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``.
Only the module of the command being run is imported: ``--version``, ``--help`` and
``help`` are answered from the table below without importing any command module.
The top level catches :class:`OmnipkgError` once: one line and the hint on
stderr, exit 1 (usage errors 2, as argparse and pip do); the traceback only with
``--verbose``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main", "COMMANDS", "PIP_COMMANDS", "error", "pip_passthrough", "build_parser"]

# name -> (module under omnipkg_pip.commands, one line for `pip-omni help`)
COMMANDS = {
    "install": ("install", "install packages; what would disturb the environment goes to a bubble"),
    "list": ("listing", "installed packages and bubbles, clearly marked (pip's options work)"),
    "show": ("listing", "every version of a package: main, bubbles, stored dists"),
    "freeze": ("freeze", "pip freeze; --bubbles prints the bubbles as requirements"),
    "uninstall": ("uninstall", "remove from the environment (as pip) and bubbles"),
    "why": ("why", "which directory serves an import name under pins, and why"),
    "gc": ("gc", "remove dists and objects no bubble references"),
    "store": ("store", "the store: info, export, import, push, pull"),
    "doctor": ("doctor", "check the store; repair it on request"),
    "daemon": ("daemon", "start, stop or inspect the worker daemon"),
    "python": ("interpreters", "adopt, list and forget interpreters"),
    "swap": ("interpreters", "choose the default interpreter (and the store's bin/ shims)"),
    "run": ("run", "run a script under several interpreters with pins"),
    "demo": ("demo", "the rich version-switching demo"),
    "completion": ("completion", "shell completion for bash, zsh and fish"),
    "help": (None, "show help for a command"),
}

# pip's own commands (pip 23-25); anything not listed here still goes to pip.
PIP_COMMANDS = ("install", "download", "uninstall", "freeze", "inspect", "list", "show", "check", "config",
                "search", "cache", "index", "wheel", "hash", "completion", "debug", "help", "lock")


def _color() -> bool:
    return "NO_COLOR" not in os.environ and sys.stderr.isatty()


def error(message: str, hint: str | None = None) -> None:
    """Print ``pip-omni: error: message`` (+ hint) to stderr."""
    red, reset = ("\033[31m", "\033[0m") if _color() else ("", "")
    print(f"{red}pip-omni: error:{reset} {message}", file=sys.stderr)
    if hint:
        print(f"  hint: {hint}", file=sys.stderr)


def build_parser(only: str | None = None):
    """The argparse parser, with only ``only``'s command module registered (all when None)."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(prog="pip-omni", add_help=True,
                                     description="Many versions of one package in one environment.")
    parser.add_argument("-V", "--version", action="version", version=_version())
    sub = parser.omni_subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen = set()
    for name, (module, _help) in COMMANDS.items():
        if module is None or (only is not None and name != only) or module in seen:
            continue
        seen.add(module)
        importlib.import_module(f"omnipkg_pip.commands.{module}").register(sub)
    return parser


def _version() -> str:
    from . import __version__

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return f"pip-omni {__version__} from {here} (python {sys.version_info[0]}.{sys.version_info[1]})"


def top_help() -> str:
    width = max(len(n) for n in COMMANDS)
    lines = ["usage: pip-omni COMMAND [options]", "",
             "Many versions of one package in one environment, chosen at import time.", "",
             "pip-omni's commands:"]
    lines += [f"  {name.ljust(width)}  {text}" for name, (_m, text) in COMMANDS.items()]
    lines += ["", "Every other command is pip's and goes to pip unchanged, for the same environment",
              f"({', '.join(c for c in PIP_COMMANDS if c not in COMMANDS)}).",
              "Options pip-omni does not know are handed to pip too (`pip-omni install --require-hashes -r r.txt`).",
              "", "general options:",
              "  -h, --help     show this help (`pip-omni help COMMAND`: one command's)",
              "  -V, --version  show pip-omni's version"]
    return "\n".join(lines) + "\n"


def pip_passthrough(argv: list[str]) -> int:
    """Hand ``argv`` to pip as it is (``pip-omni download x`` == ``pip download x``), for the main environment."""
    from .pip import passthrough

    return passthrough(argv)


def suggest(word: str) -> list[str]:
    """Commands close to ``word`` (difflib, as pip's own ``get_similar_commands``)."""
    import difflib

    return difflib.get_close_matches(word, list(dict.fromkeys([*COMMANDS, *PIP_COMMANDS])), n=3, cutoff=0.6)


def _usage_error(message: str, hint: str | None = None) -> int:
    error(message, hint)
    return 2


def console() -> None:
    """The ``pip-omni`` program (``[project.scripts]``, ``python -m omnipkg_pip``): :func:`main`,
    then an exit that skips the interpreter's last collection of cyclic garbage over the whole
    heap (``gc.freeze``: every object left is put out of its reach), 15-25 ms at the end of a
    cold ``run --matrix`` (index pages, parsed versions) and ~10 ms of a warm one; ``atexit``
    handlers, buffered files and every object that is not in a cycle are finalized as always.
    Not after ``pip-omni run`` ran a program in this process: its exit is ``python``'s."""
    code = main()
    run = sys.modules.get("omnipkg_pip.commands.run")
    if run is None or not run.RAN_HERE:
        import gc

        gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("PIP_OMNI_AUTO_COMPLETE"):
        from .commands import completion

        return completion.complete()
    if argv[:1] in (["--version"], ["-V"]):
        print(_version())
        return 0
    if argv[:1] == ["install"] and _plain(argv[1:]):
        return _fast_install(argv[1:])
    argv = _command_first(argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is None:
        if not argv or any(a in ("-h", "--help") for a in argv):
            sys.stdout.write(top_help())
            return 0
        return pip_passthrough(argv)  # pip's general options alone (`pip-omni --debug`)
    if first == "help":
        return _help(argv[argv.index("help") + 1:])
    if first not in COMMANDS:
        if first in PIP_COMMANDS:
            return pip_passthrough(argv)
        close = suggest(first)
        if close and close[0] in COMMANDS:
            return _usage_error(f"unknown command {first!r}",
                                "did you mean " + " or ".join(f"`pip-omni {c}`" for c in close) + "?")
        return pip_passthrough(argv)  # maybe a pip command newer than our list: pip says if not
    return _run(first, argv)


def _plain(tokens: list[str]) -> bool:
    """Only requirements, no option: what argparse would put in ``requirements`` alone."""
    return bool(tokens) and not any(t.startswith("-") for t in tokens)


def _fast_install(requirements: list[str]) -> int:
    """``pip-omni install REQ...`` without options: the arguments argparse would give, made
    directly (``install.plain_args``; a test checks they are equal), so the common warm
    install builds no parser and imports no ``argparse``."""
    from .commands import install

    return _call(install.plain_args(requirements))


def _command_first(argv: list[str]) -> list[str]:
    """``--python X -v install y`` -> ``install --python X -v y``: pip's general options may come
    before the command; moved after it, the command's parser (or pip, through it) reads them."""
    if not argv or not argv[0].startswith("-"):
        return argv  # the command comes first (every warm path): pip's option table is not needed
    from .pipopts import GENERAL_VALUES

    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "--"):
        i += 2 if argv[i] in GENERAL_VALUES else 1
    if i == 0 or i >= len(argv) or argv[i] not in COMMANDS:
        return argv
    return [argv[i], *argv[:i], *argv[i + 1:]]


def _help(rest: list[str]) -> int:
    names = [a for a in rest if not a.startswith("-")]
    if not names:
        sys.stdout.write(top_help())
        return 0
    name = names[0]
    if name in COMMANDS and COMMANDS[name][0] is not None:
        build_parser(only=name).parse_args([name, "--help"])  # exits 0
        return 0
    if name in PIP_COMMANDS:
        return pip_passthrough(["help", name])
    close = suggest(name)
    return _usage_error(f"unknown command {name!r}",
                        ("did you mean " + " or ".join(f"`{c}`" for c in close) + "?") if close
                        else "`pip-omni help` lists the commands")


def _json_anywhere(parser, command: str, argv: list[str]):
    """Parse ``argv``; ``--json`` is taken anywhere on the line (before ``--``) by a command that has it."""
    if command == "run" or "--json" not in argv:  # run: what follows the script is the child's
        return parser.parse_args(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    stripped = [a for a in argv[:end] if a != "--json"] + argv[end:]
    if len(stripped) == len(argv):
        return parser.parse_args(argv)
    import contextlib
    import io

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(stripped)
    except SystemExit:
        return parser.parse_args(argv)  # argparse's own message for the line as given
    if not hasattr(args, "json"):
        return parser.parse_args(argv)  # this action has no --json: argparse says so
    args.json = True
    return args


# Commands that stand in for pip's: options they do not define are pip's (``args.pip_args``).
PIP_LIKE = ("install", "list", "show", "freeze", "uninstall")


def _run(command: str, argv: list[str]) -> int:
    if argv[:1] == ["run"]:  # python's rules: everything after the script is the script's
        from .commands.run import parse_or_exit

        args = parse_or_exit(argv[1:])
    else:
        args = parse_args(command, argv)
        if not getattr(args, "func", None):
            build_parser(only=command).print_help()
            return 2
    return _call(args)


def parse_args(command: str, argv: list[str]):
    """The arguments ``pip-omni COMMAND ...`` (``argv``, the command first) gives its ``func``,
    pip's options among them split off as the command line would (``pip-omni run`` makes
    its on-demand bubbles with ``parse_args("install", ["install", "--bubble", ...])``)."""
    parser = build_parser(only=command)
    pip_groups: list[list[str]] = []
    if command in PIP_LIKE:
        from . import pipopts

        ours, pip_groups = pipopts.split(argv[1:], parser.omni_subparsers.choices[command], command)
        argv = argv[:1] + ours
    args = _json_anywhere(parser, command, argv)
    args.pip_groups = pip_groups
    args.pip_args = [tok for group in pip_groups for tok in group]
    return args


def _call(args) -> int:
    """Run the command; an error is one line and its hint (the traceback with ``-v``)."""
    verbose = getattr(args, "verbose", 0)
    from omnipkg_hook.errors import OmnipkgError

    try:
        return int(args.func(args) or 0)
    except OmnipkgError as e:
        if verbose:
            import traceback

            traceback.print_exc()
        error(e.message, e.hint)
        return getattr(e, "exit_status", 1)
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
        error(*oserror_line(e))
        return 1
    except KeyboardInterrupt:
        return interrupted()


def interrupted() -> int:
    """Say that a command was interrupted (^C); its exit status."""
    error("interrupted; nothing half-done is visible in the store (staging is left in tmp/ for gc)")
    return 130


def oserror_line(e: OSError) -> tuple[str, str]:
    """The one line (and hint) an ``OSError`` of a command is said in: the store's own words
    for a full disk or a read-only store, else the error and the file."""
    from omnipkg_hook.errors import OmnipkgError
    from omnipkg_hook.store import find_store, store_oserror

    try:
        known = store_oserror(find_store(), e)
    except OmnipkgError:  # no store to name (a broken pyproject setting): the plain line
        known = None
    if known:
        return known.message, known.hint
    line = f"{e.strerror}: {os.fsdecode(e.filename)!r}" if e.strerror and e.filename else str(e) or repr(e)
    return line, "rerun with -v for the traceback"
