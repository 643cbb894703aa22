"""``pip-omni install``: pip install that never disturbs the main environment.

1. Requirements whose distribution main already has at another version become
   bubbles at once; ones main already satisfies are reported as present.
2. The rest: pip is asked what it would do (``--dry-run --report``) and
   ``plan.plan_install`` sends each root to main (it disturbs nothing) or to a
   bubble (its closure would change something main has).
3. A bubble is taken from the store when it is there, made from stored dists
   when they suffice (no pip, no network), else fetched with ``pip wheel``.
4. Main installs run with a constraints file that pins everything installed,
   so pip itself refuses to change a version behind the plan's back.
5. One table says what happened, per package.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

from omnipkg_hook.errors import OmnipkgError, PipError
from omnipkg_hook.store import Store, normalize

from .. import bubbles, bytecode, environment, interpreters, progress
from . import remote

# pip.py and plan.py (packaging) load only when pip runs: a bubble from stored dists needs neither.

__all__ = ["register", "run", "Row"]

# pip options that shape resolution and fetching: passed to every pip call.
_VALUE_OPTS = [
    (("-c", "--constraint"), "constraint"),
    (("-i", "--index-url"), "index_url"),
    (("--extra-index-url",), "extra_index_url"),
    (("-f", "--find-links"), "find_links"),
    (("--trusted-host",), "trusted_host"),
    (("--only-binary",), "only_binary"),
    (("--no-binary",), "no_binary"),
    (("-C", "--config-settings"), "config_settings"),
    (("--cert",), "cert"),
    (("--client-cert",), "client_cert"),
    (("--proxy",), "proxy"),
    (("--timeout",), "timeout"),
    (("--retries",), "retries"),
]
_FLAG_OPTS = [
    (("--no-index",), "no_index"),
    (("--pre",), "pre"),
    (("--prefer-binary",), "prefer_binary"),
    (("--no-build-isolation",), "no_build_isolation"),
]
# pip options that only mean something for an install into main.
_MAIN_VALUE_OPTS = [(("--upgrade-strategy",), "upgrade_strategy"), (("-e", "--editable"), "editable")]
_MAIN_FLAG_OPTS = [
    (("-U", "--upgrade"), "upgrade"),
    (("--force-reinstall",), "force_reinstall"),
    (("--no-deps",), "no_deps"),
    (("--user",), "user"),
    (("--no-compile",), "no_compile"),
    (("--break-system-packages",), "break_system_packages"),
]


def register(sub) -> None:
    p = sub.add_parser(
        "install",
        help="install packages; a version that would disturb the environment goes to a bubble",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("requirements", nargs="*", metavar="REQ", help="requirement specifiers, as for pip")
    p.add_argument("-r", "--requirement", action="append", default=[], metavar="FILE",
                   help="install from the given requirements file (as pip)")
    for flags, dest in _VALUE_OPTS + _MAIN_VALUE_OPTS:
        p.add_argument(*flags, dest=dest, action="append", default=[], help=argparse.SUPPRESS)
    for flags, dest in _FLAG_OPTS + _MAIN_FLAG_OPTS:
        p.add_argument(*flags, dest=dest, action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bubble", action="store_true", help="put every requirement in a bubble, even if main could take it")
    p.add_argument("--strategy", choices=("stable", "latest"), default="stable",
                   help="stable (default): main never changes; latest: the new version goes to main "
                   "and the version it replaces is kept as a bubble")
    p.add_argument("--python", metavar="PATH", help="interpreter (version of an adopted one, or a path; default: `pip-omni swap python`, else this one)")
    p.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    p.add_argument("--json", action="store_true", help="print the result table as JSON")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="show pip's output and tracebacks")
    p.epilog = ("pip options that shape resolution (-c, -i, --extra-index-url, -f, --no-index, --pre, "
                "--only-binary, --no-binary, --prefer-binary, --trusted-host, -C, --cert, --proxy, ...) "
                "are passed to every pip call; -U, --force-reinstall, --no-deps, --user, -e only to installs into main.")
    remote.add_install_options(p)
    p.set_defaults(func=run)


class Row:
    """One line of the result table (a plain class: importing ``dataclasses`` costs more than
    a bubble from stored dists)."""

    __slots__ = ("name", "version", "where", "action", "reason")

    def __init__(self, name: str, version: str, where: str, action: str, reason: str = "") -> None:
        self.name, self.version = name, version
        self.where = where  # "main" | "bubble"
        self.action = action  # "installed" | "created" | "pulled" | "present" | "would install" | "would create"
        self.reason = reason

    def asdict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self) -> str:
        return f"Row({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


def _collect(args, specs) -> list[str]:
    out: list[str] = []
    for flags, dest in specs:
        value = getattr(args, dest)
        if value is True:
            out.append(flags[-1])
        elif isinstance(value, list):
            for v in value:
                out += [flags[-1], v]
    return out


def run(args) -> int:
    progress.set_quiet(args.quiet > 0 or args.json)
    if not args.requirements and not args.requirement and not args.editable:
        raise OmnipkgError("nothing to install", "name a requirement, e.g. `pip-omni install rich==13.4.2`, or -r FILE")
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    common = _collect(args, _VALUE_OPTS + _FLAG_OPTS)
    main_only = _collect(args, _MAIN_VALUE_OPTS + _MAIN_FLAG_OPTS)
    parsed = [(text, bubbles.parse_requirement(text)) for text in args.requirements]  # bad input: stop here

    main_now = environment.installed(interpreter, store)
    rows: list[Row] = []
    bubble_jobs: list[tuple[str, str]] = []
    pending: list[str] = []
    for text, req in parsed:
        name = normalize(req.name)
        have = main_now.get(name)
        if args.bubble:
            bubble_jobs.append((text, "--bubble"))
        elif args.strategy == "stable" and req.url is None and have is not None and not args.upgrade:
            if req.specifier.contains(have, prereleases=True) and not req.extras:
                rows.append(Row(name, have, "main", "present", "already satisfied"))
            elif not req.specifier.contains(have, prereleases=True):
                bubble_jobs.append((text, f"main has {name} {have}"))
            else:
                pending.append(text)
        else:
            pending.append(text)

    the_plan = None
    if pending or args.requirement or args.editable:
        files = [x for f in args.requirement for x in ("-r", f)]
        from .. import pip, plan

        report = pip.dry_run_report(
            interpreter.executable, [*pending, *files, *common, *main_only],
            what="resolve against the main environment", verbose=args.verbose,
        )
        items = plan.items_from_report(report)
        the_plan = plan.plan_install(items, main_now, interpreter.markers,
                                     force_bubble=args.bubble, strategy=args.strategy)
        bubble_jobs += [(root.requirement(), reason) for root, reason in the_plan.to_bubble]
        bubble_jobs += [(f"{n}=={old}", f"main's {n} {old}, replaced by --strategy latest")
                        for n, old in the_plan.keep_as_bubble]
        if the_plan.to_main:
            main_names = set()
            for root in the_plan.to_main:
                main_names |= plan.closure(root, items, interpreter.markers)
            for n in sorted(main_names):
                it = items[n]
                note = (f"replaces {main_now[n]}" if n in main_now else "new to main")
                rows.append(Row(n, it.version, "main", "would install", note))

    if args.dry_run:
        rows += [Row(normalize(bubbles.parse_requirement(t).name), _version_of(t), "bubble",
                     "would create", reason) for t, reason in bubble_jobs]
        _print(rows, args)
        return 0

    # Bubbles first: if one fails, main has not been touched.
    shared = remote.for_install(args) if bubble_jobs else None
    for text, reason in bubble_jobs:
        rows.append(_make_bubble(store, interpreter, text, reason, common, args.verbose, shared, main_now))
    remote.push_made(shared, store, interpreter, rows)
    if the_plan is not None and the_plan.to_main:
        _install_main(interpreter, the_plan, main_now, common, main_only, args)
        for row in rows:
            if row.action == "would install":
                row.action = "installed"
        main_now = environment.installed(interpreter, store)
    # Dists left uncompiled because main had them, which main no longer serves (bytecode.py)
    bytecode.compile_pending(store, interpreter, main_now)
    _print(rows, args)
    return 0


def _version_of(text: str) -> str:
    req = bubbles.parse_requirement(text)
    return str(req.specifier) or "*"


def _make_bubble(store: Store, interpreter, text: str, reason: str, common: list[str], verbose: int,
                 shared=None, main_now: dict | None = None) -> Row:
    req = bubbles.parse_requirement(text)
    name = normalize(req.name)
    if req.url is None:
        existing = bubbles.find_bubble(store, req, interpreter)
        if existing is not None:
            return Row(name, existing["version"], "bubble", "present", reason)
        manifest = bubbles.bubble_from_store(store, req, interpreter, main_now)
        if manifest is not None:
            return Row(name, manifest["version"], "bubble", "created",
                       f"{reason}; {len(manifest['dists'])} dists, all already stored")
        pulled = remote.pull_for_install(shared, store, req, interpreter, main_now)  # commands/remote.py
        if pulled is not None:
            return Row(name, pulled["version"], "bubble", "pulled", f"{reason}; from {shared.url}")
    from omnipkg_hook.store import DownloadDir

    # Downloads are staged in <store>/tmp (gc and doctor clear what a killed install leaves),
    # held by a flock that pip inherits, so a concurrent gc never removes a live download.
    with DownloadDir(store, "wheels-") as work:
        from .. import pip

        pip.run_pip(interpreter.executable, ["wheel", "--wheel-dir", work.path, text, *common],
                    what=f"fetch {text} and its dependencies", verbose=verbose, hold=work)
        wheels = sorted(glob.glob(os.path.join(work.path, "*.whl")))
        with progress.step(f"store {len(wheels)} wheels"):
            manifest = bubbles.bubble_from_wheels(store, wheels, req, interpreter, main_now)
    return Row(name, manifest["version"], "bubble", "created", f"{reason}; {len(manifest['dists'])} dists")


def _install_main(interpreter, the_plan, main_now, common, main_only, args) -> None:
    from .. import pip

    reqs = [root.requirement() for root in the_plan.to_main]
    guard = []
    work = None
    if args.strategy == "stable":
        import tempfile

        work = tempfile.mkdtemp(prefix="pip-omni-guard-")
        guard = ["-c", environment.guard_constraints(main_now, os.path.join(work, "installed.txt"))]
    try:
        pip.run_pip(interpreter.executable, ["install", *reqs, *common, *main_only, *guard],
                    what="install into the main environment", verbose=args.verbose)
    except PipError as e:
        if guard:
            raise PipError(e.message, "pip-omni kept every installed version fixed; "
                           "use --bubble, or --strategy latest to let main change. " + (e.hint or ""),
                           log=e.log) from None
        raise
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)


def _print(rows: list[Row], args) -> None:
    if args.json:
        json.dump([r.asdict() for r in rows], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    if args.quiet or not rows:
        return
    header = ("Package", "Version", "Where", "What", "Why")
    table = [header] + [(r.name, r.version, r.where, r.action, r.reason) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])
