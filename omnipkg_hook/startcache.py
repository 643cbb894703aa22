"""The start-up cache's writer: what resolving a value of ``OMNIPKG_PINS`` decided.

Its reader is :func:`omnipkg_hook.finder.load` (the cached start-up imports nothing else);
:mod:`omnipkg_hook.startup` describes the cache. :mod:`omnipkg_hook.pins` calls :func:`save`
after a start-up resolved, so this module imports neither of them.
"""

import marshal
import os
import sys
import time

from .finder import cache_file, cache_key
from .store import makedirs

__all__ = ["save", "stamps"]


_RACY_NS = 20_000_000  # a stamp newer than this is not trusted (coarse file-system clocks tick in 1-10 ms)


def _stamp(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _code_files() -> "list[str]":
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, n) for n in ("startup.py", "startcache.py", "resolve.py", "pins.py", "dependents.py", "_requirements.py", "_pep440.py")]


def stamps(plan, code: bool = True) -> "tuple[list, list] | None":
    """What a decision resolved into ``plan`` holds only as long as: ``(path, st_mtime_ns)``
    pairs (-1: absent) of ``sys.path``'s entries, this package's resolver code (``code``),
    each pin's bubble directories and manifest; and paths that must still exist (the routed
    dists' ``.dist-info`` and each routed name's module). :func:`omnipkg_hook.finder.fresh`
    checks them. None: not sound enough to cache (a routed name without a module on disk, or
    a stamp too recent to trust: a file system's clock ticks every few ms, and a change made
    in the same tick would leave the stamp as it is)."""
    found = [(p, _stamp(p)) for p in {os.path.abspath(p or ".") for p in sys.path}]
    if code:
        found += [(p, _stamp(p)) for p in _code_files()]
    for pin in plan.pins:
        base = os.path.join(plan.store.bubbles, pin.key)
        found.append((base, _stamp(base)))
        try:
            versions = os.listdir(base)
        except OSError:
            versions = []
        found += [(os.path.join(base, v), _stamp(os.path.join(base, v))) for v in versions]
        if pin.bubble_path:
            found.append((pin.bubble_path, _stamp(pin.bubble_path)))
    recent = time.time_ns() - _RACY_NS
    if any(stamp > recent for _, stamp in found):
        return None
    exists = list(plan.dists.values())
    for name, dirs in plan.routes.items():
        for d in dirs:
            entry = _entry(d, name)
            if entry is None:
                return None
            exists.append(entry)
    return found, exists


def save(value: str, plan) -> None:
    """Record what resolving ``value`` at start-up decided (``plan``); errors are ignored."""
    try:
        root = plan.store.root
        key = cache_key(value, root)
        checks = stamps(plan)
        if checks is None:
            return  # not sound enough to cache
        data = {
            "key": key,
            "stamps": checks[0],
            "exists": checks[1],
            "routes": plan.routes,
            "dists": plan.dists,
            "env_value": plan.env_value(),
            "bins": [p.bin for p in plan.pins if p.bin],
            "entries": plan.entries,
            "warning": plan.warning,
        }
        path = cache_file(root, key)
        makedirs(os.path.dirname(path))  # 0755 whatever the umask
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump(data, f)
        os.replace(tmp, path)
    except (OSError, ValueError, TypeError):
        pass


def _entry(directory: str, name: str) -> "str | None":
    for candidate in (name, name + ".py"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    try:
        for entry in os.listdir(directory):
            if entry.startswith(name + ".") and entry.endswith((".so", ".pyd")):
                return os.path.join(directory, entry)
    except OSError:
        pass
    return None
