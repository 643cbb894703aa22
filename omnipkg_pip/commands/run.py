"""``pip-omni run``: run a script, ``-c`` code or ``-m`` module with pins, as ``python`` would.

    pip-omni run script.py [args]                    # its `# /// script` block (PEP 723) is honoured
    pip-omni run --with rich==13.4.2 -m rich.diagnose
    pip-omni run --python 3.9,3.12 -m pytest -q      # several interpreters: prefixed output, a table
    pip-omni run --matrix rich=13.4.2,13.5.3,main -- -m pytest -q

Options come before the script: everything after the script, ``-m MODULE``, ``-c CODE``
or ``-`` (the script on stdin) belongs to the child, as with ``python``. One interpreter:
the child gets the real terminal and stdin, its exit status is pip-omni's, nothing is
added to its output; under the interpreter pip-omni runs on it runs in pip-omni's own
process (no second interpreter, no pip, no ``packaging``). Several cells (interpreters
and ``--matrix`` values): see :mod:`omnipkg_pip.run.matrix`. Requirements of the script block,
``--with`` and ``--pin`` are satisfied from main when main satisfies them, else from the
store, else a bubble is made on demand (``--offline`` refuses); nothing is installed into
main. ``#!/usr/bin/env -S pip-omni run`` works as a shebang line.
"""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import BubbleNotFoundError, OmnipkgError

__all__ = ["register", "parse", "parse_or_exit", "run", "USAGE"]

USAGE = """\
usage: pip-omni run [options] (script.py | -m MODULE | -c CODE | -) [args ...]

Run a script with pins, as python would: everything after the script (or -m MODULE,
-c CODE, - for stdin) is the script's. A `# /// script` block (PEP 723) is honoured.

options:
  --with REQ            a requirement for this run (repeatable; as uv's --with)
  --pin REQ             the same as --with
  --python V1,V2,...    interpreters: adopted versions or paths (default: the default one,
                        else one that satisfies the script's requires-python)
  --matrix NAME=V1,V2   run once per value (an exact version, or main); repeatable: the
                        cells are the product of the axes and the interpreters
  -j, --jobs N          cells run in parallel (default: the number of CPUs)
  --stream              several cells: show their output live, prefixed
  --table               one interpreter: print the summary table too
  --json                several cells: the table as JSON on stdout (output to stderr)
  --offline             never make a bubble; say which command would
  --install             make missing bubbles (the default; kept for old scripts)
  -f, --find-links URL  for bubbles made on demand: as pip's --find-links
  -i, --index-url URL   as pip's --index-url;  --extra-index-url URL, --no-index likewise
  -h, --help            show this help
"""

RAN_HERE = False  # a program ran in this process (_run_here): cli.console then exits as python does

_VALUE = {"--with": "with_", "--pin": "with_", "--python": "python", "--matrix": "matrix", "--jobs": "jobs",
          "-j": "jobs", "-f": "find_links", "--find-links": "find_links", "-i": "index_url",
          "--index-url": "index_url", "--extra-index-url": "extra_index_url"}
_FLAG = {"--stream": "stream", "--table": "table", "--json": "json", "--offline": "offline",
         "--install": "install", "--no-index": "no_index"}
_LISTS = ("with_", "python", "matrix", "find_links", "index_url", "extra_index_url")


class UsageError(OmnipkgError):
    """A command line ``pip-omni run`` cannot take (exit status 2, as argparse's)."""


class Options:
    def __init__(self) -> None:
        for name in _LISTS:
            setattr(self, name, [])
        self.jobs = None
        self.stream = self.table = self.json = self.offline = self.install = self.no_index = False
        self.help = False
        self.target: list[str] = []
        self.func = run

    def index(self) -> list[str]:
        out = [x for f in self.find_links for x in ("-f", f)]
        out += [x for u in self.index_url for x in ("-i", u)]
        out += [x for u in self.extra_index_url for x in ("--extra-index-url", u)]
        return out + (["--no-index"] if self.no_index else [])


