"""``pip-omni install``: pip install that never disturbs the main environment.

1. Requirements whose distribution main already has at another version become
   bubbles at once; ones main already satisfies are reported as present. Two
   versions of one name both become bubbles.
2. The rest (and paths, wheel files, sdists, URLs, ``-e``): pip is asked what it would
   do (``--dry-run --report``) and ``plan.plan_install`` sends each root to main (it
   disturbs nothing) or to a bubble (its closure would change something main has).
   An interpreter that is not an environment (a base Python) gets only bubbles unless
   ``--main``.
3. A bubble is taken from the store when it is there, made from stored dists when they
   suffice (no pip, no network), else fetched with ``pip wheel``. ``-c`` constraints
   bound all three.
4. Main installs run with a constraints file that pins everything installed,
   so pip itself refuses to change a version behind the plan's back.
5. One table says what happened, per package, with resolved versions (also ``--dry-run``).

Options pip-omni does not define are pip's and are passed on with their values
(:mod:`omnipkg_pip.pipopts`): to every pip run, or only to installs into main for the
options ``pip wheel`` does not take (``--user``, ``--force-reinstall``...).
"""

from __future__ import annotations

import _thread
import os
import sys

from omnipkg_hook.errors import OmnipkgError, PipError
from omnipkg_hook.store import Store, normalize

from .. import environment, progress, reqfiles
from ..pythons import interpreters
from ..text import plural
from ..writers import bubbles, bytecode, deferred
from . import remote

# Imported where used, not here: a bubble from stored dists (``pip-omni install rich==13.4.2``,
# the common warm case) needs none of argparse, glob, json, shutil, packaging.

__all__ = ["register", "run", "Row", "plain_args"]

