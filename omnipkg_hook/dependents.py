"""Main-environment distributions a pin leaves with a requirement they declared unmet.

Pinning ``werkzeug==2.0.3`` while the main environment's Flask 3 requires
``Werkzeug>=3.0.0`` serves Flask's ``import werkzeug`` from the store too: Flask then
fails later, deep inside, with an ``ImportError`` or worse. :func:`broken_by` finds
those distributions when the pins are resolved; :func:`warning` makes the one line
printed at start-up and by ``pin()`` (``OMNIPKG_QUIET=1`` silences it; the start-up
cache stores the line, so a cached start-up reads nothing more); ``pip-omni why``
prints the full list.

Requirements are read from each main distribution's ``METADATA`` (``Requires-Dist``),
once per ``sys.path`` and cached in the finder's cache. A requirement with a marker
counts only when the marker (:mod:`omnipkg_hook._markers`) is true here with no extra
selected: one on an extra (``extra == "socks"``) never counts (which extras were installed
is not recorded), nor does a marker that cannot be read (better no warning than a false
one). Standard library only.
"""

from __future__ import annotations

import os
import re

from ._markers import Marker
from ._pep440 import InvalidSpecifier, SpecifierSet
from .store import normalize

__all__ = ["main_requirements", "broken_by", "warning", "QUIET_VAR"]

QUIET_VAR = "OMNIPKG_QUIET"
_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def quiet() -> bool:
    return os.environ.get(QUIET_VAR, "").strip().lower() in ("1", "true", "yes", "on")


def main_requirements(main: dict, cache: dict | None = None) -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """``{dist: (version, [(required name, specifier text), ...])}`` for the main environment's
    distributions (``main`` as :func:`omnipkg_hook.store.main_versions` returns it),
    only requirements whose markers hold here."""
    key = ("requires", tuple(sorted(main.items())))
    if cache is not None and key in cache:
        return cache[key]
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    listings: dict[str, list[str]] = {}
    for name, (version, directory) in main.items():
        meta = _metadata_file(name, version, directory, listings)
        if meta is None:
            continue
        found[name] = (version, _requires(meta))
    if cache is not None:
        cache[key] = found
    return found


def _metadata_file(name: str, version: str, directory: str, listings: dict) -> str | None:
    names = listings.get(directory)
    if names is None:
        try:
            names = listings[directory] = os.listdir(directory or ".")
        except OSError:
            names = listings[directory] = []
    for entry in names:
        if entry.endswith((".dist-info", ".egg-info")) and normalize(entry.split("-")[0]) == name:
            for meta in ("METADATA", "PKG-INFO"):
                path = os.path.join(directory or ".", entry, meta)
                if os.path.isfile(path):
                    return path
    return None


def _requires(path: str) -> list[tuple[str, str]]:
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # end of the headers
                if not line.startswith("Requires-Dist:"):
                    continue
                text, _, marker = line[len("Requires-Dist:") :].strip().partition(";")
                if marker.strip() and not marker_holds(marker):
                    continue
                m = _NAME.match(text)
                if m:
                    spec = m.group(3).strip().strip("()").strip()
                    if spec and "@" not in spec:
                        out.append((normalize(m.group(1)), spec))
    except OSError:
        pass
    return out


def broken_by(plan, requirements: dict) -> list[dict]:
    """The main distributions whose requirement on a distribution ``plan`` serves from the
    store that copy does not satisfy, sorted; each ``{"distribution", "version",
    "requires", "served", "served_version"}``. Distributions the plan serves from the
    store themselves are not counted (their requirements are the plan's business)."""
    served = {name: copy for name, copy in plan.chosen.items() if copy.where == "store"}
    if not served:
        return []
    found = []
    for dependent, (version, reqs) in sorted(requirements.items()):
        if dependent in served:
            continue
        for dep, spec in reqs:
            copy = served.get(dep)
            if copy is None:
                continue
            try:
                ok = copy.satisfies(SpecifierSet(spec))
            except InvalidSpecifier:
                continue
            if not ok:
                found.append({
                    "distribution": dependent,
                    "version": version,
                    "requires": f"{dep}{spec}",
                    "served": dep,
                    "served_version": copy.version,
                })  # fmt: skip
    return found


def warning(broken: list[dict]) -> str | None:
    """The one line printed at start-up and by ``pin()`` (None when nothing breaks)."""
    if not broken:
        return None
    first = broken[0]
    more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
    names = sorted({b["served"] for b in broken})
    return (
        f"pip-omni: warning: the pins leave main-environment requirements unmet: "
        f"{first['distribution']} {first['version']} requires {first['requires']}, "
        f"pinned to {first['served']} {first['served_version']}{more}; its imports may fail "
        f"(list: pip-omni why {names[0]}; {QUIET_VAR}=1 silences this)"
    )


# -- markers ------------------------------------------------------------------------------

_ENV: dict | None = None


def _environment() -> dict[str, str]:
    global _ENV
    if _ENV is None:
        from ._tags import marker_environment

        _ENV = marker_environment()
    return _ENV


def marker_holds(marker: str) -> bool:
    """Whether a PEP 508 marker is true in this interpreter with no extra selected (so a
    requirement of an extra never counts); False for a marker that cannot be read."""
    try:
        return Marker(marker).evaluate(_environment())
    except (ValueError, KeyError):
        return False
