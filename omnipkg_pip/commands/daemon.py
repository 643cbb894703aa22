"""``pip-omni daemon start|stop|status [--json]``: the worker daemon, for people.

The library starts the daemon on demand (``DaemonClient()``); these commands do the same
by hand. There is one daemon per user per store (``--store``, else ``OMNIPKG_STORE``,
pyproject.toml, or the default store).

- ``start [--foreground] [--idle-timeout S] [--exit-timeout S] [--max-workers N] [--no-zygotes]``:
  start it (detached unless ``--foreground``); "already running" is not an error.
  ``--json``: ``{"pid": int, "started": bool, "store": str, "socket": str, "log": str}``.
- ``stop``: stop it and wait until it and its workers are gone; "not running" is not
  an error. It also stops the cell zygotes ``pip-omni run --matrix`` keeps between runs
  (omnipkg_pip/run/cellfork.py; those of every store). ``--json``:
  ``{"pid": int | null, "stopped": bool, "store": str, "cell_zygotes": [pid, ...]}``.
- The daemon also stops by itself once it has had no worker and no client for its exit
  timeout (default 300 s; ``--exit-timeout``, ``OMNIPKG_DAEMON_EXIT_TIMEOUT``; 0: never).
- ``status [--json]``: exit status 0 when a daemon runs, 3 when none does.

``status --json`` shape (sizes in bytes, times in seconds; ``rss_bytes`` is ``VmRSS``
from ``/proc`` and ``null`` where that does not exist)::

    {
      "running": true,                  # false: only "store", "socket", "cell_zygotes" follow
      "pid": 1234, "store": str, "socket": str, "log": str,
      "python": str,                    # the daemon's interpreter
      "uptime_seconds": float, "clients": int, "rss_bytes": int | null,
      "config": {"idle_timeout": float, "exit_timeout": float, "max_workers": int, "zygotes": bool},
      "workers": [
        {"id": "w1", "pid": int, "pins": ["rich==13.5.3"], "python": str,
         "python_version": "3.11.7",
         "state": "starting" | "ready" | "busy" | "leaving",
         "via": "zygote" | "spawn",      # forked by its pin set's zygote, or a fresh process
         "clients": int,                 # open sessions (proxies) on it
         "calls": int,
         "idle_seconds": float | null,   # since its last call ended; null while busy
         "age_seconds": float, "rss_bytes": int | null}
      ],
      "zygotes": [
        {"pid": int, "pins": [str], "python": str, "forks": int, "preloaded": [str],
         "age_seconds": float, "rss_bytes": int | null}
      ],
      "no_zygote": {"<pins>": "why workers of this pin set are spawned, not forked"},
      "cell_zygotes": [                 # kept by `run --matrix` (any store), daemon or not
        {"pid": int, "socket": str, "rss_bytes": int | null}
      ]
    }

Worker counters (``clients``, ``calls``, ``idle_seconds``) come from the daemon's last
poll of the worker, at most one poll interval old (a quarter of the idle timeout,
between 0.05 and 1 s).
"""

from __future__ import annotations

import json

from omnipkg_hook.store import find_store
from omnipkg_hook.workers.client import DaemonClient, daemon_pid, start_daemon
from omnipkg_hook.workers.daemon import DaemonConfig
from omnipkg_hook.workers.runtime import Paths

from ..text import plural

__all__ = ["register", "run"]

NOT_RUNNING = 3


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "daemon",
        help="start, stop or inspect the worker daemon",
        description="The daemon keeps warm workers (per pin set and interpreter) for "
        "DaemonProxy; the library starts it on demand.",
    )
    actions = p.add_subparsers(dest="daemon_action", metavar="ACTION", required=True)
    common = []
    for name, text in (("start", "start the daemon (detached)"), ("stop", "stop the daemon and its workers"),
                       ("status", "show the daemon and its workers")):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("--store", help="the store whose daemon this is (default: as pip-omni finds it)")
        a.add_argument("-v", "--verbose", action="count", default=0)
        a.add_argument("--json", action="store_true", help="machine-readable output (shape in the docs)")
        a.set_defaults(func=run)
        common.append(a)
    start, _stop, status = common
    start.add_argument("--foreground", action="store_true", help="run in this terminal until Ctrl-C")
    start.add_argument("--idle-timeout", type=float, help="seconds before an idle worker exits (default 600)")
    start.add_argument("--exit-timeout", type=float,
                       help="seconds with no worker and no client before the daemon exits (default 300; 0: never)")
    start.add_argument("--max-workers", type=int, help="warm workers kept at most (default 8)")
    start.add_argument("--no-zygotes", action="store_true", help="spawn every worker instead of forking it")


def run(args) -> int:
    paths = Paths(args.store or find_store()).prepare()
    action = args.daemon_action
    if action == "start":
        return _start(paths, args)
    if action == "stop":
        return _stop(paths, args.json)
    return _status(paths, args.json)


