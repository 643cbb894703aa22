"""``pip-omni run``: one script across several interpreters, with pins -- the multiverse run.

    pip-omni run --python 3.9,3.11,3.12 --pin rich==13.4.2 -- script.py [args]
    pip-omni run --python 3.9,3.12 -c "import rich; print(rich.__file__)"
    pip-omni run --python 3.9,3.12 -m pytest -q

Before anything runs, every pin is checked for every interpreter: a missing bubble is
reported with the command that makes it (``--install`` makes it first). Each run's
output is streamed with a ``[3.9]`` prefix; the end is one table (interpreter, exit
code, wall time) and the exit status is non-zero if any run failed. Interpreters need
no pip-omni of their own: the hook is loaded from this installation by file location.
``--json`` prints the table as JSON on stdout (the runs' output then goes to stderr): ``[{"python": str, "version": str, "path": str,
"exit": int, "seconds": float}]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store, normalize
from omnipkg_hook.workers import spawn

from .. import bubbles, environment, interpreters

__all__ = ["register", "run"]


def register(sub) -> None:
    p = sub.add_parser("run", help="run a script under several interpreters with pins (the multiverse run)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--python", default=None, metavar="V1,V2,...",
                   help="interpreters: adopted versions or paths, comma-separated (default: the default one)")
    p.add_argument("--pin", action="append", default=[], metavar="REQ", help="a pin for every run (repeatable)")
    p.add_argument("--install", action="store_true", help="make missing bubbles first")
    p.add_argument("-f", "--find-links", action="append", default=[], metavar="URL",
                   help="for --install: as pip's --find-links")
    p.add_argument("-i", "--index-url", metavar="URL", help="for --install: as pip's --index-url")
    p.add_argument("--no-index", action="store_true", help="for --install: as pip's --no-index")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("-c", dest="code", metavar="CODE", help="program passed in as a string")
    p.add_argument("-m", dest="module", metavar="MODULE", help="run a library module as a script")
    p.add_argument("target", nargs=argparse.REMAINDER, help="script.py [args] (after --)")
    p.set_defaults(func=run)


def _missing(store: Store, interpreter, pins: list[str]) -> list[str]:
    """Pins that neither a bubble nor the interpreter's main environment satisfies."""
    main = None
    out = []
    for text in pins:
        req = bubbles.parse_requirement(text)
        if bubbles.find_bubble(store, req, interpreter) is not None:
            continue
        if main is None:
            main = environment.installed(interpreter, store)
        have = main.get(normalize(req.name))
        if have is not None and req.specifier.contains(have, prereleases=True):
            continue
        out.append(text)
    return out


def _pump(stream, prefix: str, sink) -> None:
    for line in iter(stream.readline, ""):
        sink.write(f"{prefix} {line}" if line.endswith("\n") else f"{prefix} {line}\n")
        sink.flush()
    stream.close()


def run(args) -> int:
    store = Store()
    target = list(args.target)
    if target[:1] == ["--"]:
        target = target[1:]
    if sum(x is not None for x in (args.code, args.module)) + bool(target and not (args.code or args.module)) == 0:
        raise OmnipkgError("nothing to run", "give a script (`-- script.py`), `-c CODE` or `-m MODULE`")
    if args.code is not None:
        what = ["-c", args.code, *target]
    elif args.module is not None:
        what = ["-m", args.module, *target]
    else:
        what = target
    specs = [s.strip() for s in (args.python or "").split(",") if s.strip()] or [None]
    pythons = [interpreters.resolve_python(store, s) for s in specs]
    for text in args.pin:
        bubbles.parse_requirement(text)  # bad input: stop before anything runs

    missing = {p.version: (p, _missing(store, p, args.pin)) for p in pythons}
    todo = {v: m for v, (p, m) in missing.items() if m}
    if todo and not args.install:
        for version, reqs in todo.items():
            py = missing[version][0]
            for r in reqs:
                print(f"pip-omni: missing for Python {version}: {r} -> "
                      f"pip-omni install --python {py.executable} '{r}'", file=sys.stderr)
        raise OmnipkgError("missing bubbles; nothing was run", "make them with the commands above, or add --install")
    index = [x for f in args.find_links for x in ("-f", f)]
    index += ["-i", args.index_url] if args.index_url else []
    index += ["--no-index"] if args.no_index else []
    for version, reqs in todo.items():
        py = missing[version][0]
        # Bubbles, never main: a run must not install into another interpreter's environment.
        proc = subprocess.run([sys.executable, "-m", "omnipkg_pip", "install", "--bubble", "--python",
                               py.executable, "-q", *index, *reqs])
        if proc.returncode != 0:
            raise OmnipkgError(f"could not make the bubbles {reqs} for Python {version}")

    pins = ",".join(args.pin)
    rows = []
    env = spawn.worker_env(dict(__import__("os").environ), store.root)
    for py in pythons:
        label = ".".join(py.version.split(".")[:2])
        cmd = spawn.command(py.executable, "runner", ["--pins", pins, "--", *what])
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                stdin=subprocess.DEVNULL)
        out_sink = sys.stderr if args.json else sys.stdout  # --json: stdout is the table only
        threads = [threading.Thread(target=_pump, args=(proc.stdout, f"[{label}]", out_sink)),
                   threading.Thread(target=_pump, args=(proc.stderr, f"[{label}]", sys.stderr))]
        for t in threads:
            t.start()
        code = proc.wait()
        for t in threads:
            t.join()
        rows.append({"python": label, "version": py.version, "path": py.executable, "exit": code,
                     "seconds": round(time.perf_counter() - t0, 3)})
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        print()
        print(f"{'Python':<8} {'Exit':>4} {'Time':>8}  Path")
        for r in rows:
            mark = "" if r["exit"] == 0 else "  FAILED"
            print(f"{r['version']:<8} {r['exit']:>4} {r['seconds']:>7.2f}s  {r['path']}{mark}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1
