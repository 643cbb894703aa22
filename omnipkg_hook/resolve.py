"""Pins -> a plan: which copy of each distribution serves this process, and why.

Pure logic over two reads: the store's bubble manifests for this interpreter and the
main environment's distributions (directory names on ``sys.path``). No import
machinery is touched here; :mod:`omnipkg_hook.pins` applies a :class:`Plan`.

The rules (DESIGN.md, "An import under a pin"):

1. A pin the main environment already satisfies routes nothing.
2. Otherwise the best stored bubble version satisfying the pin is used; none stored ->
   :class:`BubbleNotFoundError` naming the ``pip-omni install`` command to run.
3. Every other distribution keeps the main environment's copy while that copy satisfies
   every requirement on it from the distributions served from the store (and any pin on
   it); otherwise the first copy from the pinned bubbles that satisfies them all is used.
   This is repeated until nothing changes.
4. No copy satisfies them all -> :class:`PinConflictError` naming two chains that cannot
   both hold, e.g. ``rich==13.4.2 -> pygments>=2.13`` vs ``pygments==2.10 (pinned)``.
"""

from __future__ import annotations

import os
import sys

from ._pep440 import InvalidVersion, SpecifierSet, parse_version
from .errors import BubbleNotFoundError, PinConflictError, StoreCorruptError
from .store import Store, interpreter_key, main_versions

__all__ = ["Copy", "Pin", "Plan", "resolve", "main_environment"]

MAIN = "main"
STORE = "store"


class Pin:
    """One active pin and what it resolved to: ``source`` is ``"main"`` or ``"store"``."""

    __slots__ = ("req", "text", "key", "source", "version", "bubble", "bubble_path", "bin")

    def __init__(self, req, source: str, version: str, bubble=None, bubble_path=None, bin=None):
        self.req = req
        self.text = str(req)
        self.key = req.key
        self.source = source
        self.version = version
        self.bubble = bubble
        self.bubble_path = bubble_path
        self.bin = bin

    def __repr__(self) -> str:
        return f"<Pin {self.text!r} -> {self.source} {self.version}>"


class Copy:
    """One available copy of a distribution: the main environment's, or a stored dist."""

    __slots__ = ("name", "version", "where", "path", "relpath", "top_level", "namespaces",
                 "requires", "pin", "chain", "_parsed")  # fmt: skip

    def __init__(self, name, version, where, path, relpath=None, top_level=(), namespaces=(),
                 requires=None, pin=None, chain=None):  # fmt: skip
        self.name = name
        self.version = version
        self.where = where
        self.path = path
        self.relpath = relpath
        self.top_level = list(top_level)
        self.namespaces = list(namespaces)
        self.requires = requires or {}
        self.pin = pin
        self.chain = chain
        self._parsed = None

    def satisfies(self, spec: SpecifierSet) -> bool:
        if self._parsed is None:
            try:
                self._parsed = parse_version(self.version)
            except InvalidVersion:
                self._parsed = False
        if self._parsed is False:
            return False
        return spec.contains(self._parsed)

    def label(self) -> str:
        return f"{self.version} ({'main environment' if self.where == MAIN else 'store'})"

    def __repr__(self) -> str:
        return f"<Copy {self.name} {self.version} {self.where} {self.path!r}>"


class Plan:
    """What a set of pins resolved to.

    ``chosen`` maps every distribution the pins concern to the copy that serves it;
    ``reasons`` says why in one line each; ``routes``/``dists`` are the finder's tables.
    """

    def __init__(self, store: Store, key: str, pins: list[Pin]) -> None:
        self.store = store
        self.key = key
        self.pins = pins
        self.chosen: dict[str, Copy] = {}
        self.reasons: dict[str, str] = {}
        self.routes: dict[str, list[str]] = {}
        self.dists: dict[str, str] = {}  # filled in when the dists are checked (pins.py)
        self.entries: list[str] = []  # sys.path entries holding main copies of routed names (pins.py)
        self.broken: list[dict] = []  # main dists whose requirements the plan leaves unmet (dependents.py)
        self.warning: str | None = None  # the one line about them, printed at start-up and by pin()

    def routed(self) -> list[Copy]:
        """The copies served from the store, in a stable order."""
        return [c for _, c in sorted(self.chosen.items()) if c.where == STORE]

    def env_value(self) -> str:
        return ",".join(p.text for p in self.pins)

    def report(self) -> list[dict]:
        """One record per distribution concerned, for ``explain()`` and ``pip-omni why``."""
        rows = []
        for name, copy in sorted(self.chosen.items()):
            names = [t for t, dirs in self.routes.items() if copy.path in dirs] if copy.where == STORE else []
            rows.append({
                "distribution": name,
                "version": copy.version,
                "source": copy.where,
                "path": copy.path,
                "import_names": sorted(names),
                "reason": self.reasons.get(name, ""),
            })  # fmt: skip
        return rows