def _config(args) -> DaemonConfig:
    overrides = {}
    if args.idle_timeout is not None:
        overrides["idle_timeout"] = args.idle_timeout
    if args.exit_timeout is not None:
        overrides["exit_timeout"] = args.exit_timeout
    if args.max_workers is not None:
        overrides["max_workers"] = args.max_workers
    if args.no_zygotes:
        overrides["zygotes"] = False
    return DaemonConfig.from_env(**overrides)


def _start(paths: Paths, args) -> int:
    pid = daemon_pid(paths)
    if pid is not None:
        if args.json:
            print(json.dumps({"pid": pid, "started": False, "store": paths.store, "socket": paths.socket,
                              "log": paths.log}))
        else:
            print(f"the daemon is already running (pid {pid}) for store {paths.store}")
        return 0
    config = _config(args)
    if args.foreground:
        from omnipkg_hook.workers import daemon

        argv = ["--store", paths.store, "--runtime-base", paths.base, *config.to_argv()]
        return daemon.main(argv)
    pid = start_daemon(paths, config)
    if args.json:
        print(json.dumps({"pid": pid, "started": True, "store": paths.store, "socket": paths.socket,
                          "log": paths.log}))
        return 0
    print(f"started the daemon (pid {pid}) for store {paths.store}; socket {paths.socket}, log {paths.log}")
    return 0


def _stop(paths: Paths, as_json: bool) -> int:
    from ..run import cellfork

    pid = daemon_pid(paths)
    if pid is not None:
        DaemonClient(paths.store, runtime_dir=paths.base, start=False).stop()
    cells = cellfork.stop_kept(paths.base)  # the cell zygotes `run --matrix` keeps (any store)
    if as_json:
        print(json.dumps({"pid": pid, "stopped": pid is not None, "store": paths.store, "cell_zygotes": cells}))
        return 0
    if pid is None:
        print(f"no daemon is running for store {paths.store}")
    else:
        print(f"stopped the daemon (pid {pid}) for store {paths.store}")
    if cells:
        print(f"stopped {plural(len(cells), 'kept cell zygote')} (pids {', '.join(map(str, cells))})")
    return 0


def _cell_zygotes(base: str) -> list[dict]:
    """The cell zygotes ``run --matrix`` keeps under the runtime directory ``base`` (any store)."""
    from omnipkg_hook.workers.runtime import read_rss

    from ..run import cellfork

    return [{"pid": pid, "socket": sock, "rss_bytes": read_rss(pid)} for pid, sock in cellfork.kept_zygotes(base)]


def _print_cells(cells: list[dict]) -> None:
    for c in cells:
        print(f"kept cell zygote pid {c['pid']} ({_size(c['rss_bytes'])}), socket {c['socket']}; "
              "`pip-omni daemon stop` stops it")


def _status(paths: Paths, as_json: bool) -> int:
    cells = _cell_zygotes(paths.base)
    if daemon_pid(paths) is None:
        if as_json:
            print(json.dumps({"running": False, "store": paths.store, "socket": paths.socket, "cell_zygotes": cells}))
        else:
            print(f"no daemon is running for store {paths.store}")
            _print_cells(cells)
        return NOT_RUNNING
    client = DaemonClient(paths.store, runtime_dir=paths.base, start=False)
    try:
        status = client.status()
    finally:
        client.close()
    status["cell_zygotes"] = cells
    if as_json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"daemon pid {status['pid']} for store {status['store']}: up {_secs(status['uptime_seconds'])}, "
        f"{plural(status['clients'], 'client')}, {_size(status['rss_bytes'])}; "
        f"idle timeout {_secs(status['config']['idle_timeout'])}, at most {plural(status['config']['max_workers'], 'worker')}"
    )
    rows = [("ID", "PID", "STATE", "VIA", "SESSIONS", "CALLS", "IDLE", "RSS", "PYTHON", "PINS")]
    for w in status["workers"]:
        rows.append((
            w["id"], str(w["pid"]), w["state"], w["via"], str(w["clients"]), str(w["calls"]),
            "-" if w["idle_seconds"] is None else _secs(w["idle_seconds"]), _size(w["rss_bytes"]),
            w["python_version"] or "?", ", ".join(w["pins"]) or "(no pins)",
        ))
    if len(rows) == 1:
        print("no workers")
    else:
        _table(rows)
    for z in status["zygotes"]:
        print(
            f"zygote pid {z['pid']} for {', '.join(z['pins']) or '(no pins)'}: {plural(z['forks'], 'fork')}, "
            f"{_size(z['rss_bytes'])}, preloaded {', '.join(z['preloaded']) or 'nothing'}"
        )
    for pins, reason in status["no_zygote"].items():
        print(f"no zygote for {pins}: {reason}")
    _print_cells(cells)
    return 0


def _table(rows) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _secs(value: float) -> str:
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.0f}m"
    return f"{value / 3600:.1f}h"


def _size(value) -> str:
    if value is None:
        return "?"
    return f"{value / 1e6:.0f} MB"