def parse(argv: list[str]) -> Options:
    """``python``-style: options until the script, ``-m``, ``-c`` or ``-``; the rest is the child's."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts.target = argv[i + 1:]
            break
        if arg in ("-h", "--help"):
            opts.help = True
            return opts
        if arg in ("-c", "-m"):
            if i + 1 >= len(argv):
                raise UsageError(f"argument {arg} needs a value",
                                 "e.g. `pip-omni run -m pytest -q` or `pip-omni run -c 'print(1)'`")
            opts.target = [arg, *argv[i + 1:]]
            break
        if arg[:2] in ("-c", "-m") and not arg.startswith("--"):  # -mpytest, as python takes it
            opts.target = [arg[:2], arg[2:], *argv[i + 1:]]
            break
        if arg == "-" or not arg.startswith("-"):
            opts.target = argv[i:]
            break
        name, eq, value = arg.partition("=")
        if name in _FLAG and not eq:
            setattr(opts, _FLAG[name], True)
            i += 1
            continue
        if name in _VALUE:
            if not eq:
                if i + 1 >= len(argv):
                    raise UsageError(f"argument {name} needs a value", "see `pip-omni run --help`")
                value = argv[i + 1]
                i += 1
            dest = _VALUE[name]
            if dest in _LISTS:
                getattr(opts, dest).append(value)
            else:
                setattr(opts, dest, value)
            i += 1
            continue
        raise UsageError(
            f"unknown option {arg!r} for pip-omni run",
            "pip-omni's options go before the script; everything after the script, -m MODULE "
            "or -c CODE is the script's (see `pip-omni run --help`)",
        )
    if not opts.target:
        raise UsageError("nothing to run", "give a script (`pip-omni run script.py`), `-m MODULE`, `-c CODE` or `-`")
    if opts.jobs is not None:
        try:
            opts.jobs = int(opts.jobs)
            if opts.jobs < 1:
                raise ValueError
        except ValueError:
            raise UsageError(f"--jobs takes a positive number, not {opts.jobs!r}", "e.g. --jobs 4") from None
    return opts


def parse_or_exit(argv: list[str]) -> Options:
    """:func:`parse`, or argparse's behaviour on a bad command line: one line, exit 2."""
    try:
        return parse(argv)
    except UsageError as e:
        print(f"pip-omni run: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        raise SystemExit(2) from None


def register(sub) -> None:
    import argparse

    p = sub.add_parser("run", help="run a script with pins as python would; PEP 723 scripts; --matrix",
                       add_help=False, description=__doc__.split("\n\n")[0])
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=lambda args: run(parse_or_exit(args.argv)))


# -- one run ------------------------------------------------------------------------------


def _read_source(target: list[str]) -> bytes | None:
    """The program text when it is a file or stdin (None for -c/-m, a directory, a zip or a
    missing file, which the runner reports as python does)."""
    if not target or target[0] in ("-c", "-m"):
        return None
    if target[0] == "-":
        return sys.stdin.buffer.read()
    try:
        with open(target[0], "rb") as f:
            data = f.read()
    except OSError:
        return None
    return None if data[:4] == b"PK\x03\x04" else data


def _requirements(opts: Options, meta) -> tuple[list[str], list[str]]:
    """The script's dependencies and ``--with``/``--pin``, as requirement strings (see
    :func:`omnipkg_pip.run.ondemand.requirements` for how they make one pin per distribution)."""
    extra: list[str] = []
    for value in opts.with_:
        from omnipkg_hook._requirements import parse_pins, split_pins

        parse_pins(value, source="--with")  # bad input: one line, nothing run
        extra += split_pins(value)
    return (list(meta.dependencies) if meta is not None else []), extra


def run(opts: Options) -> int:
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    try:
        return _run(opts)
    finally:  # bubbles made for this run: compiled now that its program has ended
        made = sys.modules.get("omnipkg_pip.run.ondemand")
        if made is not None:
            made.compile_later()


def _run(opts: Options) -> int:
    target = opts.target
    root = _store_root()
    source = _read_source(target)
    meta = None
    if source is not None:
        from ..run import pep723

        if pep723.has_block(source):
            meta = pep723.read_cached(source, "<stdin>" if target[0] == "-" else target[0], root)
    texts = _requirements(opts, meta)
    if opts.matrix or len(_python_specs(opts)) > 1 or opts.table or opts.json:
        from ..run import matrix

        return matrix.main(opts, _store(root), texts, meta, source)
    python = _choose_python(root, _python_specs(opts), meta)
    if python is None:  # the interpreter pip-omni runs on: in this process
        return _run_here(root, texts, target, source, opts)
    return _run_child(_store(root), python, texts, target, source, opts)


def _store_root() -> str:
    """The store's root as ``find_store()`` says, without importing ``json`` and ``re`` when the
    start-up code can tell (it mirrors ``find_store``; a pyproject naming the store defers to it)."""
    from omnipkg_hook import startup

    root = startup._store_root()
    if root is None:
        from omnipkg_hook.store import find_store

        root = find_store()
    return root


def _store(root: str):
    from omnipkg_hook.store import Store

    return Store(root)


def _python_specs(opts: Options) -> list[str]:
    return [s.strip() for v in opts.python for s in v.split(",") if s.strip()]


