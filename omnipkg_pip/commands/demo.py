"""``pip-omni demo``: rich version switching, end to end, non-interactively with ``--yes``.

1. main gets ``rich==13.7.1`` (asked first, unless ``--yes``);
2. ``pip-omni install rich==13.5.3`` and ``rich==13.4.2`` make two bubbles;
   main is hashed before and after and must be byte-identical;
3. main's rich is verified in this process;
4. each bubble is verified twice: a fresh interpreter with ``OMNIPKG_PINS``
   (the start-up hook), and a warm daemon worker (``DaemonProxy``), with the
   version, the file it was imported from and each call's latency;
5. auto-heal (:mod:`._demo_heal`): one file of the rich 13.4.2 dist is deleted and
   another edited in place through its hard link; the next ``pin()`` detects and
   repairs, ``pip-omni doctor`` agrees;
6. a results table; then what the demo made is removed (``--keep`` keeps the bubbles).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store

from .. import environment
from ..pythons import interp
from . import _demo_heal

__all__ = ["register", "run"]

MAIN_VERSION = "13.7.1"
BUBBLES = ("13.5.3", "13.4.2")
_PROBE = "import importlib.metadata as m, rich; print(m.version('rich')); print(rich.__file__)"


def register(sub) -> None:
    p = sub.add_parser("demo", help="the rich version-switching demo, end to end")
    p.add_argument("-y", "--yes", action="store_true",
                   help=f"install rich=={MAIN_VERSION} into this environment without asking")
    p.add_argument("--keep", action="store_true", help="keep the demo's bubbles afterwards")
    p.set_defaults(func=run)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "omnipkg_pip", *args], text=True, capture_output=True)
    if proc.returncode != 0:
        raise OmnipkgError(f"`pip-omni {' '.join(args)}` failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def _digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                h.update(p.encode())
                try:
                    with open(p, "rb") as fh:
                        h.update(hashlib.sha256(fh.read()).digest())
                except OSError:
                    h.update(b"?")
    return h.hexdigest()


def run(args) -> int:
    interpreter = interp.current()
    store = Store()
    _say(f"pip-omni demo: rich version switching (Python {interpreter.version}, store {store.root})")
    have = environment.installed(interpreter, store).get("rich")
    if have != MAIN_VERSION:
        if not args.yes:
            if not sys.stdin.isatty():
                raise OmnipkgError(f"the demo installs rich=={MAIN_VERSION} into {sys.prefix!r}",
                                   "run `pip-omni demo --yes` to agree")
            answer = input(f"Install rich=={MAIN_VERSION} into {sys.prefix}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                _say("nothing changed")
                return 1
        _say(f"\n[1] main environment: pip install rich=={MAIN_VERSION} (was {have or 'absent'})")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"rich=={MAIN_VERSION}"], check=True)
    else:
        _say(f"\n[1] main environment already has rich {MAIN_VERSION}")

    existed = {v for v in BUBBLES if store.bubble_versions("rich", interpreter.key).count(v)}
    watched = [interpreter.purelib, os.path.join(sys.prefix, "bin")]
    before = _digest(watched)
    _say(f"\n[2] pip-omni install rich=={BUBBLES[0]} rich=={BUBBLES[1]}")
    for version in BUBBLES:
        t0 = time.perf_counter()
        rows = json.loads(_cli("install", f"rich=={version}", "--json").stdout)
        row = rows[0]
        _say(f"    rich {version}: {row['where']} {row['action']} ({row['reason']}) "
             f"in {time.perf_counter() - t0:.2f} s")
    same = _digest(watched) == before
    _say(f"    main environment byte-identical after both installs: {'yes' if same else 'NO'}")

    results = []
    _say("\n[3] main, in this process")
    import importlib.metadata

    import rich

    results.append(("main (this process)", importlib.metadata.version("rich"), rich.__file__, None))
    _row(results[-1])

    _say("\n[4] bubbles, through OMNIPKG_PINS in a fresh interpreter, and through a daemon worker")
    for version in BUBBLES:
        env = {**os.environ, "OMNIPKG_PINS": f"rich=={version}", "OMNIPKG_STORE": store.root}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        if out.returncode != 0:
            raise OmnipkgError(f"OMNIPKG_PINS=rich=={version} failed: {out.stderr.strip()[-300:]}")
        got, path = out.stdout.split()
        results.append((f"OMNIPKG_PINS=rich=={version}", got, path, elapsed))
        _row(results[-1])
    for row in _daemon_checks(store):
        results.append(row)
        _row(row)

    _say(f"\n[5] auto-heal: damage the rich {_demo_heal.VERSION} bubble, then pin it again")
    quarantine = _demo_heal.quarantine_entries(store)
    if _demo_heal.VERSION in existed:
        healed = [("auto-heal", False, f"skipped: the rich {_demo_heal.VERSION} bubble was yours before the demo, "
                   "and the demo damages only what it made itself")]
        _say(f"    {healed[0][2]}")
    else:
        healed = _demo_heal.run(store, interpreter, _say)

    _say("\n[6] results")
    width = max(len(r[0]) for r in results)
    ok = same
    for row in results:
        ok = _row(row, width) and ok
    for label, good, detail in healed:
        ok = ok and good
        _say(f"  {'ok ' if good else 'BAD'} {label.ljust(width)}  {detail}")

    if not args.keep:
        for version in BUBBLES:
            if version not in existed:
                _cli("uninstall", f"rich=={version}")
        _cli("gc")
        removed = _demo_heal.remove_new_quarantine(store, quarantine)
        _say("\ncleaned up the demo's bubbles (pip-omni uninstall + gc)"
             + (f" and the {removed} quarantine entr{'y' if removed == 1 else 'ies'} its damage left" if removed else "")
             + "; --keep keeps the bubbles")
    _say("\ndemo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def _row(row, width: int = 0) -> bool:
    """Print one verified row; whether it is right."""
    label, got, path, elapsed = row
    expected = MAIN_VERSION if label.startswith("main") else label.rsplit("==", 1)[1].split()[0]
    good = got == expected and (label.startswith("main") or path.startswith(Store().root))
    timing = f"{elapsed * 1e3:9.3f} ms" if elapsed is not None else " " * 12
    _say(f"  {'ok ' if good else 'BAD'} {label.ljust(width)}  rich {got:<7} {timing}  {path}")
    return good


def _daemon_checks(store: Store) -> list:
    from omnipkg_hook.workers import DaemonClient, DaemonProxy

    rows = []
    was_running = subprocess.run([sys.executable, "-m", "omnipkg_pip", "daemon", "status"],
                                 capture_output=True).returncode == 0
    client = DaemonClient()
    try:
        for version in BUBBLES:
            proxy = DaemonProxy(client, f"rich=={version}")
            t0 = time.perf_counter()
            first = proxy.execute(_PROBE)
            cold = time.perf_counter() - t0
            got, path = first.stdout.split()
            rows.append((f"daemon worker rich=={version} (first)", got, path, cold))
            warm = proxy.execute("import importlib.metadata as m; m.version('rich')")
            times = []
            for _ in range(200):  # a warm call: the median of many trivial round trips
                t0 = time.perf_counter()
                proxy.execute("x = 1 + 1")
                times.append(time.perf_counter() - t0)
            times.sort()
            rows.append((f"daemon worker rich=={version} (warm, median of 200)", warm.value, path,
                         times[len(times) // 2]))
    finally:
        if not was_running:  # leave the machine as we found it
            client.stop(timeout=10)
        client.close()
    return rows
