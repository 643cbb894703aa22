"""Adopted interpreters: find, record, choose the default, and the ``bin/`` shims.

Which environment a command acts on ("main"), as pip and uv choose it:

1. ``--python`` (an adopted version or a path);
2. else ``$VIRTUAL_ENV`` (an activated virtual environment);
3. else the virtual environment running pip-omni (``venv/bin/pip-omni``, ``python -m omnipkg_pip``),
   unless it is a pipx or uv tool environment;
4. else ``$CONDA_PREFIX`` (an activated conda environment);
5. else the default set by ``pip-omni swap python``;
6. else the interpreter running pip-omni (for a pipx/uv tool: the Python the tool was made from).

So ``swap`` sets the default only where no environment is active or named. An
interpreter that is not an environment (a system or pyenv base Python) only ever gets
bubbles unless ``install --main`` (or pip's ``--break-system-packages``) says otherwise.

Adopting finds an interpreter that is already on the machine (pyenv, ``PATH``,
common prefixes, or a path given) and records it in ``<store>/interpreters.json``.
Nothing is downloaded or copied. ``swap`` makes one the default for pip-omni
commands and points ``<store>/bin/{python,python3,pip}`` at it; every write is
atomic, so a swap interrupted half-way leaves the previous shims working.

Registry (``interpreters.json``)::

    {"format": 1, "default": "/path/to/python" | null,
     "interpreters": [{"version": "3.9.18", "path": "...", "key": "cpython-39-linux-x86_64",
                       "source": "pyenv" | "PATH" | "prefix" | "path", "adopted": "<iso time>"}]}
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from omnipkg_hook.errors import InterpreterError
from omnipkg_hook.store import FORMAT, Store, WriteLock, makedirs, write_json_atomic

from . import interp

__all__ = [
    "SUPPORTED",
    "discover",
    "adopt",
    "forget",
    "active_environment",
    "is_environment",
    "main_python",
    "unset_default",
    "registry",
    "resolve_python",
    "set_default",
    "write_shims",
]

SUPPORTED = ((3, 9), (3, 13))
_VERSION_RE = re.compile(r"^3\.(\d+)(?:\.(\d+))?$")
_COMMON_PREFIXES = ("/usr/local/bin", "/usr/bin", "/opt/homebrew/bin", "/opt/local/bin")


def _supported_text() -> str:
    lo, hi = SUPPORTED
    return f"pip-omni supports Python {lo[0]}.{lo[1]} to {hi[0]}.{hi[1]}"


def _check_version_spec(spec: str) -> tuple[int, int | None]:
    m = _VERSION_RE.match(spec)
    if not m:
        raise InterpreterError(
            f"{spec!r} is neither a Python version nor a path to an interpreter",
            "give a version like 3.9 or 3.12.1, or a path like /usr/bin/python3.11",
        )
    minor = int(m.group(1))
    if not (SUPPORTED[0][1] <= minor <= SUPPORTED[1][1]):
        raise InterpreterError(f"Python {spec} is not supported", _supported_text())
    return minor, int(m.group(2)) if m.group(2) else None


def _registry_path(store: Store) -> str:
    return os.path.join(store.root, "interpreters.json")


def registry(store: Store) -> dict:
    path = _registry_path(store)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"format": FORMAT, "default": None, "interpreters": []}
    except (OSError, ValueError) as e:
        raise InterpreterError(f"cannot read {path!r}: {e}",
                               "delete the file and adopt your interpreters again") from None
    if not isinstance(data, dict) or not isinstance(data.get("interpreters"), list):
        raise InterpreterError(f"{path!r} is not a pip-omni interpreter registry",
                               "delete the file and adopt your interpreters again")
    return data


def _save(store: Store, data: dict) -> None:
    write_json_atomic(store, _registry_path(store), data)


def discover(spec: str) -> list[tuple[str, str]]:
    """Candidate ``(path, source)`` for a version spec like ``3.9`` or ``3.9.18``, best first."""
    import glob  # only when adopting: not on every command's path

    minor, patch = _check_version_spec(spec)
    found: list[tuple[tuple, str, str]] = []
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for d in glob.glob(os.path.join(pyenv_root, "versions", f"3.{minor}.*")):
        name = os.path.basename(d)
        m = re.fullmatch(rf"3\.{minor}\.(\d+)", name)
        if not m or (patch is not None and int(m.group(1)) != patch):
            continue
        exe = os.path.join(d, "bin", "python")
        if os.access(exe, os.X_OK):
            found.append(((0, -int(m.group(1))), exe, "pyenv"))
    names = [f"python3.{minor}"]
    for i, d in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not d or "pyenv/shims" in d:
            continue
        for n in names:
            exe = os.path.join(d, n)
            if os.access(exe, os.X_OK) and not os.path.isdir(exe):
                found.append(((1, i), exe, "PATH"))
    for i, d in enumerate(_COMMON_PREFIXES):
        exe = os.path.join(d, f"python3.{minor}")
        if os.access(exe, os.X_OK):
            found.append(((2, i), exe, "prefix"))
    seen, out = set(), []
    for _rank, exe, source in sorted(found):
        real = os.path.realpath(exe)
        if real not in seen:
            seen.add(real)
            out.append((exe, source))
    return out


def _record(info, source: str) -> dict:
    return {"version": info.version, "path": info.executable, "key": info.key, "source": source,
            "adopted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def adopt(store: Store, spec: str) -> dict:
    """Find and record an interpreter; returns its registry record."""
    if os.sep in spec or os.path.exists(spec):
        path = os.path.abspath(os.path.expanduser(spec))
        if not os.access(path, os.X_OK) or os.path.isdir(path):
            raise InterpreterError(f"{spec!r} is not an executable interpreter",
                                   "give the path of a python executable, or a version like 3.9")
        candidates = [(path, "path")]
    else:
        candidates = discover(spec)
        if not candidates:
            raise InterpreterError(
                f"no Python {spec} found (looked in pyenv versions, PATH and {', '.join(_COMMON_PREFIXES)})",
                f"install it (e.g. `pyenv install {spec}`) or give its path: `pip-omni python adopt /path/to/python{spec}`",
            )
    last_error = None
    for path, source in candidates:
        try:
            info = interp.inspect(path)
        except InterpreterError as e:
            last_error = e
            continue
        if not (SUPPORTED[0] <= tuple(info.version_info) <= SUPPORTED[1]):
            raise InterpreterError(f"{path!r} is Python {info.version}, which is not supported", _supported_text())
        if source != "path" and not info.version.startswith(spec):
            continue
        record = _record(info, source)
        with WriteLock(store):
            data = registry(store)
            data["interpreters"] = [r for r in data["interpreters"]
                                    if os.path.realpath(r["path"]) != os.path.realpath(record["path"])]
            data["interpreters"].append(record)
            data["interpreters"].sort(key=lambda r: _vtuple(r["version"]))
            _save(store, data)
        return record
    raise last_error or InterpreterError(f"no working Python {spec} found", "give its path explicitly")


def _vtuple(v: str) -> tuple:
    return tuple(int(x) if x.isdigit() else 0 for x in re.split(r"[.]", re.sub(r"[^0-9.].*$", "", v)))


def _match(data: dict, spec: str) -> list[dict]:
    if os.sep in spec:
        real = os.path.realpath(spec)
        return [r for r in data["interpreters"] if os.path.realpath(r["path"]) == real]
    _check_version_spec(spec)
    hits = [r for r in data["interpreters"] if r["version"] == spec or r["version"].startswith(spec + ".")]
    return sorted(hits, key=lambda r: _vtuple(r["version"]), reverse=True)


def forget(store: Store, spec: str) -> list[dict]:
    with WriteLock(store):
        data = registry(store)
        gone = _match(data, spec)
        if not gone:
            raise InterpreterError(f"no adopted interpreter matches {spec!r}", "see `pip-omni python list`")
        paths = {r["path"] for r in gone}
        data["interpreters"] = [r for r in data["interpreters"] if r["path"] not in paths]
        if data.get("default") in paths:
            data["default"] = None
            _remove_shims(store)
        _save(store, data)
    return gone


def _venv_python(prefix: str) -> str | None:
    for rel in ("bin/python", "bin/python3", "Scripts/python.exe"):
        exe = os.path.join(prefix, rel)
        if os.access(exe, os.X_OK):
            return exe
    return None


def _is_tool_venv(prefix: str) -> bool:
    """A pipx or uv tool environment: pip-omni's own home, not the user's."""
    return any(os.path.exists(os.path.join(prefix, f)) for f in ("pipx_metadata.json", "uv-receipt.toml"))


def is_environment(interpreter) -> bool:
    """Whether ``interpreter`` runs a virtual (or conda) environment rather than being a base interpreter.

    Judged by ``pyvenv.cfg`` beside its ``bin/`` (the probe runs with ``-S``, where
    ``sys.prefix`` is still the base one) or in its prefix, or ``conda-meta``.
    """
    venv = os.path.dirname(os.path.dirname(os.path.abspath(interpreter.executable)))
    return any(os.path.isfile(os.path.join(p, "pyvenv.cfg")) for p in (venv, interpreter.prefix)) or os.path.isdir(
        os.path.join(interpreter.prefix, "conda-meta"))


def active_environment() -> tuple[str, str] | None:
    """``(python, why)`` of the environment active here, or None (rules 2-4 of the module doc)."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        exe = _venv_python(venv)
        if exe is None:
            raise InterpreterError(f"VIRTUAL_ENV={venv!r} has no Python in it",
                                   "activate a working virtual environment, deactivate it, or name one with --python")
        return exe, "VIRTUAL_ENV"
    if sys.prefix != sys.base_prefix and not _is_tool_venv(sys.prefix):
        return sys.executable, "the virtual environment running pip-omni"
    conda = os.environ.get("CONDA_PREFIX")
    if conda and _venv_python(conda):
        return _venv_python(conda), "CONDA_PREFIX"
    return None


