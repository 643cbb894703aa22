"""Bubbles: a root requirement and its whole dependency closure, for one interpreter.

A bubble manifest (``bubbles/<name>/<version>/<interpreter-key>.json``) lists the
dists of the closure with each one's requirements already evaluated for that
interpreter (markers, extras), so the hook never needs ``packaging``::

    {"format": 1, "root": "rich", "version": "13.4.2", "requirement": "rich==13.4.2",
     "interpreter": {"key": ..., "version": ..., "executable": ...}, "created": ...,
     "dists": {"rich": {"version": "13.4.2", "path": "dists/rich/13.4.2/py3-none-any",
                        "top_level": ["rich"], "namespaces": [],
                        "requires": {"markdown-it-py": ">=2.2.0", ...}}, ...},
     "scripts": {"name": "module:attr"}}

Two ways to make one: from wheels pip fetched (:func:`bubble_from_wheels`), or
from dists already in the store, with no pip and no network
(:func:`bubble_from_store`).

Requirements, specifiers and markers are the hook's standard-library code
(``omnipkg_hook._requirements``, ``._pep440``, ``._markers``, each checked against
``packaging`` in the tests): a bubble made from stored dists imports no ``packaging``,
whose import alone costs more than the work.
"""

from __future__ import annotations

import os
import time

from omnipkg_hook._markers import Marker
from omnipkg_hook._pep440 import InvalidVersion, SpecifierSet, Version
from omnipkg_hook._requirements import Requirement
from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.stdlib import stdlib_module_names
from omnipkg_hook.store import (
    DIST_MANIFEST,
    FORMAT,
    Store,
    WriteLock,
    normalize,
    put_object,
    read_manifest,
    write_json_atomic,
)

from ..pythons import interp
from . import bytecode

__all__ = [
    "parse_requirement",
    "resolve_closure",
    "bubble_from_wheels",
    "bubble_from_store",
    "write_bubble",
    "ClosureError",
]


class ClosureError(OmnipkgError, LookupError):
    """The dists at hand do not make a consistent closure for the requirement."""


def parse_requirement(text) -> Requirement:
    """A PEP 508 requirement; :class:`InvalidPinError` quoting ``text`` when it is not one."""
    return text if isinstance(text, Requirement) else Requirement(str(text))


class _Picked:
    __slots__ = ("manifest", "extras", "requires")

    def __init__(self, manifest: dict, extras: set, requires: dict) -> None:
        self.manifest, self.extras, self.requires = manifest, extras, requires


_MARKERS: dict[str, Marker] = {}


def _applies(req: Requirement, env: dict, extras: set) -> bool:
    if req.marker is None:
        return True
    marker = _MARKERS.get(req.marker)
    if marker is None:
        marker = _MARKERS[req.marker] = Marker(req.marker)
    return any(marker.evaluate({**env, "extra": e}) for e in (extras or {""}) | {""})


def _version(manifest: dict) -> Version:
    return _version_key(manifest["version"])


