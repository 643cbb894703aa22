"""Facts about an interpreter that installing for it needs: key, markers, wheel tags, paths.

For the running interpreter they are read in-process; for another one a short
subprocess prints them as JSON (stdlib only, plus ``packaging.tags`` loaded from
our own installation for the supported tags).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from omnipkg_hook.errors import InterpreterError

__all__ = ["Interpreter", "current", "inspect"]

# Runs inside the target interpreter with -I -S: stdlib only until the tags part.
_PROBE = r"""
import json, os, platform, sys, sysconfig
def key():
    machine = os.uname().machine if hasattr(os, "uname") else os.environ.get("PROCESSOR_ARCHITECTURE", "unknown")
    abiflags = getattr(sys, "abiflags", "").replace("m", "")
    return f"{sys.implementation.cache_tag}{abiflags}-{sys.platform}-{machine.lower()}"
def fmt(info):
    v = "{0.major}.{0.minor}.{0.micro}".format(info)
    if info.releaselevel != "final":
        v += info.releaselevel[0] + str(info.serial)
    return v
iv = sys.implementation.version
markers = {
    "implementation_name": sys.implementation.name,
    "implementation_version": fmt(iv),
    "os_name": os.name,
    "platform_machine": platform.machine(),
    "platform_release": platform.release(),
    "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]),
    "sys_platform": sys.platform,
}
tags = None
if len(sys.argv) > 1:
    sys.path.append(sys.argv[1])
    from packaging import tags as _tags
    tags = [str(t) for t in _tags.sys_tags()]
print(json.dumps({
    "executable": sys.executable,
    "version": platform.python_version(),
    "version_info": list(sys.version_info[:2]),
    "cache_tag": sys.implementation.cache_tag,
    "key": key(),
    "markers": markers,
    "tags": tags,
    "purelib": sysconfig.get_paths()["purelib"],
    "prefix": sys.prefix,
}))
"""


@dataclass
class Interpreter:
    executable: str
    version: str
    version_info: tuple
    cache_tag: str
    key: str
    markers: dict
    tags: list[str] = field(repr=False)
    purelib: str = ""
    prefix: str = ""

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
    import sysconfig

    from packaging import markers, tags

    from omnipkg_hook.store import interpreter_key

    info = Interpreter(
        executable=sys.executable,
        version=".".join(map(str, sys.version_info[:3])),
        version_info=tuple(sys.version_info[:2]),
        cache_tag=sys.implementation.cache_tag,
        key=interpreter_key(),
        markers=dict(markers.default_environment()),
        tags=[str(t) for t in tags.sys_tags()],
        purelib=sysconfig.get_paths()["purelib"],
        prefix=sys.prefix,
    )
    _save_cached(sys.executable, info)
    return info


def _cache_path(executable: str) -> tuple[str, str]:
    """Where the probe's answer for ``executable`` is cached, and what makes it valid."""
    import hashlib

    import platformdirs

    st = os.stat(os.path.realpath(executable))
    stamp = f"{os.path.realpath(executable)}:{st.st_mtime_ns}:{st.st_size}:{interp_probe_version()}"
    name = hashlib.sha256(os.path.abspath(executable).encode()).hexdigest()[:24]
    return os.path.join(platformdirs.user_cache_dir("pip-omni", appauthor=False), "interpreters", name + ".json"), stamp


def interp_probe_version() -> str:
    import hashlib

    return hashlib.sha256(_PROBE.encode()).hexdigest()[:12]


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
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"stamp": stamp, "data": dataclasses.asdict(info) | {"version_info": list(info.version_info)}}, f)
        os.replace(tmp, cache)
    except OSError:
        pass


def _probe(executable: str) -> Interpreter:
    import packaging

    packaging_parent = os.path.dirname(os.path.dirname(packaging.__file__))
    try:
        out = subprocess.run(
            [executable, "-I", "-S", "-c", _PROBE, packaging_parent],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        data = json.loads(out)
    except FileNotFoundError:
        raise InterpreterError(
            f"interpreter {executable!r} does not exist",
            "run `pip-omni python list` to see the interpreters pip-omni knows",
        ) from None
    except (subprocess.SubprocessError, ValueError, OSError) as e:
        raise InterpreterError(
            f"cannot run interpreter {executable!r}: {e}",
            "check that it is a working Python 3.9+",
        ) from None
    data["version_info"] = tuple(data["version_info"])
    if data["version_info"] < (3, 9):
        raise InterpreterError(
            f"Python {data['version']} at {executable!r} is not supported",
            "pip-omni supports Python 3.9 to 3.13",
        )
    return Interpreter(**data)