def main_python(store: Store, spec: str | None = None) -> tuple[str, str]:
    """``(python, why)``: the interpreter whose environment is main, without probing it."""
    if spec is not None:
        return resolve_python(store, spec).executable, "--python"
    active = active_environment()
    if active is not None:
        return active
    default = registry(store).get("default")
    if default:
        return default, "the default (`pip-omni swap python`)"
    if _is_tool_venv(sys.prefix):
        return _base_python(), "the Python pip-omni's tool environment was made from"
    return sys.executable, "the interpreter running pip-omni"


def _base_python() -> str:
    """The base interpreter of the venv running pip-omni.

    ``sys._base_executable`` names it on 3.11+; before that it is the venv's own ``python``
    on POSIX, so fall back to ``<base_prefix>/bin/pythonX.Y`` and then to the venv python's
    resolved link (venvs link to their base interpreter on Linux and macOS).
    """
    base = getattr(sys, "_base_executable", None)
    prefix = os.path.join(os.path.abspath(sys.prefix), "")
    if base and not os.path.abspath(base).startswith(prefix):
        return base
    candidate = os.path.join(sys.base_prefix, "bin", "python{}.{}".format(*sys.version_info[:2]))
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return os.path.realpath(sys.executable)


def resolve_python(store: Store, spec: str | None):
    """The interpreter a command acts on (the rules of the module doc)."""
    if spec is None:
        active = active_environment()
        if active is not None:
            return interp.inspect(active[0])
        default = registry(store).get("default")
        if not default:
            python, _why = main_python(store)
            return interp.inspect(python)
        if not os.path.exists(default):
            raise InterpreterError(
                f"the default interpreter {default!r} no longer exists",
                "choose another with `pip-omni swap python VERSION`, or clear it: `pip-omni swap python --unset`",
            )
        return interp.inspect(default)
    if os.sep in spec or os.path.exists(spec):
        return interp.inspect(os.path.abspath(os.path.expanduser(spec)))
    hits = _match(registry(store), spec)
    cur = interp.current()
    if cur.version == spec or cur.version.startswith(spec + "."):
        return cur
    if not hits:
        raise InterpreterError(f"Python {spec} is not adopted",
                               f"run `pip-omni python adopt {spec}` first")
    for r in hits:
        if os.path.exists(r["path"]):
            return interp.inspect(r["path"])
    raise InterpreterError(f"the adopted Python {spec} at {hits[0]['path']!r} no longer exists",
                           f"run `pip-omni python forget {spec}` and adopt it again")


