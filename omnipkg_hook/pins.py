"""Pins of this process: ``pin``, ``unpin``, ``pins``, ``explain``, ``using``.

``pin("rich==13.4.2")`` resolves once (:mod:`omnipkg_hook.resolve`), checks the routed
dists (:mod:`omnipkg_hook.repair`), then swaps the finder's route table
(:mod:`omnipkg_hook.finder`) and exports the pins -- ``OMNIPKG_PINS``, ``OMNIPKG_STORE``
and each bubble's ``bin`` directory first on ``PATH`` -- so child processes (subprocess,
multiprocessing spawn/forkserver, pytest-xdist, workers) start with the same pins.
Every check happens before anything changes: a call that raises leaves the process
as it was.

In-process switching with :class:`using` is convenient and honest about its limits:

- objects made inside the block are instances of the classes of the version that was
  imported there; they fail ``isinstance`` checks against the outer version's classes,
  and the other way round;
- a module that imported a pinned module keeps the reference it took; a function that
  imports lazily gets whichever version is in ``sys.modules`` when it runs;
- ``sys.modules`` is process-wide: another thread importing during the block sees the
  block's versions. It is not thread isolation.

For true isolation -- two versions at once, crash containment, another interpreter --
use a worker (``omnipkg_hook.workers``).
"""

from __future__ import annotations

import _thread
import os
import sys

from . import finder as _finder
from ._requirements import parse_pins
from .errors import AlreadyImportedError, InvalidPinError, OmnipkgError
from .repair import check_dist, repair_dist
from .resolve import STORE, Plan, _install_command, main_environment, resolve
from .store import Store, normalize

__all__ = ["pin", "unpin", "pins", "explain", "plan", "plan_for", "format_plan", "using", "omnipkgLoader"]

PINS_VAR = "OMNIPKG_PINS"
STORE_VAR = "OMNIPKG_STORE"
STRICT_VAR = "OMNIPKG_STRICT"

_lock = _thread.RLock()


class _State:
    """What this process has pinned; replaced field by field, only under ``_lock``."""

    def __init__(self) -> None:
        self.requirements: list = []  # one Requirement per distribution, in pin order
        self.plan: Plan | None = None
        self.path_added: list[str] = []  # bin dirs this module put on PATH
        self.env_value: str | None = None  # the OMNIPKG_PINS value last applied or written
        self.touched: set[str] = set()  # top-level names whose route changed (for using())


_state = _State()


# -- public API ---------------------------------------------------------------------------


def pin(*requirements: str, replace: bool = False) -> list[str]:
    """Import the given versions from the store from now on, in this process and its children.

    ``pin("rich==13.4.2", "click>=7,<8")``. A distribution already pinned is re-pinned.
    A pin the main environment satisfies routes nothing. Raises
    :class:`BubbleNotFoundError`, :class:`PinConflictError`, or
    :class:`AlreadyImportedError` when a name it would route is imported already, unless
    ``replace=True``, which removes those modules from ``sys.modules`` so the next
    import loads the pinned version (objects made from the old modules keep the old
    classes). Returns the active pins, as :func:`pins` does.
    """
    new = _parse_args(requirements, "pin")
    with _lock:
        merged = {r.key: r for r in _state.requirements}
        merged.update((r.key, r) for r in new)
        _apply(list(merged.values()), replace=replace, full=True)
        return pins()


def unpin(*names: str) -> list[str]:
    """Drop the pins on ``names`` (all pins when none is given); return the pins left.

    Modules of those distributions imported from the store are removed from
    ``sys.modules``, so the next import loads the main environment's copy. Unpinning a
    name that is not pinned does nothing.
    """
    keys = {normalize(n) for n in names}
    with _lock:
        left = [r for r in _state.requirements if names and r.key not in keys]
        if len(left) != len(_state.requirements):
            _apply(left, replace=True, full=False)
        return pins()


def pins() -> list[str]:
    """The active pins as requirement strings, in the order they were made (``["rich==13.4.2"]``)."""
    return [str(r) for r in _state.requirements]