def main_environment(store: Store, cache: dict | None = None) -> dict[str, tuple[str, str]]:
    """``main_versions`` of ``sys.path`` without the store, cached in ``cache`` per ``sys.path``."""
    key = ("main", tuple(sys.path), store.root)
    if cache is not None:
        found = cache.get(key)
        if found is not None:
            return found
    found = main_versions(exclude=store.root)
    if cache is not None:
        cache[key] = found
    return found


def resolve(requirements, store: Store, main: dict, key: str | None = None) -> Plan:
    """Resolve ``requirements`` (one per distribution, in pin order) into a :class:`Plan`."""
    key = key or interpreter_key()
    pins = [_choose(req, store, key, main) for req in requirements]
    plan = Plan(store, key, pins)
    _choose_copies(plan, main)
    for copy in plan.routed():
        for top in copy.top_level:
            dirs = plan.routes.setdefault(top, [])
            if copy.path not in dirs:
                dirs.append(copy.path)
    return plan


# -- step 1: each pin ------------------------------------------------------------------


def _choose(req, store: Store, key: str, main: dict) -> Pin:
    found = main.get(req.key)
    if found is not None and req.specifier.contains(found[0]):
        return Pin(req, MAIN, found[0])
    stored = store.bubble_versions(req.key, key)
    candidates = sorted(req.specifier.filter(stored), key=_version_key, reverse=True)
    for version in candidates:
        bubble_path = store.bubble_path(req.key, version, key)
        try:
            bubble = store.load_bubble(req.key, version, key)
        except FileNotFoundError:  # removed since the listdir (gc)
            continue
        if req.extras and not set(req.extras) <= set(bubble.get("extras", ())):
            continue
        if req.key not in bubble.get("dists", {}):
            raise StoreCorruptError(
                f"bubble manifest {bubble_path!r} does not list its own root {req.key!r}",
                f"reinstall it: {_install_command(req)}",
            )
        return Pin(req, STORE, version, bubble, bubble_path, store.bubble_bin(req.key, version, key))
    raise _not_found(req, store, key, main, stored, candidates)


def _version_key(version: str):
    try:
        return (1, parse_version(version))
    except InvalidVersion:
        return (0, version)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _install_command(req) -> str:
    """The command that stores ``req`` for this interpreter (``--python`` only when needed)."""
    here = os.path.dirname(sys.executable)
    python = "" if os.path.exists(os.path.join(here, "pip-omni")) else f" --python {_quote(sys.executable)}"
    return f"pip-omni install{python} {_quote(str(req))}"


def _not_found(req, store: Store, key: str, main: dict, stored: list[str], candidates: list[str]):
    have = []
    if main.get(req.key):
        have.append(f"the main environment has {main[req.key][0]}")
    if candidates:  # matched, but without the extras asked for
        have.append(f"stored {', '.join(candidates)} lack the extras [{','.join(sorted(req.extras))}]")
    elif stored:
        have.append(f"stored: {', '.join(sorted(stored, key=_version_key))}")
    others = sorted(_keys_for(store, req.key) - {key})
    if others:
        have.append(f"bubbles exist for {', '.join(others)}")
    detail = f" ({'; '.join(have)})" if have else ""
    return BubbleNotFoundError(
        f"no stored version of {req.key!r} satisfies {str(req)!r} for this interpreter ({key}){detail}",
        f"run: {_install_command(req)}",
        name=req.key,
    )


def _keys_for(store: Store, name: str) -> set[str]:
    return {k for n, _, k, _ in store.iter_bubbles() if n == name}


# -- step 2: each distribution ---------------------------------------------------------


def _bubble_copies(store: Store, pin: Pin) -> dict[str, Copy]:
    dists = pin.bubble["dists"]
    chains = {pin.key: pin.text}
    queue = [pin.key]
    while queue:  # breadth first: the shortest chain from the root names a copy
        parent = queue.pop(0)
        for dep, spec in sorted(dists.get(parent, {}).get("requires", {}).items()):
            if dep not in chains and dep in dists:
                chains[dep] = f"{chains[parent]} -> {dep}{spec}"
                queue.append(dep)
    copies = {}
    stdlib = None
    for name, entry in dists.items():
        top_level = entry.get("top_level", ())
        if top_level:
            if stdlib is None:
                from .stdlib import stdlib_module_names

                stdlib = stdlib_module_names()
            # bubbles.py never lists a standard-library name (it records them as
            # stdlib_not_routed): one here is a forged manifest, and never routed
            top_level = [t for t in top_level if t not in stdlib]
        copies[name] = Copy(
            name,
            entry["version"],
            STORE,
            store.abspath(entry["path"]),
            entry["path"],
            top_level,
            entry.get("namespaces", ()),
            entry.get("requires", {}),
            pin,
            chains.get(name, f"{pin.text} -> {name}"),
        )
    return copies