def set_default(store: Store, record: dict) -> None:
    with WriteLock(store):
        data = registry(store)
        data["default"] = record["path"]
        _save(store, data)
        write_shims(store, record["path"])


def unset_default(store: Store) -> str | None:
    """Clear the default interpreter and remove the shims; returns the default there was."""
    with WriteLock(store):
        data = registry(store)
        old = data.get("default")
        data["default"] = None
        _save(store, data)
        _remove_shims(store)
    return old


_SHIM_MARK = "# pip-omni shim"
_SHIMS = ("python", "python3", "pip")


def _remove_shims(store: Store) -> None:
    for name in _SHIMS:
        path = os.path.join(store.bin, name)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                ours = _SHIM_MARK in f.read(200)
        except OSError:
            continue
        if ours:
            os.unlink(path)


def write_shims(store: Store, python: str) -> list[str]:
    """``<store>/bin/python``, ``python3`` and ``pip`` -> ``python``; each written by rename."""
    makedirs(store.bin)
    made = []
    q = python.replace("'", "'\\''")
    for name, line in (("python", f"exec '{q}' \"$@\""), ("python3", f"exec '{q}' \"$@\""),
                       ("pip", f"exec '{q}' -m pip \"$@\"")):
        target = os.path.join(store.bin, name)
        tmp = os.path.join(store.tmp, f"shim-{name}-{os.getpid()}")
        makedirs(store.tmp)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"#!/bin/sh\n# pip-omni shim: set by `pip-omni swap python`\n{line}\n")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
        made.append(target)
    return made


def bubble_counts(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _n, _v, key, _p in store.iter_bubbles():
        counts[key] = counts.get(key, 0) + 1
    return counts