def plan() -> Plan | None:
    """The active :class:`~omnipkg_hook.resolve.Plan` (None with no pins): for tools and tests."""
    return _state.plan


def plan_for(*requirements: str) -> Plan | None:
    """What pinning exactly ``requirements`` would do in this interpreter; changes nothing."""
    reqs = _parse_args(requirements, "plan_for") if requirements else []
    return _resolve(reqs, full=False, repair=False) if reqs else None


def explain(*requirements: str) -> str:
    """Which directory serves each routed import name, and why, as text.

    With ``requirements``, explains what pinning them (on top of the active pins) would
    do, without changing anything.
    """
    with _lock:
        if requirements:
            merged = {r.key: r for r in _state.requirements}
            merged.update((r.key, r) for r in _parse_args(requirements, "explain"))
            the_plan = _resolve(list(merged.values()), full=False, repair=False)
        else:
            the_plan = _state.plan
    return format_plan(the_plan)


def format_plan(the_plan: Plan | None) -> str:
    if the_plan is None or not the_plan.pins:
        return "no pins: every import comes from the main environment"
    lines = [f"pins: {the_plan.env_value()}  (store {the_plan.store.root}, interpreter {the_plan.key})"]
    for row in the_plan.report():
        where = "store" if row["source"] == STORE else "main"
        names = f" imports {', '.join(row['import_names'])} from" if row["import_names"] else " from"
        lines.append(f"  {row['distribution']} {row['version']} [{where}]{names} {row['path']}")
        lines.append(f"      {row['reason']}")
    return "\n".join(lines)


class using:
    """``with using("rich==13.5.3"):`` -- these pins (on top of the active ones) inside the block.

    On entry the modules of every import name whose route changes are taken out of
    ``sys.modules`` (so ``import rich`` inside loads the pinned version); on exit, also
    when the block raises, the modules, routes, pins, ``OMNIPKG_PINS``, ``OMNIPKG_STORE``
    and ``PATH`` are put back exactly as they were. Blocks nest. No file is touched.

    See the module docstring for what in-process switching cannot do; workers give
    true isolation.
    """

    def __init__(self, *requirements: str) -> None:
        self._requirements = _parse_args(requirements, "using")
        self._saved: list[tuple] = []

    def __enter__(self) -> using:
        with _lock:
            saved = (
                list(_state.requirements),
                _state.plan,
                _finder.FINDER.routes,
                _finder.FINDER.dists,
                _finder.installed(),
                dict(sys.modules),
                {k: os.environ.get(k) for k in (PINS_VAR, STORE_VAR, "PATH")},
                list(_state.path_added),
                _state.env_value,
                _finder.FINDER.entries,
                list(sys.meta_path),
                list(sys.path_hooks),
                _state.touched,
            )
            _state.touched = set()
            merged = {r.key: r for r in _state.requirements}
            merged.update((r.key, r) for r in self._requirements)
            try:
                _apply(list(merged.values()), replace=True, full=True)
            except BaseException:
                _state.touched = saved[-1]
                raise
            self._saved.append(saved)
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            (requirements, the_plan, routes, dists, was_installed, modules, env, path_added,
             env_value, entries, meta_path, path_hooks, touched) = self._saved.pop()  # fmt: skip
            names = _state.touched  # every name whose route changed since __enter__
            _drop_hooks_of(names, meta_path, path_hooks)
            for name in names:
                _purge(name)
                prefix = name + "."
                for key, module in modules.items():
                    if key == name or key.startswith(prefix):
                        sys.modules[key] = module
            _finder.FINDER.set_routes(routes, dists, entries)
            if was_installed:
                _finder.install()
            else:
                _finder.uninstall()
            _state.requirements, _state.plan = requirements, the_plan
            _state.path_added, _state.env_value = path_added, env_value
            _state.touched = touched | names
            for key, value in env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _drop_hooks_of(names, meta_path: list, path_hooks: list) -> None:
    """Take out of ``sys.meta_path`` and ``sys.path_hooks`` what the block's modules added.

    A finder or hook that was not there on entry and whose class (or function) comes from
    a module of one of the block's routed ``names`` -- setuptools' ``VendorImporter``,
    ``_distutils_hack``'s shim -- would keep serving the block's version after it; finders
    added by anything else (the user's own code, pytest) stay.
    """
    for table, before in ((sys.meta_path, meta_path), (sys.path_hooks, path_hooks)):
        for item in [x for x in table if not any(x is y for y in before)]:
            owner = item if isinstance(item, type) or not hasattr(item, "find_spec") else type(item)
            module = getattr(owner, "__module__", None) or ""
            if module.partition(".")[0] in names:
                table.remove(item)


