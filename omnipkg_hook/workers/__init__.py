"""Run code against any pinned version in a warm subprocess: workers, a pool, the daemon.

::

    from omnipkg_hook.workers import DaemonClient, DaemonProxy

    proxy = DaemonProxy(DaemonClient(), "rich==13.5.3")
    r = proxy.execute("import rich; rich.__file__")      # r.value, r.stdout, r.stderr
    proxy.call("rich.text:Text", "hi")                   # -> the return value

``WorkerPool`` does the same without a daemon, with workers owned by this process.
Everything is imported on first use (PEP 562), so ``import omnipkg_hook.workers`` and
``python -m omnipkg_hook.workers`` (a worker) load only what they need.

Modules: ``protocol`` (frames, message table, handshake), ``worker`` (the worker loop),
``zygote``, ``spawn`` (starting workers under any interpreter), ``remote`` (the calling
side), ``pool``, ``runtime`` (directories, key, peer checks), ``daemon`` (the process and
its clients), ``warm`` (its pool of warm workers), ``client``.
"""

from __future__ import annotations

__all__ = [
    "DaemonClient",
    "DaemonProxy",
    "DaemonConfig",
    "WorkerPool",
    "ExecResult",
    "RemoteError",
    "WorkerError",
    "WorkerCrashedError",
    "WorkerTimeoutError",
    "DaemonError",
]

_WHERE = {
    "DaemonClient": "client",
    "DaemonProxy": "client",
    "DaemonConfig": "daemon",
    "WorkerPool": "pool",
    "ExecResult": "remote",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    elif name in __all__:
        from .. import errors

        value = getattr(errors, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