def _choose_copies(plan: Plan, main: dict) -> None:
    candidates: dict[str, list[Copy]] = {}
    chosen: dict[str, Copy] = {}
    fixed: set[str] = set()
    for pin in plan.pins:
        if pin.source != STORE:
            continue
        for name, copy in _bubble_copies(plan.store, pin).items():
            candidates.setdefault(name, []).append(copy)
            if name == pin.key:
                chosen[name] = copy
                fixed.add(name)
    main_copies = {name: Copy(name, v, MAIN, d) for name, (v, d) in main.items()}
    specs: dict[str, SpecifierSet] = {}

    def spec_of(text: str) -> SpecifierSet:
        s = specs.get(text)
        if s is None:
            s = specs[text] = SpecifierSet(text)
        return s

    for _round in range(1000):
        constraints: dict[str, list[tuple[SpecifierSet, str]]] = {}
        for copy in sorted(chosen.values(), key=lambda c: c.name):
            if copy.where != STORE:
                continue
            for dep, text in copy.requires.items():
                constraints.setdefault(dep, []).append((spec_of(text), f"{copy.chain} -> {dep}{text}"))
        for pin in plan.pins:
            constraints.setdefault(pin.key, []).append((pin.req.specifier, f"{pin.text} (pinned)"))
        changed = False
        for name, cons in constraints.items():
            current = chosen.get(name) or main_copies.get(name)
            if current is not None and all(current.satisfies(s) for s, _ in cons):
                continue
            options = [] if name in fixed else [c for c in (main_copies.get(name),) if c] + candidates.get(name, [])
            pick = next((c for c in options if all(c.satisfies(s) for s, _ in cons)), None)
            if pick is None:
                _deferred(plan, name, main_copies.get(name))
                if not options and name not in fixed and name not in main_copies:
                    raise StoreCorruptError(
                        f"no copy of {name!r} for {cons[0][1]!r}: the bubble does not include it",
                        "the bubble manifest is incomplete; run `pip-omni doctor --repair`",
                    )
                raise _conflict(name, cons, options or [current])
            chosen[name] = pick
            changed = True
        if not changed:
            break
    else:  # pragma: no cover - the chosen set only moves towards satisfying copies
        raise PinConflictError(f"pins do not settle: {plan.env_value()!r}", "pin fewer distributions at once")

    # Everything a pin concerns, with why it is served from where it is.
    for pin in plan.pins:
        if pin.source == MAIN:
            chosen.setdefault(pin.key, main_copies[pin.key])
    for name in list(constraints):
        chosen.setdefault(name, main_copies.get(name))
    plan.chosen = {n: c for n, c in chosen.items() if c is not None}
    for name, copy in plan.chosen.items():
        plan.reasons[name] = _reason(name, copy, constraints.get(name, []), main_copies.get(name), plan)


def _reason(name, copy: Copy, cons, main_copy, plan: Plan) -> str:
    pinned = next((p for p in plan.pins if p.key == name), None)
    needs = "; ".join(text for _, text in cons if not text.endswith("(pinned)"))
    if copy.where == MAIN:
        if pinned is not None:
            return f"pinned {pinned.text}: the main environment's {copy.version} satisfies it, nothing routed"
        return f"the main environment's {copy.version} satisfies {needs}"
    if pinned is not None:
        return f"pinned {pinned.text}: best stored version for {plan.key}"
    if main_copy is None:
        return f"not in the main environment; needed by {needs}"
    failing = [text for spec, text in cons if not main_copy.satisfies(spec)]
    return f"the main environment's {main_copy.version} does not satisfy {'; '.join(failing)}"


def _deferred(plan: Plan, name: str, main_copy) -> None:
    """A bubble ``pip-omni run`` made leans on main's copy of a dist main had at that version
    until the run's background step has stored its own (``omnipkg_pip.writers.deferred``):
    if main has changed before that, say so, and what finishes it."""
    for pin in plan.pins:
        waiting = (pin.bubble or {}).get("deferred") if pin.source == STORE else None
        rec = waiting.get(name) if isinstance(waiting, dict) else None
        if isinstance(rec, dict):
            have = f"the main environment's {main_copy.version}" if main_copy else "the main environment, which lacks it,"
            raise PinConflictError(
                f"{pin.text} needs {name} {rec.get('version')}, which is not stored yet ({have} was serving it "
                "until the run that made the bubble stored its own)",
                "`pip-omni store compile` stores it now",
            )


def _conflict(name: str, cons, options: list[Copy]) -> PinConflictError:
    pair = None
    for i, (a, ta) in enumerate(cons):
        for b, tb in cons[i + 1 :]:
            if not any(c.satisfies(a) and c.satisfies(b) for c in options):
                pair = (ta, tb)
                break
        if pair:
            break
    chains = " vs ".join(pair) if pair else " vs ".join(t for _, t in cons)
    have = ", ".join(c.label() for c in options) or "none"
    return PinConflictError(
        f"pins need incompatible versions of {name!r}: {chains}",
        f"copies at hand: {have}; change a pin so that one version satisfies both, "
        "or run one side in a worker (omnipkg_hook.workers) for true isolation",
    )