def omnipkgLoader(package_spec: str, config=None, quiet: bool = False, force_activation: bool = False):  # noqa: N802
    """omnipkg's loader, for code migrating from omnipkg: the same as ``using(package_spec)``.

    ``config``, ``quiet`` and ``force_activation`` are accepted and have no effect.
    """
    return using(package_spec)


# -- start-up -------------------------------------------------------------------------------


def from_environment(*, exit_on_error: bool = True, strict: bool | None = None, cache: bool = False) -> None:
    """Make the active pins those of ``OMNIPKG_PINS`` (what the ``.pth`` line runs).

    Idempotent: a value already applied (or written by ``pin()``) is not applied again.
    ``cache=True`` (start-up) records the decision in the start-up cache (:mod:`omnipkg_hook.startup`).
    A value that does not parse prints one line on stderr and applies nothing. A pin that
    cannot be satisfied prints one line too -- or, with ``OMNIPKG_STRICT=1``, is fatal:
    the process exits with status 1 (``exit_on_error=False`` raises instead).
    """
    value = os.environ.get(PINS_VAR, "")
    if strict is None:
        strict = os.environ.get(STRICT_VAR, "").strip().lower() in ("1", "true", "yes", "on")
    with _lock:
        if value == _state.env_value:
            return
        try:
            requirements = parse_pins(value, source=PINS_VAR)
            _apply(requirements, replace=True, full=False)
        except OmnipkgError as e:
            _state.env_value = value  # reported once, not again on the .pth's second run
            kind = "error" if strict else "warning"
            after = "" if strict else f"; starting without pins (set {STRICT_VAR}=1 to make this fatal)"
            if isinstance(e, InvalidPinError):
                what = e.message if e.message.startswith(PINS_VAR) else f"{PINS_VAR}={value!r}: {e.message}"
                line = f"pip-omni: {kind}: ignoring {what}{after}"
            else:
                line = f"pip-omni: {kind}: {PINS_VAR}={value!r} cannot be applied: {e.message}{after}"
            if e.hint:
                line += f" (hint: {e.hint})"
            if strict:
                if not exit_on_error:
                    raise
                print(line, file=sys.stderr)
                sys.stderr.flush()
                sys.stdout.flush()
                os._exit(1)  # SystemExit from a .pth line would be a fatal error in site
            print(line, file=sys.stderr)
            return
        if cache and _state.plan is not None:
            from .startcache import save

            save(value, _state.plan)
        _state.env_value = os.environ.get(PINS_VAR, "")  # the canonical form _export wrote


# -- machinery ----------------------------------------------------------------------------


def _parse_args(requirements, what: str) -> list:
    found: dict[str, object] = {}
    for text in requirements:
        if not isinstance(text, str):
            raise InvalidPinError(f"{what}() takes requirement strings, not {text!r}", "e.g. 'rich==13.4.2'")
        for req in parse_pins(text, source=f"{what}({text!r})"):
            if req.key in found:
                raise InvalidPinError(
                    f"{what}(): {req.key!r} is pinned twice: {str(found[req.key])!r} and {str(req)!r}",
                    "keep one pin per distribution",
                )
            found[req.key] = req
    if not found:
        raise InvalidPinError(f"{what}() needs at least one requirement", "e.g. 'rich==13.4.2'")
    return list(found.values())


