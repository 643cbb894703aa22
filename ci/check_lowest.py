"""Check that the venv really has the versions a constraints file names (and pyproject's bounds).

``python ci/check_lowest.py ci/constraints-lowest.txt``: exits 1, naming each difference, when
an installed version is not the one pinned, or a pin is not the lower bound pyproject.toml
declares. Stdlib plus packaging (a dependency of ours, so present in the venv).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib


def lower_bounds(pyproject: Path) -> dict[str, str]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    bounds = {}
    for line in data["dependencies"] + data["optional-dependencies"]["test"]:
        req = Requirement(line)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        if lows:
            bounds[canonicalize_name(req.name)] = lows[0]
    return bounds


def main(path: str) -> int:
    bounds = lower_bounds(Path(__file__).resolve().parent.parent / "pyproject.toml")
    problems = []
    pinned = set()
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        name = canonicalize_name(req.name)
        pinned.add(name)
        (spec,) = req.specifier
        if bounds.get(name) is None or Version(bounds[name]) != Version(spec.version):
            problems.append(f"{name}: pinned {spec.version}, but pyproject.toml's lower bound is {bounds.get(name)}")
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            got = version(req.name)
        except PackageNotFoundError:
            problems.append(f"{name}: pinned {spec.version}, not installed")
            continue
        if got not in spec:
            problems.append(f"{name}: pinned {spec.version}, installed {got}")
    problems += [f"{n}: lower bound {v} in pyproject.toml is not in {path}" for n, v in bounds.items() if n not in pinned]
    for p in problems:
        print(f"check_lowest: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
