#!/usr/bin/env python3
"""Benchmark the import hook against baselines measured in the same run.

    python benchmarks/bench_hook.py [--reps 30] [--store PATH] [--generated] [--quick]
                                    [--omnipkg-python PY] [--only ROWS] [--json]

What is measured (DESIGN.md, "Budgets"), each as a ratio or difference against a
baseline measured in the same run, interleaved, in fresh subprocesses where imports
are timed, as CPU time (``time.process_time()`` in the child, the kernel's user+system
accounting for whole processes): it does not count time spent waiting for a busy CPU,
which is what makes figures of a few percent comparable on a shared machine:

  1. unpinned imports with the finder installed (and routes set) vs no finder, in the
     same venv with the same modules preloaded: ~40 stdlib modules. Budget <= 1.005x.
     Also the finder's own cost per lookup, measured in-process, times the number of
     lookups those imports make: the overhead this noise-free figure predicts.
  2. a pinned import of a largish module from the store vs the same files in a plain
     site-packages directory (a .pth entry after the stdlib, as site-packages is),
     byte-compiled beforehand with compileall (timestamp .pyc, as pip does): real
     ``rich.console`` when the store has two rich bubbles for this interpreter, else a
     generated package of 150 modules. Budget <= 1.02x.
  3. ``python -c pass`` in a venv with the package installed (its .pth line), without
     and with one pin, vs the same venv without the package. Budget +0.2 ms / +1 ms.
     Twice: in bare venvs (no other .pth: Python's cost of processing any .pth file,
     ~0.1 ms, and of the first import from site-packages is counted as ours) and in
     venvs made with pip (where 3.11's setuptools already has a .pth).
  4. warm ``importlib.metadata.version()`` of a pinned name vs the same distribution in
     plain site-packages. Budget <= 0.3 ms.
  5. one ``using()`` switch between two stored versions: enter, import, exit; next to
     omnipkg's ``omnipkgLoader`` doing the same in a throwaway venv (``--omnipkg-python``;
     that venv needs omnipkg's own bubbles of the same two rich versions). Beside it, enter and
     exit alone, with and without ``using()``'s resolution cache (emptied before every other
     pair of enters, in the same process): what the cache saves.

``--only switch`` (or any of unpinned, pinned, startup, metadata, switch) runs those rows only.

The venvs are made with ``venv --without-pip``; "installed" means the ``omnipkg_hook``
package and ``omnipkg_hook.pth`` copied into site-packages (what the wheel installs)
and compiled. This machine may set PYTHONDONTWRITEBYTECODE=1: every tree imported from
is compiled before timing, so no variant compiles at import time. Stdlib only apart
from building the generated bubbles (omnipkg_pip, with this interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

ROWS = ("unpinned", "pinned", "startup", "metadata", "switch")  # --only
BUDGETS = {"unpinned": 1.005, "pinned": 1.02, "pass_unpinned_ms": 0.2, "pass_pin_ms": 1.0, "metadata_ms": 0.3}

STDLIB = (
    "decimal fractions statistics email.parser email.message email.utils http.client urllib.request "
    "xml.dom.minidom xml.etree.ElementTree argparse csv logging tarfile zipfile ipaddress uuid smtplib "
    "calendar difflib pprint textwrap html.parser configparser plistlib gettext string shlex "
    "dataclasses enum typing queue sched selectors ssl socketserver wave colorsys fnmatch glob"
).split()

_ENV_STRIP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "OMNIPKG_PINS", "OMNIPKG_STRICT", "VIRTUAL_ENV")


def _stats(values: list[float]) -> dict:
    values = sorted(values)
    out = {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values)}
    if len(values) >= 4:
        q = statistics.quantiles(values, n=4)
        out["iqr"] = q[2] - q[0]
    return out


def _brief(values: list[float]) -> str:
    """Median and inter-quartile range, in ms."""
    q = statistics.quantiles(values, n=4)
    return f"{statistics.median(values):.3f} ms (IQR {q[2] - q[0]:.3f}, n={len(values)})"


def _check_switched(who: str, served: dict) -> None:
    """Each version was served from one place of its own: the switch really switched (a loader
    that kept serving the first version imported would otherwise look cheap)."""
    if len(served) != 2 or any(len(f) != 1 for f in served.values()) or len({f[0] for f in served.values()}) != 2:
        raise ValueError(f"{who} did not switch versions: served {served!r}")


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.work = tempfile.mkdtemp(prefix="pip-omni-bench-hook-")
        self.env = {k: v for k, v in os.environ.items() if k not in _ENV_STRIP}
        self.rows: list[dict] = []

    # -- set-up ---------------------------------------------------------------------------

    def venv(self, name: str, hooked: bool, extra_pth: str | None = None, pip: bool = False) -> str:
        path = os.path.join(self.work, name)
        subprocess.run([sys.executable, "-m", "venv", *([] if pip else ["--without-pip"]), path], check=True)
        python = os.path.join(path, "bin", "python")
        site = subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
        if hooked:
            shutil.copytree(os.path.join(REPO, "omnipkg_hook"), os.path.join(site, "omnipkg_hook"),
                            ignore=shutil.ignore_patterns("__pycache__", "workers"))  # fmt: skip
            shutil.copy(os.path.join(REPO, "omnipkg_hook", "data", "omnipkg_hook.pth"), site)
            subprocess.run([python, "-m", "compileall", "-q", os.path.join(site, "omnipkg_hook")], check=True)
        if extra_pth:
            with open(os.path.join(site, "bench_target.pth"), "w") as f:
                f.write(extra_pth + "\n")
        return python

    def subject(self) -> None:
        """Two stored versions of something largish: real rich if stored, else a generated package."""
        from omnipkg_hook.store import Store, interpreter_key

        store = Store(self.args.store) if self.args.store else Store()
        versions = sorted(store.bubble_versions("rich", interpreter_key()), key=lambda v: tuple(map(int, v.split("."))))
        if len(versions) >= 2 and not self.args.generated:
            self.store, self.dist, self.module, self.versions = store, "rich", "rich.console", versions[-2:]
            self.kind = f"real rich {self.versions[0]} / {self.versions[1]} (rich.console)"
            return
        self.store = Store(os.path.join(self.work, "store"))
        self.dist, self.module, self.versions = "omtbench", "omtbench.app", ["1.0", "2.0"]
        self.kind = "generated package of 150 modules (omtbench.app)"
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from wheelmaker import make_wheel

        from omnipkg_pip.writers.bubbles import bubble_from_wheels

        for version in self.versions:
            files = {"omtbench/__init__.py": f"VERSION = {version!r}\n"}
            names = [f"m{i:03d}" for i in range(150)]
            for i, name in enumerate(names):
                body = [f"from . import {names[i - 1]}\n" if i else "", "import os, sys\n"]
                for j in range(8):
                    body.append(f"class C{j}:\n    x = {j}\n    def f(self, a, b=2):\n        return a * b + {j}\n\n")
                    body.append(f"def g{j}(x):\n    return [x * k for k in range({j} + 2)]\n\n")
                files[f"omtbench/{name}.py"] = "".join(body)
            files["omtbench/app.py"] = "".join(f"from . import {n}\n" for n in names)
            wheel = make_wheel(os.path.join(self.work, "wheels"), "omtbench", version, files)
            bubble_from_wheels(self.store, [wheel], f"omtbench=={version}")

    def target(self) -> str:
        """The pinned version's whole closure, copied into a plain directory and compiled."""
        from omnipkg_hook.store import interpreter_key, read_manifest

        target = os.path.join(self.work, "target")
        os.makedirs(target)
        bubble = self.store.load_bubble(self.dist, self.versions[-1], interpreter_key())
        for entry in bubble["dists"].values():
            src = self.store.abspath(entry["path"])
            for f in read_manifest(os.path.join(src, "omnipkg-dist.json"))["files"]:
                dest = os.path.join(target, *f["path"].split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copyfile(os.path.join(src, *f["path"].split("/")), dest)
        return target

    # -- running -----------------------------------------------------------------------------

    def run(self, python: str, code: str = "pass", env: dict | None = None) -> str:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env={**self.env, **(env or {})})
        if out.returncode != 0:
            raise SystemExit(f"benchmark child failed:\n{out.stderr}")
        return out.stdout

    def pins(self, version: str) -> dict:
        return {"OMNIPKG_PINS": f"{self.dist}=={version}", "OMNIPKG_STORE": self.store.root}

    def add(self, what, baseline, measured, budget, unit, kind, note=""):
        if kind == "ratio":
            value = measured["median"] / baseline["median"]
            ok = budget is None or value <= budget
            shown = f"{value:.4f}x"
        else:
            value = measured["median"] - (baseline["median"] if baseline else 0)
            ok = budget is None or value <= budget
            shown = f"{value:+.3f} {unit}" if baseline else f"{value:.3f} {unit}"
        self.rows.append({"what": what, "baseline": baseline, "measured": measured, "value": value,
                          "shown": shown, "budget": budget, "unit": unit, "kind": kind, "ok": ok, "note": note})  # fmt: skip

    # -- the measurements --------------------------------------------------------------------

    def unpinned(self, hooked: str) -> None:
        imports = "\n".join(f"import {m}" for m in STDLIB)
        code = (
            "import sys, time, omnipkg_hook.pins as p\n"
            "{setup}\n"
            "t = time.process_time()\n" + imports + "\nprint((time.process_time() - t) * 1e3)\n"
        )
        with_finder = code.format(setup=f"p.pin({self.dist + '==' + self.versions[-1]!r})")
        without = code.format(setup="")
        env = {"OMNIPKG_STORE": self.store.root}
        ratios, base, meas = [], [], []
        for _ in range(self.args.reps):
            b = float(self.run(hooked, without, env))
            m = float(self.run(hooked, with_finder, env))
            base.append(b)
            meas.append(m)
            ratios.append(m / b)
        # noise-free estimate: the finder's cost per lookup times the lookups those imports make
        probe = (
            "import sys, time, omnipkg_hook.pins as p, omnipkg_hook.finder as f\n"
            f"p.pin({self.dist + '==' + self.versions[-1]!r})\n"
            "calls = [0]\nreal = f.FINDER.find_spec\n"
            "def counting(n, path=None, target=None):\n    calls[0] += 1\n    return real(n, path, target)\n"
            "f.FINDER.find_spec = counting\n"
            "t = time.process_time()\n" + imports + "\nelapsed = time.process_time() - t\n"
            "f.FINDER.find_spec = real\n"
            "names = ['decimal.x', 'email.parser', 'zzz_not_routed'] * 100000\n"
            "t = time.process_time()\n"
            "for n in names: real(n, None)\n"
            "per = (time.process_time() - t) / len(names)\n"
            "print(calls[0], per * 1e9, calls[0] * per / elapsed)\n"
        )
        calls, ns, share = self.run(hooked, probe, env).split()
        self.add("unpinned imports, finder vs none", _stats(base), _stats(meas), BUDGETS["unpinned"], "ms", "ratio",
                 f"paired median {statistics.median(ratios):.4f}x; predicted {1 + float(share):.5f}x "
                 f"({calls} finder calls x {float(ns):.0f} ns)")  # fmt: skip

    def pinned(self, hooked: str, baseline: str) -> None:
        code = f"import time\nt = time.process_time()\nimport {self.module}\nprint((time.process_time() - t) * 1e3)\n"
        check = f"import {self.module} as m; print(m.__file__)"
        assert self.store.root in self.run(hooked, check, self.pins(self.versions[-1])), "not served from the store"
        assert "target" in self.run(baseline, check), "baseline not served from the target dir"
        base, meas, ratios = [], [], []
        for _ in range(self.args.reps):
            b = float(self.run(baseline, code))
            m = float(self.run(hooked, code, self.pins(self.versions[-1])))
            base.append(b)
            meas.append(m)
            ratios.append(m / b)
        self.add(f"pinned import of {self.module}, store vs site-packages", _stats(base), _stats(meas),
                 BUDGETS["pinned"], "ms", "ratio", f"paired median {statistics.median(ratios):.4f}x")  # fmt: skip

    def startup(self, plain: str, hooked: str, label: str = "") -> None:
        def cpu(python, env=None):
            """CPU time (user + system) of one ``python -c pass``, from the kernel's accounting."""
            pid = os.posix_spawn(python, [python, "-c", "pass"], {**self.env, **(env or {})})
            _, status, usage = os.wait4(pid, 0)
            if status != 0:
                raise SystemExit(f"{python} -c pass failed")
            return (usage.ru_utime + usage.ru_stime) * 1e3

        for python in (plain, hooked):  # warm the page cache and the start-up cache
            cpu(python)
        cpu(hooked, self.pins(self.versions[-1]))
        base, unpinned, pinned = [], [], []
        for _ in range(self.args.reps * 3):
            base.append(cpu(plain))
            unpinned.append(cpu(hooked))
            pinned.append(cpu(hooked, self.pins(self.versions[-1])))
        self.add(f"python -c pass{label}, installed, no pins", _stats(base), _stats(unpinned),
                 BUDGETS["pass_unpinned_ms"], "ms", "delta", "CPU time (user+sys) of the process")  # fmt: skip
        self.add(f"python -c pass{label}, installed, one pin", _stats(base), _stats(pinned), BUDGETS["pass_pin_ms"],
                 "ms", "delta", "CPU time; the start-up cache is warm (the first start-up resolves: see docs)")  # fmt: skip

    def metadata(self, hooked: str, baseline: str) -> None:
        code = (
            "import time, importlib.metadata as md\n{setup}\n"
            f"md.version({self.dist!r})\n"
            "n = 2000\nt = time.process_time()\n"
            f"for _ in range(n): md.version({self.dist!r})\n"
            "print((time.process_time() - t) / n * 1e3)\n"
        )
        pinned = code.format(setup=f"import omnipkg_hook; omnipkg_hook.pin({self.dist + '==' + self.versions[-1]!r})")
        base, meas = [], []
        for _ in range(max(3, self.args.reps // 5)):
            base.append(float(self.run(baseline, code.format(setup=""))))
            meas.append(float(self.run(hooked, pinned, {"OMNIPKG_STORE": self.store.root})))
        self.add("warm importlib.metadata.version(), pinned", None, _stats(meas), BUDGETS["metadata_ms"], "ms",
                 "delta", f"same dist in plain site-packages: {statistics.median(base):.3f} ms")  # fmt: skip

    def switch(self, hooked: str) -> None:
        a, b = self.versions
        code = (
            "import time, omnipkg_hook\n"
            f"a, b, mod = {a!r}, {b!r}, {self.module!r}\n"
            "import importlib\n"
            "full, bare, served = [], [], {}\n"
            "for i in range(12):\n"
            f"    v = a if i % 2 else b\n"
            "    t = time.process_time()\n"
            f"    with omnipkg_hook.using({self.dist!r} + '==' + v):\n"
            "        f = importlib.import_module(mod).__file__\n"
            "    full.append((time.process_time() - t) * 1e3)\n"
            "    served.setdefault(v, set()).add(f)\n"
            # enter/exit alone, and the same with using()'s resolution cache emptied before each
            # enter (what every enter cost before the cache), in blocks of 8 taking turns in one
            # process; a warm block first enters both versions untimed
            "forget = getattr(importlib.import_module('omnipkg_hook.pins'), '_forget_resolved', lambda: None)\n"
            "uncached = []\n"
            "for block in range(12):\n"
            "    cold = block % 2 == 1\n"
            "    for i in range(-2 * (not cold), 8):\n"
            "        if cold: forget()\n"
            "        t = time.process_time()\n"
            f"        with omnipkg_hook.using({self.dist!r} + '==' + (a if i % 2 else b)):\n"
            "            pass\n"
            "        if i >= 0: (uncached if cold else bare).append((time.process_time() - t) * 1e3)\n"
            "import json; print(json.dumps([full[2:], bare[8:], uncached[8:], {k: sorted(x) for k, x in served.items()}]))\n"
        )
        full, bare, uncached, theirs = [], [], [], []
        for _ in range(max(3, self.args.reps // 10)):  # as many processes of each, interleaved
            f, b_, u, served = json.loads(self.run(hooked, code, {"OMNIPKG_STORE": self.store.root}))
            _check_switched("using()", served)
            full += f
            bare += b_
            uncached += u
            if theirs is not None:
                more = self.omnipkg_switch()
                theirs = None if more is None else theirs + more
        theirs = _stats(theirs) if theirs else None
        self.add(f"using() switch, enter + import {self.module} + exit", theirs, _stats(full), None, "ms",
                 "ratio" if theirs else "delta",
                 f"enter/exit without importing: {_brief(bare)}; with the resolution cache emptied before "
                 f"each enter: {_brief(uncached)} ({statistics.median(bare) / statistics.median(uncached):.2f}x); "
                 + ("baseline: omnipkg's omnipkgLoader, same versions, same steps, in its own venv"
                    if theirs else "omnipkg's loader not measured (pass --omnipkg-python)"))  # fmt: skip

    def omnipkg_switch(self) -> list[float] | None:
        """One process of omnipkg 3.x's ``omnipkgLoader`` doing the same switches (ms each), when a
        venv with omnipkg (and its own bubbles of the two versions) is given."""
        python = self.args.omnipkg_python
        if not python or self.dist != "rich":
            return None
        a, b = self.versions
        code = (
            "import contextlib, importlib, io, json, time\n"
            "from omnipkg.loader import omnipkgLoader\n"
            "full, served = [], {}\n"
            "for i in range(12):\n"
            f"    v = {a!r} if i % 2 else {b!r}\n"
            "    t = time.process_time()\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        with omnipkgLoader('rich==' + v, quiet=True):\n"
            f"            f = importlib.import_module({self.module!r}).__file__\n"
            "    full.append((time.process_time() - t) * 1e3)\n"
            "    served.setdefault(v, set()).add(f)\n"
            "print(json.dumps([full[2:], {k: sorted(x) for k, x in served.items()}]))\n"
        )
        # omnipkg reads its configuration from HOME (run this with the HOME its bubbles were made with)
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=self.env)
        if out.returncode != 0:
            print(f"omnipkg baseline failed:\n{out.stderr[-2000:]}", file=sys.stderr)
            return None
        try:
            full, served = json.loads(out.stdout.strip().splitlines()[-1])
            _check_switched("omnipkgLoader", served)
        except (ValueError, IndexError) as e:
            print(f"omnipkg baseline not usable: {e}", file=sys.stderr)
            return None
        return full

    # -- report ------------------------------------------------------------------------------

    def table(self) -> str:
        lines = [f"pip-omni import hook benchmark: Python {sys.version.split()[0]}, {self.args.reps} reps, "
                 f"subject: {self.kind}", ""]  # fmt: skip
        head = f"{'what':52} {'baseline (median, IQR)':24} {'measured (median, IQR)':24} {'result':>12} {'budget':>9}  ok"
        lines += [head, "-" * len(head)]
        for r in self.rows:
            def fmt(s):
                return "-" if s is None else f"{s['median']:.3f} ms ({s.get('iqr', s['max'] - s['min']):.3f})"

            budget = "-" if r["budget"] is None else (f"{r['budget']}x" if r["kind"] == "ratio" else f"{r['budget']} ms")
            lines.append(f"{r['what'][:52]:52} {fmt(r['baseline']):24} {fmt(r['measured']):24} {r['shown']:>12} "
                         f"{budget:>9}  {'yes' if r['ok'] else 'NO'}")  # fmt: skip
            if r["note"]:
                lines.append(f"    {r['note']}")
        return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30, help="repetitions (fresh subprocesses) per variant")
    parser.add_argument("--store", help="store to look for rich bubbles in (default: OMNIPKG_STORE or the default)")
    parser.add_argument("--generated", action="store_true", help="use the generated package even if rich is stored")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--quick", action="store_true", help="skip the start-up rows in venvs made with pip")
    parser.add_argument("--only", default=",".join(ROWS), metavar="ROWS",
                        help=f"comma-separated rows to run, of: {','.join(ROWS)} (default: all)")
    parser.add_argument("--omnipkg-python", metavar="PY",
                        help="python of a throwaway venv with omnipkg and its bubbles of the two rich versions")
    args = parser.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    if only - set(ROWS):
        parser.error(f"--only: unknown rows {sorted(only - set(ROWS))} (of {','.join(ROWS)})")
    bench = Bench(args)
    try:
        bench.subject()
        hooked = bench.venv("hooked", hooked=True)
        if only & {"pinned", "metadata"}:
            target = bench.target()
            plain = bench.venv("plain", hooked=False, extra_pth=target)
            subprocess.run([plain, "-m", "compileall", "-q", target], check=True)  # timestamp .pyc, as pip writes
        if "unpinned" in only:
            bench.unpinned(hooked)
        if "pinned" in only:
            bench.pinned(hooked, plain)
        if "startup" in only:
            bench.startup(bench.venv("bare", hooked=False), hooked, " (bare venv)")
            if not args.quick:  # the usual venv: pip (and setuptools' .pth before 3.12) already there
                bench.startup(bench.venv("std", hooked=False, pip=True),
                              bench.venv("std-hooked", hooked=True, pip=True), " (venv with pip)")  # fmt: skip
        if "metadata" in only:
            bench.metadata(hooked, plain)
        if "switch" in only:
            bench.switch(hooked)
    finally:
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    if args.json:
        print(json.dumps(bench.rows, indent=1))
    else:
        print(bench.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