_MEMO = "resolved"  # FINDER.cache key of _resolve's remembered plans (invalidate_caches() empties it)
_MEMO_MAX = 64


def _resolve(requirements: list, *, full: bool, repair: bool = True, cached: bool = False) -> Plan:
    """Resolve and check ``requirements`` into a :class:`Plan` with its routes.

    ``cached``: a plan resolved for the same requirements, store, interpreter, working directory
    and ``sys.path`` is returned again while the start-up cache's checks hold for it
    (:func:`omnipkg_hook.startcache.stamps`: a bubble added or removed, a manifest rewritten, a
    routed dist gone, anything installed into ``sys.path``'s directories makes it resolve again).
    That is what makes entering ``using()`` a second time cheap.
    """
    store = Store()
    if cached:
        try:
            key = (full, repair, _finder.cache_key(",".join(str(r) for r in requirements), store.root))
        except OSError:  # the working directory was removed: nothing to key on, resolve
            cached = False
    if cached:
        memo = _finder.FINDER.cache.setdefault(_MEMO, {})
        hit = memo.get(key)
        if hit is not None and _finder.fresh(*hit[1]):
            return hit[0]
    the_plan = _resolve_now(requirements, store, full=full, repair=repair)
    if cached:
        from .startcache import stamps

        checks = stamps(the_plan, code=False)  # the code cannot change under a running process
        if checks is not None:
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = (the_plan, checks)
    return the_plan


def _forget_resolved() -> None:
    """Empty :func:`_resolve`'s remembered plans (for benchmarks and tests; ``importlib.invalidate_caches()`` does too)."""
    _finder.FINDER.cache.pop(_MEMO, None)


def _resolve_now(requirements: list, store: Store, *, full: bool, repair: bool) -> Plan:
    main = main_environment(store, _finder.FINDER.cache)
    the_plan = resolve(requirements, store, main)
    routes: dict[str, list[str]] = {}
    checked = _finder.FINDER.cache.setdefault("checked", {})  # dist dir -> .dist-info, fully checked
    for copy in the_plan.routed():
        label = f"{copy.name} {copy.version}"
        dist_info = checked.get(copy.path)
        if dist_info is not None:  # checked fully once in this process (until invalidate_caches())
            problem = None if os.path.isdir(copy.path) else "its directory is missing"
        else:
            dist_info, problem = check_dist(copy.path, copy.top_level, full)
        if problem is not None and repair:
            entry = copy.pin.bubble["dists"].get(copy.name, {})
            dist_info = repair_dist(
                store, copy.path, copy.top_level, label=label, bubble_entry=entry,
                reinstall=_install_command(copy.pin.req),
            )  # fmt: skip
            problem = None
        if full and problem is None and dist_info is not None:
            checked[copy.path] = dist_info
        if dist_info is not None:
            the_plan.dists[copy.name] = os.path.join(copy.path, dist_info)
        for top in copy.top_level:
            dirs = routes.setdefault(top, [])
            if copy.path not in dirs:
                dirs.append(copy.path)
    the_plan.routes = routes
    the_plan.entries = _entries_holding(routes)
    if any(copy.name in main for copy in the_plan.routed()):
        from . import dependents

        the_plan.broken = dependents.broken_by(the_plan, dependents.main_requirements(main, _finder.FINDER.cache))
        the_plan.warning = dependents.warning(the_plan.broken)
    return the_plan


def _entries_holding(names) -> list[str]:
    """The ``sys.path`` entries holding a module or package named like one of ``names``:
    the entries whose finders must answer those names from the store (finder.RoutingFileFinder)."""
    if not names:
        return []
    found = []
    for entry in sys.path:
        if not isinstance(entry, str) or entry in found:
            continue
        try:
            listing = os.listdir(entry or ".")
        except OSError:  # not a directory (a zip file, gone): nothing a FileFinder serves
            continue
        for item in listing:
            top = item.partition(".")[0]
            if top in names and (top == item or item.endswith((".py", ".pyc", ".so", ".pyd"))):
                found.append(entry)
                break
    return found