_REFUSED = {
    ("-t", "--target"): ("target", "a --target directory has no import hook and no bubbles: pip-omni installs into "
                         "an environment and its store", "for a plain directory use `pip install --target DIR`"),
    ("--prefix",): ("prefix", "an install --prefix is another environment pip-omni does not manage",
                    "name that environment's interpreter with --python"),
    ("--root",): ("root", "an install --root is a staging tree pip-omni does not manage",
                  "name the environment's interpreter with --python"),
    ("--platform",): ("platform", "--platform chooses wheels for another machine; pip-omni installs for a real "
                      "interpreter", "name it with --python"),
    ("--python-version",): ("python_version", "--python-version chooses wheels for another Python; pip-omni installs "
                            "for a real interpreter", "name it with --python (e.g. `--python 3.9`)"),
    ("--implementation",): ("implementation", "--implementation chooses wheels for another Python", "name it with --python"),
    ("--abi",): ("abi", "--abi chooses wheels for another Python", "name it with --python"),
    ("--report",): ("report", "--report describes one pip run; pip-omni makes several, and bubbles pip never sees",
                    "use --json (and --dry-run) for what pip-omni did or would do"),
}


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "install",
        help="install packages; a version that would disturb the environment goes to a bubble",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("requirements", nargs="*", metavar="REQ",
                   help="requirement specifiers, local paths (.), wheel or sdist files, URLs (git+https://...), as for pip")
    p.add_argument("-r", "--requirement", action="append", default=[], metavar="FILE",
                   help="install from the given requirements file (as pip)")
    p.add_argument("-c", "--constraint", action="append", default=[], metavar="FILE",
                   help="constrain versions with the given file (as pip); bubbles too")
    p.add_argument("-e", "--editable", action="append", default=[], metavar="PATH",
                   help="install a project in editable mode into main (an error when it would disturb main)")
    p.add_argument("-U", "--upgrade", action="store_true",
                   help="the newest version within the specifier (a bubble when main has the name)")
    p.add_argument("--bubble", action="store_true", help="put every requirement in a bubble, even if main could take it")
    p.add_argument("--main", action="store_true",
                   help="allow installing into an interpreter that is not a virtual environment (a system or "
                   "pyenv Python); without it such an interpreter only gets bubbles")
    p.add_argument("--break-system-packages", action="store_true", help="as pip's; implies --main")
    p.add_argument("--strategy", choices=("stable", "latest"), default="stable",
                   help="stable (default): main never changes; latest: the new version goes to main "
                   "and the version it replaces is kept as a bubble")
    p.add_argument("--python", metavar="PATH",
                   help="interpreter (an adopted version or a path; default: the active environment)")
    p.add_argument("--dry-run", action="store_true", help="say what would happen, with resolved versions; change nothing")
    p.add_argument("--no-compile", action="store_true",
                   help="as pip's: no .pyc now; a bubble's dists are imported from their sources (nothing "
                   "written) until `pip-omni store compile` or the next install compiles them")
    # pip-omni run's bubbles: a dist main has at the same version is stored after the run
    # (omnipkg_pip.writers.deferred), which the run's background compile does
    p.add_argument("--store-later", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the result table as JSON")
    p.add_argument("-q", "--quiet", action="count", default=0, help="less output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="show pip's output and tracebacks")
    for flags, (dest, _why, _hint) in _REFUSED.items():
        p.add_argument(*flags, dest=f"refused_{dest}", action="append", help=argparse.SUPPRESS)
    p.epilog = ("Every other pip install option (--require-hashes, --no-cache-dir, -i, -f, --no-index, --pre, ...) "
                "is passed to pip with its value; those pip wheel does not take (--user, --force-reinstall, ...) "
                "only to installs into main. Refused: --target, --prefix, --root, --platform, --python-version, "
                "--implementation, --abi, --report.")
    remote.add_install_options(p)
    p.set_defaults(func=run)


class _Args:
    """What argparse's ``Namespace`` is, without importing argparse."""

    def __init__(self, **kwargs) -> None:
        self.__dict__.update(kwargs)


def plain_args(requirements: list[str]):
    """The arguments ``register``'s parser gives ``install REQ...`` (no option), made without
    argparse: the CLI's fast path for the common form (tests/cli checks both agree)."""
    return _Args(
        command="install", requirements=list(requirements), requirement=[], constraint=[], editable=[],
        upgrade=False, bubble=False, main=False, break_system_packages=False, strategy="stable", python=None,
        dry_run=False, no_compile=False, store_later=False, json=False, quiet=0, verbose=0, remote=None, no_remote=False, push=False,
        endpoint_url=None, **{f"refused_{dest}": None for dest, _why, _hint in _REFUSED.values()},
        func=run, pip_groups=[], pip_args=[],
    )


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


class _Job:
    __slots__ = ("text", "reason", "version", "report")

    def __init__(self, text: str, reason: str, version: str | None = None, report: dict | None = None) -> None:
        self.text = text  # the requirement the bubble is made from
        self.reason = reason
        self.version = version  # known from pip's report
        self.report = report  # pip's report that planned it: the bubble is fetched from it, not resolved again


def _refuse(args) -> None:
    for flags, (dest, why, hint) in _REFUSED.items():
        if getattr(args, f"refused_{dest}"):
            from ..pipopts import UsageError

            raise UsageError(f"{flags[-1]} is not supported: {why}", hint)


def _split_pip_groups(groups: list[list[str]]) -> tuple[list[str], list[str]]:
    """pip's options on the line -> (those every pip run gets, those only an install into main gets)."""
    from .. import pipopts

    common = [t for g in groups if pipopts.name_of(g) not in pipopts.INSTALL_ONLY for t in g]
    return common, [t for g in groups if pipopts.name_of(g) in pipopts.INSTALL_ONLY for t in g]


def _constrain(req, constraints: dict):
    """``req`` with the -c specifiers of its name added (a new Requirement)."""
    extra = constraints.get(normalize(req.name))
    if extra is None or req.url:
        return req
    out = bubbles.parse_requirement(str(req))
    out.specifier &= extra
    return out


def _constraint_specs(lines: list[str]) -> dict:
    out: dict = {}
    for line in lines:
        req = bubbles.parse_requirement(line)
        if req.url is None:
            name = normalize(req.name)
            out[name] = out[name] & req.specifier if name in out else req.specifier
    return out


def run(args, *, out=None, on_bubble=None) -> int:
    """The command. ``out``: where the table goes (default: stdout). ``on_bubble(text, error)``
    is called, in the thread that made it, as each bubble is published (``error`` None) or
    has failed (an :class:`OmnipkgError`): ``pip-omni run --matrix`` starts a cell as soon as
    its bubbles are there. Several runs may go on at once in one process (one per
    interpreter): what they share (leases, the remote, :func:`.indexplan.sharing`) is
    made for that."""
    _refuse(args)
    progress.set_quiet(args.quiet > 0 or args.json)
    files = reqfiles.read(args.requirement, args.constraint)
    texts = [*args.requirements, *files.requirements]
    editables = [*args.editable, *files.editables]
    if not texts and not editables and not files.opaque:
        from ..pipopts import UsageError

        raise UsageError("nothing to install",
                                 "name a requirement, e.g. `pip-omni install rich==13.4.2`, a path, or -r FILE")
    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    groups = args.pip_groups
    common, main_only = _split_pip_groups(groups) if groups else ([], [])  # pipopts: only when pip options were given
    common += files.options + [t for f in args.constraint for t in ("-c", f)]
    main_only += ["-U"] * args.upgrade + ["--break-system-packages"] * args.break_system_packages
    main_only += ["--no-compile"] * args.no_compile  # pip's own meaning for an install into main
    constraints = _constraint_specs(files.constraints)
    exact = not any(kind == "-c" for kind, _f in files.opaque)  # every constraint known: store shortcuts are safe
    direct = [t for t in texts if reqfiles.is_direct(t)]
    named = [(t, _constrain(bubbles.parse_requirement(t), constraints)) for t in texts if t not in direct]

    base = not interpreters.is_environment(interpreter) and not (args.main or args.break_system_packages)
    force = args.bubble or base
    why_forced = "--bubble" if args.bubble else (
        f"Python {interpreter.version} at {interpreter.executable} is not a virtual environment "
        "(--main installs into it)")
    if editables and force:
        raise OmnipkgError(f"cannot install {editables[0]!r} in editable mode: {why_forced}",
                           "a bubble is never editable; drop -e for a bubble, or install into a virtual environment")

    main_now = environment.installed(interpreter, store)
    rows: list[Row] = []
    jobs: list[_Job] = []
    pending: list[str] = []
    counts: dict[str, int] = {}
    for _t, req in named:
        counts[normalize(req.name)] = counts.get(normalize(req.name), 0) + 1
    for text, req in named:
        name = normalize(req.name)
        have = main_now.get(name)
        if req.url is not None:
            pending.append(text)
        elif args.strategy == "stable" and have is not None and not args.upgrade and exact:
            if req.specifier.contains(have, prereleases=True) and not req.extras and not args.bubble:
                rows.append(Row(name, have, "main", "present", "already satisfied"))
            elif not req.specifier.contains(have, prereleases=True):
                jobs.append(_Job(str(req), f"main has {name} {have}"))
            elif force:
                jobs.append(_Job(str(req), why_forced))
            else:
                pending.append(text)
        elif force and not args.upgrade:
            jobs.append(_Job(str(req), why_forced))
        elif counts[name] > 1 and args.strategy == "stable":
            jobs.append(_Job(str(req), f"{counts[name]} versions of {name} asked for"))
        else:
            pending.append(text)

    the_plan = items = None
    opaque = [t for kind, f in files.opaque if kind == "-r" for t in ("-r", f)]
    opaque_c = [t for kind, f in files.opaque if kind == "-c" for t in ("-c", f)]
    common += opaque_c
    if pending or direct or editables or opaque:
        from .. import pip, plan  # packaging: only when pip runs

        report = pip.dry_run_report(
            interpreter.executable,
            [*pending, *direct, *opaque, *[t for e in editables for t in ("-e", e)], *common, *main_only],
            what="resolve against the main environment", verbose=args.verbose,
        )
        items = plan.items_from_report(report)
        the_plan = plan.plan_install(items, main_now, interpreter.markers,
                                     force_bubble=force, strategy=args.strategy)
        for root, reason in the_plan.to_bubble:
            if root.editable:
                raise OmnipkgError(
                    f"cannot install {root.name} ({root.url}) in editable mode: it {reason.replace('--bubble', 'must be a bubble')}",
                    "a bubble is never editable; drop -e to get a bubble, or resolve the conflict in main first")
            jobs.append(_Job(root.requirement(), why_forced if reason == "--bubble" else reason, root.version, report))
        jobs += [_Job(f"{n}=={old}", f"main's {n} {old}, replaced by --strategy latest", old)
                 for n, old in the_plan.keep_as_bubble]
        if the_plan.to_main:
            main_names = set()
            for root in the_plan.to_main:
                main_names |= plan.closure(root, items, interpreter.markers)
            for n in sorted(main_names):
                note = f"replaces {main_now[n]}" if n in main_now else "new to main"
                rows.append(Row(n, items[n].version, "main", "would install", note + (" (editable)" * items[n].editable)))
        for text in pending:
            req = bubbles.parse_requirement(text)
            name = normalize(req.name)
            if name not in items and name in main_now:
                rows.append(Row(name, main_now[name], "main", "present", "already satisfied"))

    if args.dry_run:
        rows += [_preview(store, interpreter, job, common, args.verbose, exact) for job in jobs]
        _print(rows, args, out)
        return 0

    # Bubbles first: if one fails, main has not been touched.
    shared = remote.for_install(args) if jobs else None
    failed: list = []
    now = not args.no_compile
    # stored later only where something runs after this install to do it, and nothing pushes now
    defer = args.store_later and not now and not (shared is not None and shared.push)
    if jobs and not now:
        bytecode.start_list(store, interpreter)  # so that what is left uncompiled is marked pending
    _lease_scope(+1)
    try:
        if len(jobs) == 1:
            rows.append(_told(on_bubble, jobs[0], lambda: _make_bubble(
                store, interpreter, jobs[0], common, args.verbose, exact, shared, main_now, now, defer)))
        elif jobs:
            made, failed = _make_bubbles(store, interpreter, jobs, common, args.verbose, exact, shared, main_now,
                                         now, on_bubble, defer)
            rows += made
    finally:
        _lease_scope(-1)
    remote.push_made(shared, store, interpreter, rows)
    if failed:
        _print(rows, args, out)  # the bubbles made, and a row for each that failed
        raise _failure(failed)
    if the_plan is not None and the_plan.to_main:
        _install_main(interpreter, the_plan, main_now, editables, common, main_only, args)
        for row in rows:
            if row.action == "would install":
                row.action = "installed"
        main_now = environment.installed(interpreter, store)
    if now:  # dists left uncompiled because main had them, which main no longer serves (bytecode.py)
        deferred.complete(store, interpreter)  # what a run left to store after it, and did not
        bytecode.compile_pending(store, interpreter, main_now)
    else:
        for row in rows:
            if row.action == "created":
                row.reason += "; not compiled (--no-compile)"
    _print(rows, args, out)
    return 0


def _told(on_bubble, job: _Job, make):
    """``make()``'s row, ``on_bubble`` told of it (or of its error, which is raised again)."""
    try:
        row = make()
    except OmnipkgError as e:
        if on_bubble is not None:
            on_bubble(job.text, e)
        raise
    if on_bubble is not None:
        on_bubble(job.text, None)
    return row


_AT_ONCE = 4  # bubbles planned and fetched at once (network waits, pip runs); each publishes under the lock


def _make_bubbles(store: Store, interpreter, jobs: list[_Job], common: list[str], verbose: int, exact: bool,
                  shared, main_now: dict | None, now: bool = True, on_bubble=None,
                  defer: bool = False) -> tuple[list[Row], list]:
    """Several bubbles at once: each :func:`_make_bubble` in a thread. Their index plans
    share pages, metadata, the TLS context and downloads (:func:`.indexplan.sharing`); each
    publishes under the store's lock, one after another, and reuses what an earlier one
    published (``ingest_wheel`` does not unpack a stored dist's wheel again). A bubble that
    fails does not stop the others. Returns the rows in ``jobs``' order (a failed one's says
    so) and ``[(job, error)]`` of those that failed; ``on_bubble``: see :func:`run`."""
    def one(job: _Job):
        try:
            return _told(on_bubble, job, lambda: _make_bubble(
                store, interpreter, job, common, verbose, exact, shared, main_now, now, defer)), None
        except OmnipkgError as e:
            return None, e

    # What the store alone makes (the warm case) is made here, with no thread and no index
    quick = {id(job): _quick(store, interpreter, job, common, exact, main_now, now) for job in jobs}
    if on_bubble is not None:
        for job in jobs:
            if quick[id(job)] is not None:
                on_bubble(job.text, None)
    rest = [job for job in jobs if quick[id(job)] is None]
    done = {id(job): (quick[id(job)], None) for job in jobs if quick[id(job)] is not None}
    if len(rest) == 1:
        done[id(rest[0])] = one(rest[0])
    elif rest:
        from concurrent.futures import ThreadPoolExecutor

        from omnipkg_hook.store import DownloadDir

        from ..writers import indexplan

        # the files downloaded are kept in `keep` for the other plans until all are made
        with DownloadDir(store, "shared-") as keep, indexplan.sharing(keep.path), \
                progress.step(f"make {plural(len(rest), 'bubble')}", verbose=verbose):
            with ThreadPoolExecutor(max_workers=min(_AT_ONCE, len(rest)),
                                    thread_name_prefix="pip-omni-bubble") as pool:
                done.update(zip(map(id, rest), pool.map(one, rest)))
    results = [done[id(job)] for job in jobs]
    rows, failed = [], []
    for job, (row, error) in zip(jobs, results):
        if error is None:
            rows.append(row)
            continue
        failed.append((job, error))
        rows.append(Row(normalize(bubbles.parse_requirement(job.text).name), "", "bubble", "failed",
                        " ".join(error.message.split())))  # one line of the table
    return rows, failed


def _failure(failed: list) -> OmnipkgError:
    """The error of the first bubble that failed, naming its requirement (and how many more failed)."""
    job, error = failed[0]
    more = f" (nor {plural(len(failed) - 1, 'other')}: see the table)" if len(failed) > 1 else ""
    error.message = f"the bubble {job.text!r} was not made{more}: {error.message}"
    error.args = (error.message,)
    return error


_REMOTE_LOCK = _thread.allocate_lock()  # bubbles made at once (in any run of this process): one remote pull at a time


def _pull(shared, store: Store, req, interpreter, main_now):
    if shared is None:
        return None
    with _REMOTE_LOCK:
        return remote.pull_for_install(shared, store, req, interpreter, main_now)


def _quick(store: Store, interpreter, job: _Job, common: list[str], exact: bool, main_now, now: bool = True) -> Row | None:
    """The row of ``job`` when it needs nothing fetched: its bubble is there, or stored dists make it
    (what :func:`_make_bubble` tries first; None: it must plan and fetch)."""
    req = bubbles.parse_requirement(job.text)
    if _names_source(common) and req.url is None and "--require-hashes" not in common:
        return None  # pip is asked what the source offers: _make_bubble compares
    present = _present(store, interpreter, req, job, exact)
    if present is not None or req.url is not None or not exact:
        return present
    manifest = bubbles.bubble_from_store(store, req, interpreter, main_now, compile=now)
    return _from_store_row(normalize(req.name), manifest, job) if manifest is not None else None


def _present(store: Store, interpreter, req, job: _Job, exact: bool) -> Row | None:
    """The row of an existing bubble that serves ``req`` (not with constraints pip-omni cannot read)."""
    if req.url is not None or not exact:
        return None
    existing = bubbles.find_bubble(store, req, interpreter)
    if existing is None:
        return None
    return Row(normalize(req.name), existing["version"], "bubble", "present", job.reason)


def _preview(store: Store, interpreter, job: _Job, common: list[str], verbose: int, exact: bool) -> Row:
    """What :func:`_make_bubble` would do, with the version it would pick; writes nothing."""
    req = bubbles.parse_requirement(job.text)
    name = normalize(req.name)
    present = _present(store, interpreter, req, job, exact)
    if present is not None:
        return present
    if req.url is None and exact:
        try:
            picked = bubbles.resolve_closure(req, bubbles.StoreIndex(store), interpreter)
        except bubbles.ClosureError:
            picked = None
        if picked:
            return Row(name, picked[name].manifest["version"], "bubble", "would create",
                       f"{job.reason}; {plural(len(picked), 'dist')}, all already stored")
    if job.version is not None:
        return Row(name, job.version, "bubble", "would create", job.reason)
    planned = _index_preview(store, req, interpreter, common, verbose)
    if planned is not None:
        return Row(name, planned[name].version, "bubble", "would create",
                   f"{job.reason}; {plural(len(planned), 'dist')}")
    from .. import pip, plan

    report = pip.dry_run_report(interpreter.executable, [job.text, "--ignore-installed", *common],
                                what=f"resolve {job.text}", verbose=verbose)
    items = plan.items_from_report(report)
    root = items.get(name) or next(it for it in items.values() if it.requested)
    return Row(name, root.version, "bubble", "would create", f"{job.reason}; {plural(len(items), 'dist')}")


def _index_preview(store: Store, req, interpreter, common: list[str], verbose: int) -> dict | None:
    """The index plan :func:`_make_bubble` would make for ``req`` (None: pip would resolve it),
    made in a temporary directory outside the store: a wheel read for its METADATA is
    removed with it, and the store is not written (it may be read-only)."""
    if req.url is not None or (_names_source(common) and "--require-hashes" not in common):
        return None  # _make_bubble asks pip: a URL, or a source on the command line to compare with
    import tempfile

    from ..writers import indexplan

    class Work:  # what the plan needs of a DownloadDir: where its downloads go
        def __init__(self, path: str) -> None:
            self.path = path

    with tempfile.TemporaryDirectory(prefix="pip-omni-preview-") as tmp:
        return indexplan.plan(store, req, interpreter, common, Work(tmp), verbose)


# Options that name where pip takes files from: with one of them on the command line, pip is
# asked even for a bubble the store could make, and what it plans is compared with what is stored.
_SOURCES = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links"}


def _names_source(common: list[str]) -> bool:
    return any(t.split("=", 1)[0] in _SOURCES or (t[:2] in ("-i", "-f") and len(t) > 2) for t in common
               if t.startswith("-"))


def _make_bubble(store: Store, interpreter, job: _Job, common: list[str], verbose: int, exact: bool,
                 shared=None, main_now: dict | None = None, now: bool = True, defer: bool = False) -> Row:
    """Make (or find) the bubble of ``job``; ``now=False`` (``--no-compile``) leaves its ``.pyc`` for later."""
    req = bubbles.parse_requirement(job.text)
    name = normalize(req.name)
    present = _present(store, interpreter, req, job, exact)
    # A source on the command line: what the store would use must be the file pip plans from it.
    checked = _names_source(common) and req.url is None and "--require-hashes" not in common
    if present is not None and not checked:
        return present
    stored_version = None
    if req.url is None and exact and present is None:
        if not checked:
            manifest = bubbles.bubble_from_store(store, req, interpreter, main_now, compile=now)
            if manifest is not None:
                return _from_store_row(name, manifest, job)
            pulled = _pull(shared, store, req, interpreter, main_now)  # commands/remote.py
            if pulled is not None:
                return Row(name, pulled["version"], "bubble", "pulled", f"{job.reason}; from {shared.url}")
        else:
            stored_version = _stored_version(store, req, interpreter)
    from omnipkg_hook.store import DownloadDir

    from .. import pip
    from ..writers import fetch

    # Downloads are staged in <store>/tmp (gc and doctor clear what a killed install leaves),
    # held by a flock that pip inherits, so a concurrent gc never removes a live download.
    # Opened first: a store this user cannot write fails here, in one line, before pip runs.
    with DownloadDir(store, "wheels-") as work:
        _preload_ingest()
        report = job.report if "--require-hashes" not in common else None
        if checked and report is None:
            version = present.version if present is not None else stored_version
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            text = f"{name}{extras}=={version}" if version else job.text
            try:
                report = pip.dry_run_report(interpreter.executable, [text, "--ignore-installed", *common],
                                            what=f"resolve {text}", verbose=verbose, hold=work)
            except PipError:
                if version is None:
                    raise
                # The source offers no file for it, so no other build either: the stored one is used.
                if present is not None:
                    return present
                manifest = bubbles.bubble_from_store(store, req, interpreter, main_now, compile=now)
                if manifest is None:
                    raise
                return _from_store_row(name, manifest, job)
        planned = fetch.planned_from_report(report) if report is not None else None
        if report is None and req.url is None:  # no plan from pip: the index's, where it is pip's own
            from ..writers import indexplan

            planned = indexplan.plan(store, req, interpreter, common, work, verbose)
        the_plan = None
        if planned is not None:
            def main_dirs():
                from omnipkg_hook.store import main_versions

                return main_versions(environment.sys_path(interpreter), exclude=store.root)

            the_plan = _leased(store, lambda: fetch.plan_bubble(
                store, req, planned, interpreter, main_dirs if job.report is not None else None))
        if the_plan is not None and not the_plan.fetch and present is not None and _dist_paths(
                store, name, present.version, interpreter) == the_plan.paths(store):
            return present
        wheels = None
        if the_plan is not None:
            try:
                wheels, origins = fetch.fetch(interpreter, the_plan, work, common, verbose)
            except PipError:
                if job.report is None:
                    raise
                # main's copy of a dependency the index does not have at that version (an
                # editable or local build in main): pip resolves the bubble itself, as before.
                for partial in os.listdir(work.path):
                    if partial.endswith(".whl"):
                        os.unlink(os.path.join(work.path, partial))
                the_plan = None
        if wheels is None:
            pip.run_pip(interpreter.executable, ["wheel", "--wheel-dir", work.path, job.text, *common],
                        what=f"fetch {job.text} and its dependencies", verbose=verbose, hold=work)
            import glob

            wheels, origins = sorted(glob.glob(os.path.join(work.path, "*.whl"))), {}
        with progress.step(f"store {plural(len(wheels), 'wheel')}"):
            manifest = bubbles.bubble_from_wheels(store, wheels, req, interpreter, main_now, origins=origins,
                                                  stored=the_plan.stored if the_plan is not None else None,
                                                  compile=now, defer=defer)
    if not wheels:
        return _from_store_row(name, manifest, job)
    reason = f"{job.reason}; {plural(len(manifest['dists']), 'dist')}"
    if the_plan is not None and the_plan.stored:
        reason += f", {len(the_plan.stored)} already stored"
    return Row(name, manifest["version"], "bubble", "created", reason)


_LEASED: list[str] = []  # stored dists the plans of this process use: leased until their bubbles are written
_LEASING = [0, _thread.allocate_lock()]  # runs of this process making bubbles (several at once: one per interpreter)


def _leased(store: Store, make_plan):
    """``make_plan()``'s plan, with a lease (:mod:`omnipkg_hook.leases`) held on every stored
    dist it uses, so a ``gc`` running meanwhile keeps them (no bubble names them yet; the
    leases this takes are dropped when :func:`run`'s bubbles are written, or, when runs go on
    at once in this process, the last one's). A dist that went
    away before its lease is not stored any more: the plan is made again, and fetches it."""
    from omnipkg_hook import leases

    for _ in range(3):
        the_plan = make_plan()
        if the_plan is None or not the_plan.stored:
            return the_plan
        held = set(leases.held())  # a pin of this process may hold some: those stay held
        paths = [store.abspath(p) for p in the_plan.paths(store).values()]
        missing = leases.hold(store, paths)
        _LEASED.extend(p for p in paths if p not in held and p not in missing)
        if not missing:
            return the_plan
    return the_plan  # gone again each time: ingest fails on it and says so


def _lease_scope(step: int) -> None:
    """A run starts (+1) or ends (-1) making bubbles; the last to end releases the leases."""
    with _LEASING[1]:
        _LEASING[0] += step
        if _LEASING[0] or not _LEASED:
            return
        from omnipkg_hook import leases

        leases.release(_LEASED)
        _LEASED.clear()


def _preload_ingest() -> None:
    """Import the wheel ingester (pypa/installer, packaging: 0.1-0.2 s measured) in a thread
    while pip fetches, on the core pip leaves idle."""
    import threading

    def load() -> None:
        try:
            from ..writers import ingest  # noqa: F401
        except BaseException:  # imported again where it is used, which reports it
            pass

    threading.Thread(target=load, name="pip-omni-preload", daemon=True).start()


def _from_store_row(name: str, manifest: dict, job: _Job) -> Row:
    return Row(name, manifest["version"], "bubble", "created",
               f"{job.reason}; {plural(len(manifest['dists']), 'dist')}, all already stored")


def _stored_version(store: Store, req, interpreter) -> str | None:
    """The root version :func:`bubbles.bubble_from_store` would pick (nothing written)."""
    try:
        picked = bubbles.resolve_closure(req, bubbles.StoreIndex(store), interpreter)
    except bubbles.ClosureError:
        return None
    return picked[normalize(req.name)].manifest["version"]


def _dist_paths(store: Store, name: str, version: str, interpreter) -> dict:
    """``{name: dist path}`` of an existing bubble ({} if unreadable: it is made again)."""
    try:
        return {n: e["path"] for n, e in store.load_bubble(name, version, interpreter.key)["dists"].items()}
    except (OSError, ValueError, KeyError, TypeError, OmnipkgError):
        return {}


def _install_main(interpreter, the_plan, main_now, editables, common, main_only, args) -> None:
    from .. import pip

    reqs = [root.requirement() for root in the_plan.to_main if not root.editable]
    reqs += [t for e in editables for t in ("-e", e)]
    guard = []
    work = None
    if args.strategy == "stable":
        import shutil
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


def _print(rows: list[Row], args, out=None) -> None:
    out = out or sys.stdout
    if args.json:
        import json

        out.write(json.dumps([r.asdict() for r in rows], indent=1) + "\n")
        return
    if args.quiet or not rows:
        return
    header = ("Package", "Version", "Where", "What", "Why")
    table = [header] + [(r.name, r.version, r.where, r.action, r.reason) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    # one write: the tables of runs going on at once in one process do not interleave
    out.write("".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] + "\n"
                      for row in table))
    out.flush()
