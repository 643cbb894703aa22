"""The main environment of an interpreter, as pip-omni compares against it."""

from __future__ import annotations

import os
import sys

from omnipkg_hook.errors import InterpreterError
from omnipkg_hook.store import Store, main_versions

__all__ = ["sys_path", "installed", "guard_constraints"]


def sys_path(interpreter) -> list[str]:
    """The interpreter's ``sys.path`` as a plain start gives it (no PYTHONPATH, no pins)."""
    if interpreter.is_current:
        return [p for p in sys.path if p]
    import json
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMNIPKG_PINS", "PYTHONHOME")}
    try:
        out = subprocess.run(
            [interpreter.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise InterpreterError(f"cannot run {interpreter.executable!r}: {e}") from None
    return [p for p in json.loads(out) if p]


def installed(interpreter, store: Store) -> dict[str, str]:
    """``{normalized name: version}`` of the main environment (the store excluded)."""
    found = main_versions(sys_path(interpreter), exclude=store.root)
    return {name: version for name, (version, _where) in found.items()}


def guard_constraints(installed_versions: dict[str, str], path: str) -> str:
    """Write a constraints file that pins every installed distribution to its version.

    Passed to every ``pip install`` into main, it turns "this would change a
    version" from a silent change into pip refusing: the last line of defence
    behind the plan.
    """
    from packaging.version import InvalidVersion, Version

    lines = []
    for name, version in sorted(installed_versions.items()):
        try:
            Version(version)
        except InvalidVersion:
            continue
        lines.append(f"{name}=={version}\n")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return path