def _module_paths(module) -> list[str]:
    paths = []
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
    if isinstance(origin, str):
        paths.append(origin)
    try:
        paths.extend(p for p in getattr(module, "__path__", None) or () if isinstance(p, str))
    except Exception:  # a broken __path__ object tells us nothing
        pass
    return paths


def _inside(paths: list[str], dirs) -> bool:
    return any(p == d or p.startswith(d + os.sep) for p in paths for d in dirs)


def _conflicts(old: dict, new: dict, changed: set[str]) -> list[tuple[str, str, list[str] | None]]:
    """Changed names imported from somewhere their new route would not serve them."""
    found = []
    for name in sorted(changed):
        module = sys.modules.get(name)
        if module is None:
            continue
        paths = _module_paths(module)
        target = new.get(name)
        if target is not None:
            if not (paths and _inside(paths[:1], target)):
                found.append((name, paths[0] if paths else "a built-in or synthetic module", target))
        elif _inside(paths, old.get(name, ())):
            found.append((name, paths[0], None))
    return found


def _purge(name: str) -> None:
    prefix = name + "."
    for key in [k for k in sys.modules if k == name or k.startswith(prefix)]:
        del sys.modules[key]


def _startup_imports(names) -> tuple[dict[str, str], set[str]]:
    """Which of the top-level ``names`` an executable line of a ``.pth`` file imported at
    start-up (``{name: .pth path}``: ``distutils-precedence.pth`` imports
    ``_distutils_hack``, a ``*-nspkg.pth`` builds ``sys.modules["zope"]``), and which of
    those a pin may replace: the ones none of whose imported submodules came from
    anywhere else (``zope`` alone, not once ``zope.interface`` was imported). The site
    machinery made them; no user code asked for them."""
    import re

    texts: dict[str, str] = {}  # .pth path -> its executable lines
    for entry in dict.fromkeys(sys.path):
        try:
            pth_files = sorted(f for f in os.listdir(entry or ".") if f.endswith(".pth"))
        except OSError:
            continue
        for name in pth_files:
            path = os.path.join(entry or ".", name)
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts[path] = "".join(ln for ln in f if ln.startswith(("import ", "import\t")))
            except OSError:
                continue
    found: dict[str, str] = {}
    for name in names:
        word = re.compile(r"(?<![\w.])" + re.escape(name) + r"(?![\w])")
        found.update((name, p) for p, text in texts.items() if name not in found and word.search(text))
    replaceable = set()
    for name in found:
        subs = [k for k in sys.modules if k.startswith(name + ".")]
        if all(re.search(r"(?<![\w.])" + re.escape(k) + r"(?![\w.])", texts[found[name]]) for k in subs):
            replaceable.add(name)
    return found, replaceable


def _already_imported(conflicts, the_plan: Plan | None, started: dict | None = None) -> AlreadyImportedError:
    name, where, target = conflicts[0]
    if target is None:
        why = "without that pin it would come from the main environment"
    else:
        copy = next((c for c in the_plan.routed() if name in c.top_level), None)
        chain = copy.chain if copy is not None else the_plan.env_value()
        why = f"{chain} routes it to {target[0]!r}"
    others = f" (also {', '.join(repr(c[0]) for c in conflicts[1:])})" if conflicts[1:] else ""
    at_startup = [f"{n!r} was imported at start-up by {p!r}" for n, p in sorted((started or {}).items())]
    hint = ("pin before importing it, or pass replace=True to drop the imported modules "
            "(objects made from them keep the old classes), or use omnipkg_hook.using()")
    if at_startup:
        hint = (f"{'; '.join(at_startup)}: set OMNIPKG_PINS before Python starts so the pin applies "
                f"first, or {hint[len('pin before importing it, or '):]}")
    return AlreadyImportedError(f"{name!r} is already imported from {where!r}; {why}{others}", hint)


