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
counts only when the marker is true here; one on an extra (``extra == "socks"``) never
counts (which extras were installed is not recorded), nor does a marker this module
cannot read (better no warning than a false one). Standard library only.
"""

from __future__ import annotations

import os
import platform
import re
import sys

from ._pep440 import InvalidSpecifier, InvalidVersion, SpecifierSet, parse_version
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


# -- markers (PEP 508), the common part ------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:(?P<paren>[()])|(?P<bool>and|or)\b|(?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)"""
    r"""|(?P<name>[a-z_.]+)|(?P<str>'[^']*'|"[^"]*"))"""
)


def _environment() -> dict[str, str]:
    v = sys.version_info
    return {
        "python_version": f"{v[0]}.{v[1]}",
        "python_full_version": platform.python_version(),
        "sys_platform": sys.platform,
        "platform_system": platform.system(),
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "implementation_name": sys.implementation.name,
        "os_name": os.name,
        "platform_release": platform.release(),
    }


def marker_holds(marker: str) -> bool:
    """Whether a PEP 508 marker is true in this interpreter; False for an ``extra`` marker
    or one that cannot be read."""
    tokens = []
    pos, text = 0, marker.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            return False
        tokens.append(m.groupdict())
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    try:
        value, rest = _or(tokens, _environment())
    except (ValueError, IndexError, KeyError):
        return False
    return value is True and not rest


def _or(tokens, env):
    return _joined(tokens, env, "or", _and)


def _and(tokens, env):
    return _joined(tokens, env, "and", _atom)


def _joined(tokens, env, word: str, operand):
    """``operand (word operand)*``; both sides are evaluated (an unreadable one raises)."""
    value, tokens = operand(tokens, env)
    while tokens and tokens[0]["bool"] == word:
        right, tokens = operand(tokens[1:], env)
        value = (value or right) if word == "or" else (value and right)
    return value, tokens


def _atom(tokens, env):
    if tokens[0]["paren"] == "(":
        value, tokens = _or(tokens[1:], env)
        if not tokens or tokens[0]["paren"] != ")":
            raise ValueError("unbalanced")
        return value, tokens[1:]
    left, op, right = _value(tokens[0], env), tokens[1]["op"], _value(tokens[2], env)
    if op is None:
        raise ValueError("no operator")
    return _compare(left, " ".join(op.split()), right), tokens[3:]


def _value(token, env):
    if token["str"] is not None:
        return token["str"][1:-1]
    if token["name"] is not None:
        if token["name"] == "extra":
            raise KeyError("extra")
        return env[token["name"].replace(".", "_")]  # os.name -> os_name (legacy spelling)
    raise ValueError("not a value")


def _compare(left: str, op: str, right: str) -> bool:
    if op == "in":
        return left in right
    if op == "not in":
        return left not in right
    try:
        return SpecifierSet(f"{op}{right}").contains(parse_version(left))
    except (InvalidSpecifier, InvalidVersion):
        pass
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    raise ValueError("not comparable")
