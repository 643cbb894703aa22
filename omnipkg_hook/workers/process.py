"""A worker process from start to end: ``--fd N [--pins P] [--zygote]``.

Parse the arguments, connect the inherited socket, apply the pins, then serve: as a plain
worker (:func:`.worker.run_started`) or as the zygote that forks warm workers
(:func:`.zygote.serve`). The entry point of ``python -m omnipkg_hook.workers`` and of
``spawn.py``'s BOOT line; the only module that knows both serving modes, so the worker loop
and the zygote never import each other's driver.
"""

from __future__ import annotations

import signal
import socket
import sys

from . import protocol as P
from .worker import apply_pins, describe_exception, run_started, worker_info

__all__ = ["main"]


def _parse(argv: list[str]) -> dict:
    opts = {"fd": None, "pins": None, "zygote": False, "max_frame": P.MAX_FRAME}
    it = iter(argv)
    for arg in it:
        if arg == "--fd":
            opts["fd"] = int(next(it))
        elif arg == "--pins":
            opts["pins"] = next(it)
        elif arg == "--max-frame":
            opts["max_frame"] = int(next(it))
        elif arg == "--zygote":
            opts["zygote"] = True
        else:
            raise SystemExit(f"omnipkg_hook.workers: unknown argument {arg!r}")
    if opts["fd"] is None:
        raise SystemExit(
            "usage: python -m omnipkg_hook.workers --fd N [--pins 'rich==13.5.3,...'] [--zygote]\n"
            "  N is a connected AF_UNIX stream socket inherited from the owner "
            "(WorkerPool or the daemon start workers this way)"
        )
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = _parse(list(sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=opts["fd"])
    sock.setblocking(True)
    control = P.Connection(sock, opts["max_frame"], fds=True)
    try:
        apply_pins(opts["pins"])
    except BaseException as e:
        name, message, text = describe_exception(e, None)
        try:
            control.send(P.ERROR, P.dumps((name, message, text, "", "")))
        except OSError:
            pass
        return 1
    if opts["zygote"]:
        from . import zygote  # only a zygote needs fork and its reaper

        return zygote.serve(control, worker_info("zygote"))
    return run_started(control, worker_info("spawn"))