def _apply(requirements: list, *, replace: bool, full: bool) -> None:
    """Resolve ``requirements``, check, then switch the finder and the environment to them.

    Everything that can fail happens before the first change.
    """
    the_plan = _resolve(requirements, full=full, cached=True) if requirements else None
    old = _finder.FINDER.routes
    new = the_plan.routes if the_plan is not None else {}
    changed = {n for n in set(old) | set(new) if old.get(n) != new.get(n)}
    conflicts = _conflicts(old, new, changed)
    if conflicts and not replace:
        started, replaceable = _startup_imports([c[0] for c in conflicts])
        if any(c[0] not in replaceable for c in conflicts):
            raise _already_imported(conflicts, the_plan, started)
    if the_plan is not None:
        _lease(the_plan)
    for name, _, _ in conflicts:
        _purge(name)
    if the_plan is not None and (new or the_plan.dists):
        _finder.FINDER.set_routes(new, the_plan.dists, the_plan.entries)
        _finder.install()
    else:
        _finder.FINDER.set_routes({}, {})
    before = _state.plan.warning if _state.plan is not None else None
    _state.requirements = list(requirements)
    _state.plan = the_plan
    _state.touched |= changed
    _export(the_plan)
    if the_plan is not None and the_plan.warning and the_plan.warning != before:
        from .dependents import quiet

        if not quiet():
            print(the_plan.warning, file=sys.stderr)


def _lease(the_plan: Plan) -> None:
    """Hold a lease on every routed dist for the life of the process, so ``gc`` keeps it."""
    from . import leases

    missing = leases.hold(None, [c.path for c in the_plan.routed()])
    if missing:
        from .errors import StoreCorruptError

        raise StoreCorruptError(
            f"{missing[0]!r} was removed from the store while it was being pinned",
            "something (gc?) changed the store at the same time; pin again",
        )


def _export(the_plan: Plan | None) -> None:
    """``OMNIPKG_PINS``, ``OMNIPKG_STORE`` and ``PATH`` for child processes."""
    environ = os.environ
    path = environ.get("PATH")
    parts = path.split(os.pathsep) if path else []
    for added in _state.path_added:
        if added in parts:
            parts.remove(added)
    added = []
    if the_plan is not None and the_plan.pins:
        value = the_plan.env_value()
        environ[PINS_VAR] = value
        environ[STORE_VAR] = the_plan.store.root
        for p in the_plan.pins:
            if p.source == STORE and p.bin and os.path.isdir(p.bin) and p.bin not in added:
                added.append(p.bin)
    else:
        value = ""
        environ.pop(PINS_VAR, None)
    if added or _state.path_added:
        environ["PATH"] = os.pathsep.join(added + [p for p in parts if p not in added])
    _state.path_added = added
    _state.env_value = value


def _adopt_startup_cache() -> None:
    """Take over pins applied at start-up from the cache (which did not import this module)."""
    from . import finder as _startcache  # the start-up cache's reader

    value = _startcache.applied
    if value is None or _state.env_value is not None:
        return
    from . import leases

    for path, fd in _startcache.leased.items():  # taken at start-up without importing leases
        leases._held.setdefault(path, fd)
    _state.env_value = value
    _state.path_added = list(_startcache.path_added)
    try:
        _state.requirements = parse_pins(value, source=PINS_VAR)
        _state.plan = _resolve(_state.requirements, full=False, repair=False)
    except OmnipkgError:  # the store changed since start-up; the routes in force stay as they are
        _state.plan = None


_adopt_startup_cache()


class _PinsModule(type(sys)):
    """This module, callable: ``omnipkg_hook.pins()`` is :func:`pins` (the package exports
    both the submodule and the function under one name)."""

    def __call__(self) -> list[str]:
        return pins()


sys.modules[__name__].__class__ = _PinsModule