def _here_is_default(root: str) -> bool:
    """True when no ``--python`` means this interpreter, decided without probing anything."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv and os.path.realpath(venv) != os.path.realpath(sys.prefix):
        return False
    registry = os.path.join(root, "interpreters.json")
    if not os.path.exists(registry):
        return True
    import json

    try:
        with open(registry, encoding="utf-8") as f:
            default = json.load(f).get("default")
    except (OSError, ValueError, AttributeError):
        return True  # interpreters.resolve_python says the same (or reports the bad file)
    return not default or os.path.realpath(default) == os.path.realpath(sys.executable)


def _choose_python(root: str, specs: list[str], meta):
    """None for the running interpreter, else the :class:`~omnipkg_pip.pythons.interp.Interpreter`."""
    wanted = meta.requires_python if meta is not None else None
    if not specs and _here_is_default(root) and (wanted is None or _fits(meta, _here_version())):
        return None
    from ..pythons import interpreters

    store = _store(root)
    if specs:
        py = interpreters.resolve_python(store, specs[0])
        if wanted is not None and not _satisfies(wanted, py.version):
            raise OmnipkgError(f"{meta.where} requires Python {wanted}; --python {specs[0]} is Python {py.version}",
                               "choose another with --python, or leave it out to let pip-omni choose")
        return None if py.is_current else py
    py = interpreters.resolve_python(store, None)
    if wanted is None or _satisfies(wanted, py.version):
        return None if py.is_current else py
    return _pick_for(store, wanted, py, meta)


def _fits(meta, version: str) -> bool:
    known = meta.fits.get(version)
    return _satisfies(meta.requires_python, version) if known is None else known


def _here_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def _satisfies(spec: str, version: str) -> bool:
    from omnipkg_hook._pep440 import SpecifierSet

    return SpecifierSet(spec).contains(version, prereleases=True)


def _pick_for(store, wanted: str, default, meta):
    """The newest adopted interpreter that satisfies ``requires-python``, or a clear error."""
    from ..pythons import interp, interpreters

    records = interpreters.registry(store)["interpreters"]
    fits = [r for r in records if _satisfies(wanted, r["version"]) and os.path.exists(r["path"])]
    if _satisfies(wanted, _here_version()):
        fits.append({"version": _here_version(), "path": sys.executable})
    if not fits:
        have = sorted({r["version"] for r in records} | {default.version}, key=interpreters._vtuple)
        raise OmnipkgError(
            f"{meta.where} requires Python {wanted}; the adopted interpreters are {', '.join(have)}",
            "adopt one that fits: `pip-omni python adopt VERSION` (see `pip-omni python list`)",
        )
    best = max(fits, key=lambda r: interpreters._vtuple(r["version"]))
    if best["path"] == sys.executable:
        return None
    py = interp.inspect(best["path"])
    return None if py.is_current else py


def _run_here(root: str, texts: tuple[list[str], list[str]], target: list[str], source, opts: Options) -> int:
    from omnipkg_hook.workers import runner

    from ..run import ondemand

    texts = ondemand.requirements(*texts, None) if texts[0] or texts[1] else []
    if texts:
        value = ",".join(texts)
        try:
            runner.apply_pins(value)
        except BubbleNotFoundError:
            missing = ondemand.missing_here(texts, _store(root))
            if not missing:
                raise
            ondemand.make_bubbles(sys.executable, _here_version(), missing, offline=opts.offline,
                                  index=opts.index())
            runner.apply_pins(value, again=True)
    global RAN_HERE
    RAN_HERE = True  # the process ends as python's does (cli.console)
    return runner.execute(target, source)  # a missing script: python's own one-line error


def _run_child(store, python, texts: tuple[list[str], list[str]], target: list[str], source, opts: Options) -> int:
    from ..run import matrix, ondemand

    if target[0] not in ("-c", "-m", "-") and source is None and not os.path.exists(target[0]):
        print(f"{python.executable}: can't open file {os.path.abspath(target[0])!r}: "
              "[Errno 2] No such file or directory", file=sys.stderr)
        return 2
    pins = ondemand.requirements(*texts, python.markers)
    missing = ondemand.missing_for(store, python, pins)
    # made in this process (it runs no user code itself: the program runs under `python`)
    making = ondemand.start(store, [(python, missing)], offline=opts.offline, index=opts.index())
    if making is not None:
        making.finish("nothing was run")
    if not pins and os.environ.get("OMNIPKG_PINS"):
        pins = [os.environ["OMNIPKG_PINS"]]  # no pins of its own: the environment's, as python would
    return matrix.run_attached(python.executable, pins, target, source, store.root)