def _version_key(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def _pinned(spec: SpecifierSet) -> bool:
    """pip's test for a specifier that may pick a yanked file (PEP 592): ``===``, or ``==`` without ``.*``."""
    return any(s.operator == "===" or (s.operator == "==" and not s.version.endswith(".*")) for s in spec)


def resolve_closure(root: Requirement, available, interpreter, *, prereleases: bool | None = None,
                    requires=None) -> dict[str, _Picked]:
    """Walk ``root``'s requirements through ``available(name) -> [dist manifest]``.

    Picks, per name, the best dist that satisfies every requirement met so far
    (highest version; among equal versions the best wheel tag). Pre-releases count only
    where a specifier names one, as in pip, unless ``prereleases=True`` (dists pip
    itself chose, e.g. under ``--pre``). A dist marked ``"yanked"`` (an index's file,
    :mod:`.indexplan`) is used only as pip uses one: the specifier pins it and every
    candidate is yanked. ``requires(manifest)``: its ``Requires-Dist`` lines, read only for
    the dist picked (default: ``manifest["requires_dist"]``). Raises
    :class:`ClosureError` naming what is missing or inconsistent.
    """
    env = interpreter.markers
    picked: dict[str, _Picked] = {}
    specs: dict[str, list[tuple[SpecifierSet, str]]] = {}
    queue: list[tuple[str, set, SpecifierSet, str]] = [
        (normalize(root.name), set(root.extras), root.specifier, str(root))
    ]
    while queue:
        name, extras, spec, why = queue.pop(0)
        specs.setdefault(name, []).append((spec, why))
        current = picked.get(name)
        if current is not None:
            if not spec.contains(current.manifest["version"], prereleases=True):
                raise ClosureError(
                    f"{why!r} conflicts with {name} {current.manifest['version']} already in the closure"
                )
            if extras <= current.extras:
                continue
            current.extras |= extras
            manifest = current.manifest
        else:
            combined = SpecifierSet()
            for s, _ in specs[name]:
                combined &= s
            usable = [m for m in available(name) if interpreter.supports(m["tag"])]
            # filter(), not contains(): like pip, a pre-release only when no final release fits
            allowed = set(combined.filter({m["version"] for m in usable}, prereleases=prereleases))
            candidates = [m for m in usable if m["version"] in allowed]
            if any(m.get("yanked") for m in candidates) and not (
                    _pinned(combined) and all(m.get("yanked") for m in candidates)):
                candidates = [m for m in candidates if not m.get("yanked")]
            if not candidates:
                raise ClosureError(f"no {name} matching {why!r} is available for Python {interpreter.version}")
            manifest = max(candidates, key=lambda m: (_version(m), -(interpreter.rank(m["tag"]) or 0)))
            current = picked[name] = _Picked(manifest, set(extras), {})
        for line in (requires(manifest) if requires is not None else manifest.get("requires_dist", [])):
            req = Requirement(line)
            if not _applies(req, env, current.extras):
                continue
            dep = normalize(req.name)
            old = current.requires.get(dep)
            text = str(req.specifier)
            current.requires[dep] = ",".join(x for x in (old, text) if x) if old is not None else text
            queue.append((dep, set(req.extras), req.specifier, f"{manifest['name']} -> {req}"))
    return picked


def write_bubble(store: Store, root: Requirement, picked: dict[str, _Picked], interpreter) -> dict:
    """Publish the bubble manifest (the last step of making a bubble)."""
    name = normalize(root.name)
    root_manifest = picked[name].manifest
    dists, deferred = {}, {}
    stdlib = stdlib_module_names(interpreter.version_info)
    for dep, p in sorted(picked.items()):
        m = p.manifest
        if m.get("deferred"):  # main has it at this version: stored after the run (deferred.py)
            deferred[dep] = {"version": m["version"], "tag": m["tag"], "wheel": m["wheel"],
                             "wheel_sha256": m["wheel_sha256"], "requires": dict(sorted(p.requires.items())),
                             **({"origin": m["origin"]} if m.get("origin") else {})}
            continue
        entry = dists[dep] = dist_entry(store, m, p.requires, stdlib, interpreter.cache_tag)
        if entry.get("stdlib_not_routed"):
            import sys

            print(f"pip-omni: {m['name']} {m['version']} provides {', '.join(map(repr, entry['stdlib_not_routed']))}, "
                  f"standard-library module(s) of Python {interpreter.version}: not routed to the bubble "
                  "(the standard library's is used, as in a plain install)", file=sys.stderr)  # fmt: skip
    eps = root_manifest.get("entry_points", {})
    manifest = {
        "format": FORMAT,
        "root": name,
        "version": root_manifest["version"],
        "requirement": str(root),
        "extras": sorted(root.extras),
        "interpreter": {
            "key": interpreter.key,
            "version": interpreter.version,
            "executable": interpreter.executable,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "dists": dists,
        **({"deferred": deferred} if deferred else {}),
        "scripts": {**eps.get("console_scripts", {}), **eps.get("gui_scripts", {})},
    }
    _write_scripts(store, manifest, interpreter)
    # Dists left uncompiled (main had them) go on the pending list before the bubble is seen
    bytecode.note_pending(store, [store.abspath(e["path"]) for e in dists.values() if "pyc_manifest" not in e],
                          interpreter.key)
    if deferred:  # found by the step that stores them (deferred.complete) before the bubble is seen
        from . import deferred as later_store

        later_store.note(store, interpreter.key, name, manifest["version"])
    # By rename, not fsync'd: atomic for every reader and after a kill at any moment, as every
    # write of a bubble is. The fsync was the only one of the whole bubble (objects and dists
    # are never synced), so it made nothing durable across a power cut by itself, and it was
    # most of a bubble's time from stored dists. After a power cut `doctor` names a damaged
    # manifest and `doctor --repair` rebuilds it from the dists.
    write_json_atomic(store, store.bubble_path(name, manifest["version"], interpreter.key), manifest, fsync=False)
    return manifest


def dist_entry(store: Store, m: dict, requires: dict, stdlib, cache_tag: str) -> dict:
    """A bubble manifest's entry for the stored dist ``m`` (its dist manifest)."""
    rel = store.dist_relpath(m["name"], m["version"], m["tag"])
    # A bubble never shadows the standard library: such names are not routed (as in a
    # plain install, where the standard library comes first on sys.path).
    shadowing = sorted(n for n in m["top_level"] if n in stdlib)
    return {
        "version": m["version"],
        "path": rel,
        "top_level": [n for n in m["top_level"] if n not in stdlib],
        "namespaces": [n for n in m["namespaces"] if n not in stdlib],
        **({"stdlib_not_routed": shadowing} if shadowing else {}),
        "requires": dict(sorted(requires.items())),
        # The dist's manifests as objects too: a dist directory deleted whole can be
        # rebuilt from objects alone (omnipkg_hook.repair, doctor --repair).
        **_manifest_objects(store, store.abspath(rel), cache_tag),
    }


def _manifest_objects(store: Store, dist_dir: str, cache_tag: str) -> dict:
    out = {}
    for key, name in (("manifest", DIST_MANIFEST), ("pyc_manifest", bytecode.pyc_manifest_name(cache_tag))):
        try:
            with open(os.path.join(dist_dir, name), "rb") as f:
                out[key] = put_object(store, f.read())
        except FileNotFoundError:
            pass
    return out


def _write_scripts(store: Store, manifest: dict, interpreter) -> None:
    root = manifest["dists"].get(manifest["root"]) or {}
    if not manifest["scripts"] and not (
        root.get("path") and os.path.isdir(os.path.join(store.abspath(root["path"]), "_omnipkg_data", "scripts"))
    ):
        return  # nothing to launch: omnipkg_hook.scripts is not even imported (a warm install's cost)
    try:
        from omnipkg_hook.scripts import write_bubble_scripts
    except ModuleNotFoundError as e:  # the hook's launcher generator lands with the hook
        if e.name != "omnipkg_hook.scripts":
            raise
        return
    write_bubble_scripts(store, manifest, interpreter.executable)


def bubble_from_wheels(store: Store, wheels, requirement, interpreter=None, main: dict | None = None, *,
                       origins: dict | None = None, stored: dict | None = None, compile: bool = True,
                       defer: bool = False) -> dict:
    """Ingest ``wheels`` (local files) and publish the bubble of ``requirement`` from them.

    ``main`` (``{name: version}`` of the interpreter's main environment; None: unknown)
    says what not to compile now: a dist main has at the same version is not routed
    (``bytecode.served_by_main``). The others are compiled in a second thread while the
    next wheels are unpacked; they are unpacked first, the root before all, so the compile
    overlaps the unpacking of the rest. ``origins``: wheel path -> where pip got it
    (``ingest_wheel``'s ``origin``). ``stored``: ``{name: [dist manifest]}`` already in the
    store that complete the closure (the planned dists pip was not asked to fetch again).
    ``compile=False`` (``install --no-compile``) compiles none: every dist the bubble lacks
    ``.pyc`` for is marked pending (:func:`write_bubble`) and compiled later. ``defer=True``
    (``install --store-later``, what ``pip-omni run`` makes): a dist main has at the same
    version and the store lacks is not stored now but after the run (:mod:`.deferred`).
    """
    from .ingest import ingest_wheel  # pypa/installer: only when there are wheels to ingest

    interpreter = interpreter or interp.current()
    root = parse_requirement(requirement)
    root_name = normalize(root.name)

    def routed_first(wheel) -> tuple:
        name, _, rest = os.path.basename(os.fspath(wheel)).partition("-")
        name = normalize(name)
        version = rest.partition("-")[0]
        return (name != root_name, bytecode.served_by_main(name, version, main), os.fspath(wheel))

    origins = origins or {}
    with WriteLock(store):
        by_name: dict[str, list[dict]] = {n: list(ms) for n, ms in (stored or {}).items()}
        with _Compiler(store, interpreter) as compiler:
            for wheel in sorted(wheels, key=routed_first):
                if defer and _deferrable(store, os.fspath(wheel), root_name, main):
                    from . import deferred

                    m = deferred.light_manifest(store, os.fspath(wheel), origins.get(os.fspath(wheel)))
                    by_name.setdefault(m["name"], []).append(m)
                    continue
                m = ingest_wheel(store, os.fspath(wheel), interpreter, compile=False,
                                 origin=origins.get(os.fspath(wheel)))
                by_name.setdefault(m["name"], []).append(m)
                if compile and (m["name"] == root_name or not bytecode.served_by_main(m["name"], m["version"], main)):
                    compiler.submit(m)
            for name, ms in (stored or {}).items() if compile else ():
                for m in ms:
                    if name == root_name or not bytecode.served_by_main(name, m["version"], main):
                        compiler.submit(m)
        picked = resolve_closure(root, lambda n: by_name.get(n, []), interpreter, prereleases=True)
        return write_bubble(store, root, picked, interpreter)


def _deferrable(store: Store, wheel: str, root_name: str, main: dict | None) -> bool:
    """Whether the storing of ``wheel`` may wait until after the run: not the root, main has
    that very version (so the hook serves main's copy), and the store does not hold it yet."""
    filename = os.path.basename(wheel)
    parts = filename[:-4].split("-") if filename.endswith(".whl") else []
    if len(parts) not in (5, 6):
        return False  # ingest_wheel says what is wrong with it
    name = normalize(parts[0])
    try:
        version = str(Version(parts[1]))
    except InvalidVersion:
        return False
    if name == root_name or not bytecode.served_by_main(name, version, main):
        return False
    return not os.path.exists(os.path.join(store.dist_path(name, version, "-".join(parts[-3:])), DIST_MANIFEST))


class _Compiler:
    """Compiles published dists (``bytecode.ensure_compiled``) one after another in a
    thread, so compiling one dist overlaps unpacking the next. Leaving the ``with``
    waits for it and raises what it raised."""

    def __init__(self, store: Store, interpreter) -> None:
        self.store, self.interpreter = store, interpreter
        self.queue: list = []
        self.error: BaseException | None = None
        self.thread = None
        self.cond = None

    def __enter__(self) -> _Compiler:
        return self

    def submit(self, manifest: dict) -> None:
        import threading

        if self.cond is None:
            self.cond = threading.Condition()
            self.thread = threading.Thread(target=self._work, name="pip-omni-compile", daemon=True)
            self.thread.start()
        with self.cond:
            self.queue.append(manifest)
            self.cond.notify()

    def _work(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                m = self.queue.pop(0)
            if m is None:
                return
            if self.error is not None:
                continue
            try:
                dist_dir = self.store.dist_path(m["name"], m["version"], m["tag"])
                bytecode.ensure_compiled(self.store, m, dist_dir, self.interpreter)
            except BaseException as e:  # re-raised in the caller's thread
                self.error = e

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            with self.cond:
                self.queue.append(None)
                self.cond.notify()
            self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


class StoreIndex:
    """Dists in the store, read lazily by name."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, list[dict]] = {}

    def __call__(self, name: str) -> list[dict]:
        if name not in self._cache:
            found = []
            base = os.path.join(self.store.dists, name)
            for version in _listdir(base):
                for tag in _listdir(os.path.join(base, version)):
                    path = os.path.join(base, version, tag, DIST_MANIFEST)
                    if os.path.exists(path):
                        found.append(read_manifest(path))
            self._cache[name] = found
        return self._cache[name]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def bubble_from_store(store: Store, requirement, interpreter=None, main: dict | None = None, *,
                      compile: bool = True) -> dict | None:
    """Make the bubble from stored dists only (no pip, no network), or None if they do not suffice.

    Compiles the picked dists not yet compiled for ``interpreter``, except those ``main``
    (``{name: version}``) has at the same version (see :func:`bubble_from_wheels`); none with
    ``compile=False``."""
    interpreter = interpreter or interp.current()
    root = parse_requirement(requirement)
    index = StoreIndex(store)
    # Resolve under the lock: a gc in between could remove the (unreferenced) dists picked.
    with WriteLock(store):
        try:
            picked = resolve_closure(root, index, interpreter)
        except ClosureError:
            return None
        for name, p in picked.items() if compile else ():
            m = p.manifest
            if name == normalize(root.name) or not bytecode.served_by_main(name, m["version"], main):
                bytecode.ensure_compiled(store, m, store.dist_path(m["name"], m["version"], m["tag"]), interpreter)
        return write_bubble(store, root, picked, interpreter)


def find_bubble(store: Store, requirement, interpreter) -> dict | None:
    """An existing bubble of ``requirement`` for ``interpreter`` (best version), or None."""
    root = parse_requirement(requirement)
    name = normalize(root.name)
    versions = list(root.specifier.filter(store.bubble_versions(name, interpreter.key)))
    if not versions:
        return None
    best = max(versions, key=_version_key)
    manifest = store.load_bubble(name, best, interpreter.key)
    if root.extras and not set(root.extras) <= set(manifest.get("extras", [])):
        return None
    return manifest
