"""Facts about an interpreter that installing for it needs: key, markers, wheel tags, paths.

Both come from :mod:`omnipkg_hook._tags` (standard library only): imported for the
running interpreter, run as a script with ``-I -S`` inside another one, which then
has nothing but its own standard library on ``sys.path`` -- never our packages.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import omnipkg_hook
from omnipkg_hook.errors import InterpreterError

__all__ = ["Interpreter", "current", "inspect"]

# omnipkg_hook/_tags.py, run as a script by another interpreter with -I -S: its own standard
# library only. Imported (it imports platform and sysconfig) only when an answer is not cached.
_PROBE_FILE = os.path.join(os.path.dirname(omnipkg_hook.__file__), "_tags.py")


class Interpreter:
    """The facts (a plain class, not a dataclass: ``dataclasses`` costs more to import than a
    bubble from stored dists costs to make, and this is on that path)."""

    FIELDS = ("executable", "version", "version_info", "cache_tag", "key", "markers", "tags", "purelib", "prefix")
    __slots__ = (*FIELDS, "__dict__")  # __dict__: functools.cached_property

    def __init__(self, executable: str, version: str, version_info: tuple, cache_tag: str, key: str,
                 markers: dict, tags: list, purelib: str = "", prefix: str = "") -> None:
        self.executable, self.version, self.version_info = executable, version, version_info
        self.cache_tag, self.key, self.markers, self.tags = cache_tag, key, markers, tags
        self.purelib, self.prefix = purelib, prefix

    def asdict(self) -> dict:
        return {f: getattr(self, f) for f in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return self.asdict() == other.asdict() if isinstance(other, Interpreter) else NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS if f != "tags")
        return f"Interpreter({shown})"

    @property
    def is_current(self) -> bool:
        return os.path.realpath(self.executable) == os.path.realpath(sys.executable) and (
            self.prefix == sys.prefix
        )

    @functools.cached_property
    def tag_rank(self) -> dict[str, int]:
        """Wheel tag -> preference (lower is better), as pip ranks them."""
        return {t: i for i, t in enumerate(self.tags)}

    def supports(self, wheel_tag: str) -> bool:
        """Whether a (possibly compressed) wheel tag like ``py2.py3-none-any`` installs here."""
        return self.rank(wheel_tag) is not None

    def rank(self, wheel_tag: str) -> int | None:
        pys, abis, plats = wheel_tag.split("-")
        best = None
        for py in pys.split("."):
            for abi in abis.split("."):
                for plat in plats.split("."):
                    r = self.tag_rank.get(f"{py}-{abi}-{plat}")
                    if r is not None and (best is None or r < best):
                        best = r
        return best


@functools.cache
def current() -> Interpreter:
    """The running interpreter; cached on disk like any other (``sys_tags`` costs ~10 ms)."""
    cached = _load_cached(sys.executable)
    if cached is not None and cached.prefix == sys.prefix:
        return cached
    from omnipkg_hook import _tags

    data = _tags.facts()
    data["version"] = ".".join(map(str, sys.version_info[:3]))
    data["version_info"] = tuple(data["version_info"])
    data["executable"] = sys.executable
    info = Interpreter(**data)
    _save_cached(sys.executable, info)
    return info


def _cache_path(executable: str) -> tuple[str, str]:
    """Where the probe's answer for ``executable`` is cached, and what makes it valid."""
    from omnipkg_hook.store import sha256

    from ..locations import cache_dir

    real = os.path.realpath(executable)
    st = os.stat(real)
    stamp = f"{real}:{st.st_mtime_ns}:{st.st_size}:{interp_probe_version()}"
    name = sha256(os.path.abspath(executable).encode()).hexdigest()[:24]
    return os.path.join(cache_dir(), "interpreters", name + ".json"), stamp


@functools.cache
def interp_probe_version() -> str:
    from omnipkg_hook.store import sha256

    with open(_PROBE_FILE, "rb") as f:
        return sha256(f.read()).hexdigest()[:12]


@functools.cache
def inspect(executable: str) -> Interpreter:
    """Facts about the interpreter at ``executable`` (the running one is read in-process).

    Another interpreter is probed once and the answer cached on disk, keyed by its path
    and its binary's mtime and size: a rebuilt interpreter is probed again.
    """
    if os.path.realpath(executable) == os.path.realpath(sys.executable) and os.path.abspath(
        executable
    ) == os.path.abspath(sys.executable):
        return current()
    info = _load_cached(executable)
    if info is None:
        info = _probe(executable)
        _save_cached(executable, info)
    return info


def _load_cached(executable: str) -> Interpreter | None:
    try:
        cache, stamp = _cache_path(executable)
        with open(cache, encoding="utf-8") as f:
            cached = json.load(f)
        if cached.get("stamp") != stamp:
            return None
        data = cached["data"]
        data["version_info"] = tuple(data["version_info"])
        return Interpreter(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_cached(executable: str, info: Interpreter) -> None:
    try:
        cache, stamp = _cache_path(executable)
        from omnipkg_hook.store import makedirs  # 0755 whatever the umask

        makedirs(os.path.dirname(cache))
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"stamp": stamp, "data": info.asdict() | {"version_info": list(info.version_info)}}, f)
        os.replace(tmp, cache)
    except OSError:
        pass


def _probe(executable: str) -> Interpreter:
    import subprocess

    hint = f"pip-omni needs a Python 3.9 to 3.13 that runs with -I -S; `{executable} -I -S -c pass` shows what is wrong"
    try:
        proc = subprocess.run([executable, "-I", "-S", _PROBE_FILE], capture_output=True, timeout=60)
    except FileNotFoundError:
        raise InterpreterError(
            f"interpreter {executable!r} does not exist",
            "run `pip-omni python list` to see the interpreters pip-omni knows",
        ) from None
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"interpreter {executable!r} did not answer within 60 s", hint) from None
    except OSError as e:
        raise InterpreterError(f"cannot run interpreter {executable!r}: {e.strerror or e}", hint) from None
    if proc.returncode != 0:
        why = _telling_line(proc.stderr) or f"exit status {proc.returncode} and nothing on stderr"
        raise InterpreterError(f"interpreter {executable!r} failed: {why}", hint)
    try:
        data = json.loads(proc.stdout)
        data["version_info"] = tuple(data["version_info"])
        too_old = data["version_info"] < (3, 9)
        info = None if too_old else Interpreter(**data)
    except (ValueError, TypeError, KeyError, AttributeError):
        said = _telling_line(proc.stdout) or "nothing"
        raise InterpreterError(f"interpreter {executable!r} did not answer as a Python does: it printed {said}",
                               hint) from None
    if too_old:
        raise InterpreterError(
            f"Python {data.get('version')} at {executable!r} is not supported",
            "pip-omni supports Python 3.9 to 3.13",
        )
    return info


def _telling_line(raw: bytes) -> str:
    """The line of a child's output that says what failed, quoted: the first (a traceback's last)."""
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return repr(line if len(line) <= 200 else line[:200] + "...")
