#!/usr/bin/env python3
"""Benchmark ``pip-omni install`` against ``pip install --target``, as a user meets it.

Measures, for ``rich==13.4.2`` with its dependencies, in one throwaway venv whose
main environment has ``rich==13.7.1`` (so the install takes the bubble path), each
figure of issue 13's table as a ratio against its baseline measured in the same run,
interleaved, paired per repetition:

  (a) a bubble whose dists are all stored: ``pip-omni install rich==13.4.2`` after
      ``pip-omni uninstall rich==13.4.2`` (dists still stored; no pip, no network),
      as the whole command and as the in-process ``bubbles.bubble_from_store`` call,
      vs ``uv pip install --offline --target DIR`` (uv's cache warm). Goal <= 1.0x. Also
      ``python -c 'import re, json'``: what any pip-made console script that reads JSON
      costs before its own code (the wrapper imports ``re``), which uv does not pay.
  (b) a cold bubble (empty store, pip's HTTP cache warm) vs ``pip install --target
      DIR`` of the same set (goal <= 0.5x); also vs ``uv pip install --target DIR``
      (empty target, uv's cache warm, online) and ``uv pip install --compile-bytecode
      --target DIR`` (uv writes no .pyc by default, so that is the same work as ours).
  (c) disk used by the store holding the rich 13.4.2 and 13.5.3 bubbles vs two
      ``pip install --target`` trees of the same versions: ``du -sb`` (apparent bytes,
      each hard-linked file once) of the whole store vs both trees. Goal >= 55 % saved.
  (d) CLI start-up: ``pip-omni --version`` and ``pip-omni list`` (wall time) vs
      ``python -c pass``. Goals <= 30 ms / <= 50 ms.
  (e) ``python -c pass`` in the venv (pip-omni installed, so its .pth) with one
      cached pin (``OMNIPKG_PINS=rich==13.4.2``) vs none, CPU time of the process.
      Goal <= +1 ms. Beside it, the same work measured inside the process, less noisy
      on a loaded machine: ``python -S`` then ``site.main()`` (the .pth lines run there)
      timed with ``time.process_time_ns``, with the pin vs without.
  (p) a cold bubble that pip's plan sends to a bubble (a second venv whose main has an older
      pygments and no rich): resolved once against main, then fetched from that plan
      (issue 13 item 4), vs ``pip install --target``.
  plus a phase breakdown of a cold bubble through the API (pip wheel, ingest,
  compile), timed by wrapping functions in the benchmark's own process only.

uv is installed by the benchmark into a throwaway venv of its own (``pip install uv``);
its cache is a directory of the scratch dir. The scratch dir is under ``$TMPDIR``
(``--workdir`` to choose). At the end a Markdown table of the goals is printed, ready
for the README's "Performance" section.

Every figure is the median over ``--reps`` repetitions with min/max (and the
inter-quartile range with 4+ reps). Stdlib only; run it with any Python 3.9+:

    python benchmarks/bench_install.py [--reps 5] [--json] [--only a,b,c,d,e,phases,p] [--no-uv]

It needs the real package index (or a pip configuration that serves these
versions). Both sides run the same interpreter, the same pip, the same pip
configuration and the same pip cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUDGET_STORED_MS = 50.0
BUDGET_STORED_VS_UV = 1.0
BUDGET_COLD_RATIO = 0.5
_BEFORE = {"OMNIPKG_DIRECT_FETCH": "0"}  # the "before" rows: planned files fetched by a pip wheel run
_BEFORE_B = {"OMNIPKG_INDEX_PLAN": "0"}  # (b)'s "before" row: one pip wheel run resolves and fetches
BUDGET_DISK_SAVED = 55.0
BUDGET_VERSION_MS = 30.0
BUDGET_LIST_MS = 50.0
BUDGET_PIN_MS = 1.0

# Variables that would make either side install somewhere else or change what runs.
_STRIP_ENV = (
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT",
    "PIP_USER", "PIP_PYTHON", "PIP_REQUIRE_VIRTUALENV", "OMNIPKG_PINS", "OMNIPKG_STORE",
    "VIRTUAL_ENV", "__PYVENV_LAUNCHER__",
)

# What `pip-omni install` imports before it does anything.
_IMPORTS = "import omnipkg_pip.cli, omnipkg_pip.commands.install"
# What any pip-made console script imports (its wrapper: re) plus reading JSON: the floor of a
# Python command that reads manifests, which uv (one binary) does not pay.
_SCRIPT_FLOOR = "import re, json"

# Run inside the venv with -S: the CPU time of site.main(), where the .pth lines run.
_SITE_MAIN = "import site, time; t = time.process_time_ns(); site.main(); print(time.process_time_ns() - t)"

# Run inside the venv: time bubble_from_store alone (imports and interpreter facts first).
_API_STORED = r"""
import json, sys, time
from packaging.utils import canonicalize_name
from omnipkg_hook.store import Store
from omnipkg_pip import environment
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles
from omnipkg_pip.commands.uninstall import remove_bubble
store = Store()
interpreter = interp.current()
main = environment.installed(interpreter, store)  # as pip-omni install passes it
req = bubbles.parse_requirement(sys.argv[1])
name, version = canonicalize_name(req.name), str(next(iter(req.specifier)).version)
removed = remove_bubble(store, name, version, interpreter.key)
t = time.perf_counter()
manifest = bubbles.bubble_from_store(store, req, interpreter, main)
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "removed": removed,
                  "dists": sorted(manifest["dists"]) if manifest else None}))
"""

# Run inside the venv: a cold bubble made step by step through the API, each step timed.
# The product code is not changed: functions are wrapped in this process only.
_PHASES = r"""
import glob, json, os, resource, shutil, sys, tempfile, time
from omnipkg_hook.store import Store
from omnipkg_pip import environment, pip, progress
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles, bytecode
progress.set_quiet(True)
store = Store()
interpreter = interp.current()
main = environment.installed(interpreter, store)  # as pip-omni install passes it
req = bubbles.parse_requirement(sys.argv[1])
acc = {"run_jobs": 0.0, "compile_staged": 0.0, "ensure_compiled": 0.0, "py_files": 0}
def wrap(mod, fname, key, count_jobs=False):
    orig = getattr(mod, fname, None)
    if orig is None:
        return
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            acc[key] += time.perf_counter() - t
            if count_jobs:
                acc["py_files"] += len(a[1])
    setattr(mod, fname, timed)
wrap(bytecode, "_run_jobs", "run_jobs", count_jobs=True)
wrap(bytecode, "compile_staged", "compile_staged")
wrap(bytecode, "ensure_compiled", "ensure_compiled")
def cpu():  # CPU seconds of this process and its waited-for children (pip, compilers)
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
work = tempfile.mkdtemp(prefix="pip-omni-bench-wheels-")
try:
    t0, c0 = time.perf_counter(), cpu()
    pip.run_pip(interpreter.executable, ["wheel", "--wheel-dir", work, sys.argv[1]], what="fetch wheels")
    t1, c1 = time.perf_counter(), cpu()
    wheels = sorted(glob.glob(os.path.join(work, "*.whl")))
    manifest = bubbles.bubble_from_wheels(store, wheels, req, interpreter, main)
    t2, c2 = time.perf_counter(), cpu()
finally:
    shutil.rmtree(work, ignore_errors=True)
print(json.dumps({"pip_wheel": t1 - t0, "from_wheels": t2 - t1, "wheels": len(wheels),
                  "pip_wheel_cpu": c1 - c0, "from_wheels_cpu": c2 - c1,
                  "dists": sorted(manifest["dists"]), **acc}))
"""


# -- statistics ---------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    vals = sorted(values)
    out = {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals), "samples": values}
    if len(vals) >= 4:
        q = statistics.quantiles(vals, n=4, method="inclusive")
        out["q1"], out["q3"] = q[0], q[2]
    return out


def fmt_time(s: dict, unit: str) -> str:
    scale, suffix, digits = {"ms": (1e3, " ms", 1), "s": (1.0, " s", 2)}[unit]
    m = f"{s['median'] * scale:.{digits}f}{suffix}"
    spread = f"[{s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f}]"
    if "q1" in s:
        spread += f" IQR {s['q1'] * scale:.{digits}f}-{s['q3'] * scale:.{digits}f}"
    return f"{m} {spread}"


def fmt_ratio(s: dict) -> str:
    out = f"{s['median']:.2f}x [{s['min']:.2f}-{s['max']:.2f}]"
    if "q1" in s:
        out += f" IQR {s['q1']:.2f}-{s['q3']:.2f}"
    return out


# -- disk -----------------------------------------------------------------------------------


def _is_pyc_file(name: str) -> bool:
    # omnipkg-pyc-<tag>.json lists a dist's compiled files: it exists only because of pyc.
    return name.endswith(".pyc") or (name.startswith("omnipkg-pyc-") and name.endswith(".json"))


def tree_usage(paths: list[str]) -> dict:
    """Regular files under ``paths``, each inode once: sizes and allocated blocks, with and without pyc."""
    inodes: dict[tuple[int, int], list] = {}
    for top in paths:
        for root, _dirs, files in os.walk(top):
            for name in files:
                st = os.lstat(os.path.join(root, name))
                if not (st.st_mode & 0o170000 == 0o100000):  # regular files only
                    continue
                entry = inodes.setdefault((st.st_dev, st.st_ino), [st.st_size, st.st_blocks * 512, False, 0])
                entry[2] = entry[2] or _is_pyc_file(name)
                entry[3] += 1
    out = {"files": sum(e[3] for e in inodes.values()), "inodes": len(inodes),
           "bytes": 0, "blocks_bytes": 0, "bytes_no_pyc": 0, "blocks_bytes_no_pyc": 0, "pyc_inodes": 0}
    for size, blocks, is_pyc, _links in inodes.values():
        out["bytes"] += size
        out["blocks_bytes"] += blocks
        if is_pyc:
            out["pyc_inodes"] += 1
        else:
            out["bytes_no_pyc"] += size
            out["blocks_bytes_no_pyc"] += blocks
    out["du_bytes"] = du_bytes(paths)
    out["du_sb"] = du_bytes(paths, apparent=True)
    return out


def du_bytes(paths: list[str], apparent: bool = False) -> int | None:
    """``du -s`` block usage of ``paths`` together (one du run: hard links counted once);
    ``apparent``: ``du -sb``, apparent sizes in bytes (directories count their size too)."""
    tries = [(["-s", "-c", "-b"], 1)] if apparent else [(["-s", "-c", "-B1"], 1), (["-s", "-c", "-k"], 1024)]
    for args, scale in tries:
        try:
            proc = subprocess.run(["du", *args, *paths], capture_output=True, text=True)
        except OSError:
            return None
        if proc.returncode == 0 and proc.stdout.strip():
            return int(proc.stdout.strip().splitlines()[-1].split()[0]) * scale
    return None


def saved(ours: float | None, theirs: float | None) -> float | None:
    if not ours or not theirs:
        return None
    return 100.0 * (1.0 - ours / theirs)


# -- the benchmark --------------------------------------------------------------------------


class BenchError(RuntimeError):
    pass


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.work = tempfile.mkdtemp(prefix="pip-omni-bench-", dir=args.workdir)
        self.venv = args.venv or os.path.join(self.work, "venv")
        self.py = os.path.join(self.venv, "bin", "python")
        self.omni = os.path.join(self.venv, "bin", "pip-omni")
        env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
        # pip-omni sets these for its own pip calls; pip --target gets the same.
        env["PIP_NO_INPUT"] = "1"
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        # pip-omni's pip logs go to the work dir, not the user's log dir (pip ignores this).
        env["XDG_STATE_HOME"] = os.path.join(self.work, "state")
        self.env = env
        self.root = args.rich
        self.results: dict = {"budgets": {"stored_ms": BUDGET_STORED_MS, "stored_vs_uv": BUDGET_STORED_VS_UV,
                                          "cold_ratio": BUDGET_COLD_RATIO, "disk_saved_percent": BUDGET_DISK_SAVED,
                                          "version_ms": BUDGET_VERSION_MS, "list_ms": BUDGET_LIST_MS,
                                          "pin_ms": BUDGET_PIN_MS}}
        self.uv: str | None = None
        self.uv_cache = os.path.join(self.work, "uv-cache")
        self._n = 0

    # helpers

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(f"[bench_install] {msg}", file=sys.stderr, flush=True)

    def fresh(self, what: str) -> str:
        self._n += 1
        return os.path.join(self.work, f"{what}-{self._n}")

    def run(self, cmd: list[str], store: str | None = None, extra_env: dict | None = None) -> tuple[float, str]:
        env = dict(self.env)
        if store:
            env["OMNIPKG_STORE"] = store
        for k, v in (extra_env or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        t = time.perf_counter()
        # cwd: the scratch dir, so `python -c` helpers import the venv's pip-omni, not a checkout in cwd.
        proc = subprocess.run(cmd, env=env, cwd=self.work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, errors="replace")
        dt = time.perf_counter() - t
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}")
        return dt, proc.stdout

    def omni_install(self, spec: str, store: str, expect_stored: bool | None, extra_env: dict | None = None) -> float:
        dt, out = self.run([self.omni, "install", spec], store=store, extra_env=extra_env)
        if "created" not in out:
            raise BenchError(f"pip-omni install {spec} made no bubble:\n{out}")
        stored = "all already stored" in out
        if expect_stored is not None and stored != expect_stored:
            raise BenchError(f"pip-omni install {spec}: expected the {'stored' if expect_stored else 'cold'} "
                             f"path, got:\n{out}")
        return dt

    def pip_target(self, spec: str, target: str, *extra: str) -> float:
        # Same options pip-omni gives pip (--no-input, --disable-pip-version-check), nothing else.
        dt, _ = self.run([self.py, "-m", "pip", "--no-input", "--disable-pip-version-check",
                          "install", "--target", target, *extra, spec])
        return dt

    def uv_target(self, spec: str, target: str, *extra: str) -> float:
        """``uv pip install --target`` for the venv's interpreter, uv's cache in the scratch dir."""
        dt, _ = self.run([self.uv, "pip", "install", "--quiet", "--python", self.py, "--target", target,
                          *extra, spec], extra_env={"UV_CACHE_DIR": self.uv_cache, "UV_NO_CONFIG": "1"})
        return dt

    def setup_uv(self) -> None:
        if self.args.no_uv:
            return
        uvenv = os.path.join(self.work, "uv-venv")
        self.log("installing uv into a throwaway venv (pip install uv)")
        subprocess.run([self.args.python, "-m", "venv", uvenv], check=True, env=self.env, cwd=self.work)
        self.run([os.path.join(uvenv, "bin", "python"), "-m", "pip", "install", "-q", "uv"])
        self.uv = os.path.join(uvenv, "bin", "uv")
        _, out = self.run([self.uv, "--version"])
        self.results["meta"]["uv"] = out.strip()

    def py_json(self, code: str, *argv: str, store: str | None = None) -> dict:
        _, out = self.run([self.py, "-c", code, *argv], store=store)
        return json.loads(out.strip().splitlines()[-1])

    def rm(self, path: str) -> None:
        if os.path.isdir(path):
            for root, dirs, _files in os.walk(path):  # store objects and dirs may be read-only
                for d in dirs:
                    try:
                        os.chmod(os.path.join(root, d), 0o755)
                    except OSError:
                        pass
            shutil.rmtree(path, ignore_errors=True)

    # set-up

    def setup(self) -> None:
        meta = {"python": platform.python_version(), "machine": platform.machine(),
                "cpus": os.cpu_count(), "reps": self.args.reps, "requirement": f"rich=={self.root}",
                "second": f"rich=={self.args.rich_second}", "main_rich": self.args.rich_main}
        meta["load_before"] = _loadavg()
        meta["file_create_us_before"] = self.file_create_us()
        if self.args.venv and os.path.exists(self.py):
            self.log(f"reusing venv {self.venv}")
        else:
            self.log(f"making venv {self.venv} (pip-omni from {self.args.project}, "
                     f"rich=={self.args.rich_main} in main)")
            subprocess.run([self.args.python, "-m", "venv", self.venv], check=True, env=self.env, cwd=self.work)
        if not self.args.venv or not os.path.exists(self.omni):
            self.run([self.py, "-m", "pip", "install", "-q", self.args.project, f"rich=={self.args.rich_main}"])
        else:  # a kept venv gets the working tree's pip-omni again, as it is now
            self.run([self.py, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", self.args.project])
        _, out = self.run([self.py, "-c", "import sys, pip, importlib.metadata as m, omnipkg_pip; "
                           "print(sys.version.split()[0], pip.__version__, m.version('rich'), "
                           "m.version('pip-omni'))"])
        pyver, pipver, main_rich, omniver = out.split()
        if main_rich != self.args.rich_main:
            raise BenchError(f"the venv's main rich is {main_rich}, expected {self.args.rich_main}")
        meta.update({"venv_python": pyver, "pip": pipver, "pip_omni": omniver, "project": self.args.project,
                     "git": _git_rev(self.args.project)})
        self.results["meta"] = meta

    def warm_up(self) -> None:
        """One untimed run of each side and each version, so pip's HTTP cache is warm for both."""
        self.log("warm-up (untimed): pip-omni install and pip install --target of each version")
        self.store_a = self.fresh("store-a")
        self.omni_install(f"rich=={self.root}", self.store_a, expect_stored=False)
        warm = self.fresh("warm")
        self.omni_install(f"rich=={self.args.rich_second}", warm, expect_stored=False)
        self.rm(warm)
        for v in (self.root, self.args.rich_second):
            t = self.fresh("warm-target")
            self.pip_target(f"rich=={v}", t)
            self.rm(t)
        if self.uv:
            t = self.fresh("warm-uv")
            self.uv_target(f"rich=={self.root}", t)  # fills uv's cache
            self.rm(t)

    # (a)

    def bench_stored(self) -> None:
        spec = f"rich=={self.root}"
        cmd, api, floor, floor_script, imports, uv, vs_uv = [], [], [], [], [], [], []
        dists = None
        for i in range(self.args.reps):
            self.log(f"(a) rep {i + 1}/{self.args.reps}")
            self.run([self.omni, "uninstall", spec], store=self.store_a)
            # pip would fail if called: no index, no find-links. So the timed run proves "no pip".
            cmd.append(self.omni_install_no_pip(spec))
            if self.uv:
                t = self.fresh("uv-offline")
                uv.append(self.uv_target(spec, t, "--offline"))
                vs_uv.append(cmd[-1] / uv[-1])
                self.rm(t)
            r = self.py_json(_API_STORED, spec, store=self.store_a)
            if not r["dists"] or not r["removed"]:
                raise BenchError(f"bubble_from_store did not rebuild the bubble: {r}")
            dists = r["dists"]
            api.append(r["seconds"])
            floor.append(self.run([self.py, "-c", "pass"])[0])
            floor_script.append(self.run([self.py, "-c", _SCRIPT_FLOOR])[0])
            imports.append(self.run([self.py, "-c", _IMPORTS])[0])
        self.results["stored"] = {"command_s": summary(cmd), "api_s": summary(api),
                                  "python_pass_s": summary(floor), "script_floor_s": summary(floor_script),
                                  "imports_s": summary(imports),
                                  "dists": dists}
        if uv:
            self.results["stored"].update({"uv_offline_s": summary(uv), "vs_uv": summary(vs_uv)})

    def omni_install_no_pip(self, spec: str) -> float:
        offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": None, "PIP_EXTRA_INDEX_URL": None,
                   "PIP_CONFIG_FILE": os.devnull}
        dt, out = self.run([self.omni, "install", spec], store=self.store_a, extra_env=offline)
        if "all already stored" not in out:
            raise BenchError(f"pip-omni install {spec} did not take the stored path:\n{out}")
        return dt

    # (d)

    def bench_cli(self) -> None:
        """``pip-omni --version`` / ``pip-omni list`` wall time vs ``python -c pass``, interleaved."""
        floor, version, listing = [], [], []
        for _ in range(max(self.args.reps, 5) * 2):
            floor.append(self.run([self.py, "-c", "pass"])[0])
            version.append(self.run([self.omni, "--version"], store=self.store_a)[0])
            listing.append(self.run([self.omni, "list"], store=self.store_a)[0])
        self.results["cli"] = {"python_pass_s": summary(floor), "version_s": summary(version),
                               "list_s": summary(listing),
                               "version_vs_pass": summary([v / f for v, f in zip(version, floor)]),
                               "list_vs_pass": summary([v / f for v, f in zip(listing, floor)])}

    # (e)

    def bench_pinned_startup(self) -> None:
        """CPU time of ``python -c pass`` with one cached pin vs none, paired, in the bench venv."""
        env = {**self.env, "OMNIPKG_STORE": self.store_a}
        pinned_env = {**env, "OMNIPKG_PINS": f"rich=={self.root}"}

        def cpu(environ) -> float:
            pid = os.posix_spawn(self.py, [self.py, "-c", "pass"], environ)
            _, status, usage = os.wait4(pid, 0)
            if status != 0:
                raise BenchError(f"{self.py} -c pass failed (status {status})")
            return usage.ru_utime + usage.ru_stime

        def site_main(environ) -> float:
            proc = subprocess.run([self.py, "-S", "-c", _SITE_MAIN], env=environ, capture_output=True, text=True)
            if proc.returncode != 0 or proc.stderr:
                raise BenchError(f"{self.py} -S -c {_SITE_MAIN!r} failed: {proc.stderr[-2000:]}")
            return int(proc.stdout.split()[-1]) / 1e9

        cwd = os.getcwd()
        os.chdir(self.work)  # the start-up cache is keyed by the working directory
        try:
            for _ in range(3):  # the first pinned start-up resolves and writes the cache
                cpu(env), cpu(pinned_env), site_main(env), site_main(pinned_env)
            plain, pinned, plain_in, pinned_in = [], [], [], []
            for _ in range(max(self.args.reps, 5) * 6):
                plain.append(cpu(env))
                pinned.append(cpu(pinned_env))
                plain_in.append(site_main(env))
                pinned_in.append(site_main(pinned_env))
        finally:
            os.chdir(cwd)
        self.results["pinned_startup"] = {"no_pin_s": summary(plain), "one_pin_s": summary(pinned),
                                          "delta_s": summary([b - a for a, b in zip(plain, pinned)]),
                                          "site_main_no_pin_s": summary(plain_in),
                                          "site_main_one_pin_s": summary(pinned_in),
                                          "site_main_delta_s": summary([b - a for a, b in zip(plain_in, pinned_in)])}

    # (b) + (c)

    def bench_cold_and_disk(self) -> None:
        """(b), (c) and the phases, all in the same reps: the machine's drift during a run
        (file creation got 10-30x slower within minutes here) then hits them alike."""
        spec = f"rich=={self.root}"
        ours, theirs, ratios, disk, phases, no_compile = [], [], [], [], [], []
        before, before_ratios = [], []  # OMNIPKG_INDEX_PLAN=0: pip wheel resolves and fetches the bubble
        uv_cold, uv_pyc, vs_uv, vs_uv_pyc = [], [], [], []
        same_set = None
        for i in range(self.args.reps):
            self.log(f"(b) rep {i + 1}/{self.args.reps}")
            store, target = self.fresh("store-b"), self.fresh("target-b")
            # Alternate which side goes first: drift on a noisy machine hits both alike.
            if i % 2 == 0:
                o = self.omni_install(spec, store, expect_stored=False)
                p = self.pip_target(spec, target)
            else:
                p = self.pip_target(spec, target)
                o = self.omni_install(spec, store, expect_stored=False)
            ours.append(o)
            theirs.append(p)
            ratios.append(o / p)
            store_before = self.fresh("store-b0")
            before.append(self.omni_install(spec, store_before, expect_stored=False, extra_env=_BEFORE_B))
            before_ratios.append(before[-1] / p)
            self.rm(store_before)
            same_set = self.compare_sets(store, target)
            if self.uv:
                for extra, times, rel in (((), uv_cold, vs_uv), (("--compile-bytecode",), uv_pyc, vs_uv_pyc)):
                    t = self.fresh("uv-target")
                    times.append(self.uv_target(spec, t, *extra))
                    rel.append(o / times[-1])
                    self.rm(t)
            if "c" in self.args.only:
                # (c): add the second version to the same store and a second --target tree (untimed).
                self.omni_install(f"rich=={self.args.rich_second}", store, expect_stored=False)
                target2 = self.fresh("target-c")
                self.pip_target(f"rich=={self.args.rich_second}", target2)
                disk.append({"store": tree_usage([store]), "targets": tree_usage([target, target2])})
                self.rm(target2)
            self.rm(store)
            self.rm(target)
            if "phases" in self.args.only:
                store, target = self.fresh("store-p"), self.fresh("target-p")
                phases.append(self.py_json(_PHASES, spec, store=store))
                no_compile.append(self.pip_target(spec, target, "--no-compile"))
                self.rm(store)
                self.rm(target)
        self.results["cold"] = {"pip_omni_s": summary(ours), "pip_target_s": summary(theirs),
                                "ratio": summary(ratios),
                                "ratio_of_medians": statistics.median(ours) / statistics.median(theirs),
                                "before_s": summary(before), "before_ratio": summary(before_ratios),
                                "same_set": same_set}
        if uv_cold:
            self.results["cold"].update({"uv_s": summary(uv_cold), "uv_pyc_s": summary(uv_pyc),
                                         "vs_uv": summary(vs_uv), "vs_uv_pyc": summary(vs_uv_pyc)})
        if disk:
            self.results["disk"] = self.disk_summary(disk)
        if phases:
            self.results["phases"] = self.phases_summary(phases, theirs, no_compile)

    # (p)

    def bench_planned(self) -> None:
        """(p) a cold bubble that pip's plan sends to a bubble: a venv whose main lacks rich but
        has an older pygments (``--pygments-main``; rich 13.4.2 wants >= 2.13), so ``pip-omni
        install`` first asks pip what it would do (``--dry-run --report``) and then makes the
        bubble from that plan, vs ``pip install --target`` of the same set, paired per rep."""
        venv = os.path.join(self.work, "venv-planned")
        py, omni = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin", "pip-omni")
        self.log(f"(p) making venv {venv} (pygments=={self.args.pygments_main} in main, no rich)")
        subprocess.run([self.args.python, "-m", "venv", venv], check=True, env=self.env, cwd=self.work)
        self.run([py, "-m", "pip", "install", "-q", self.args.project, f"pygments=={self.args.pygments_main}"])
        spec = f"rich=={self.root}"

        def ours(extra_env=None) -> float:
            store = self.fresh("store-planned")
            dt, out = self.run([omni, "install", spec], store=store, extra_env=extra_env)
            if "created" not in out or "would change main" not in out:
                raise BenchError(f"pip-omni install {spec} did not take the planned bubble path:\n{out}")
            self.rm(store)
            return dt

        def theirs() -> float:
            target = self.fresh("target-planned")
            dt, _ = self.run([py, "-m", "pip", "--no-input", "--disable-pip-version-check", "install",
                              "--target", target, spec])
            self.rm(target)
            return dt

        ours(), theirs()  # warm-up: pip's cache
        o, t, ratio, o0, ratio0, saved = [], [], [], [], [], []
        for i in range(self.args.reps):
            self.log(f"(p) rep {i + 1}/{self.args.reps}")
            a, b = (ours(), theirs()) if i % 2 == 0 else reversed((theirs(), ours()))
            o.append(a)
            t.append(b)
            ratio.append(a / b)
            o0.append(ours(_BEFORE))  # before: a pip wheel run fetches the planned files
            ratio0.append(o0[-1] / b)
            saved.append(a / o0[-1])
        self.results["planned"] = {"pip_omni_s": summary(o), "pip_target_s": summary(t), "ratio": summary(ratio),
                                   "before_s": summary(o0), "before_ratio": summary(ratio0),
                                   "after_vs_before": summary(saved),
                                   "pygments_main": self.args.pygments_main}

    def compare_sets(self, store: str, target: str) -> dict:
        key = None
        base = os.path.join(store, "bubbles", "rich", self.root)
        for fname in os.listdir(base):
            if fname.endswith(".json"):
                key = fname
        with open(os.path.join(base, key), encoding="utf-8") as f:
            bubble = {n: d["version"] for n, d in json.load(f)["dists"].items()}
        tree = {}
        for entry in os.listdir(target):
            if entry.endswith(".dist-info"):
                name, _, version = entry[: -len(".dist-info")].partition("-")
                tree[_normalize(name)] = version
        if bubble != tree:
            raise BenchError(f"not the same set: bubble {bubble} vs --target {tree}")
        return bubble

    def disk_summary(self, disk: list[dict]) -> dict:
        out = {"store": disk[-1]["store"], "targets": disk[-1]["targets"]}
        for label, key in (("bytes", "bytes"), ("blocks", "blocks_bytes"), ("du", "du_bytes"), ("du_sb", "du_sb"),
                           ("bytes_no_pyc", "bytes_no_pyc"), ("blocks_no_pyc", "blocks_bytes_no_pyc")):
            vals = [saved(d["store"][key], d["targets"][key]) for d in disk]
            if None not in vals:
                out[f"saved_{label}_percent"] = summary(vals)
            out[f"store_{label}"] = summary([d["store"][key] or 0 for d in disk])
            out[f"targets_{label}"] = summary([d["targets"][key] or 0 for d in disk])
        return out

    # phases

    def phases_summary(self, rows: list[dict], full: list[float], no_compile: list[float]) -> dict:
        out = {k: summary([r[k] for r in rows])
               for k in ("pip_wheel", "from_wheels", "compile_staged", "run_jobs", "ensure_compiled",
                         "pip_wheel_cpu", "from_wheels_cpu")}
        # The compile runs in a thread beside the unpacking (ensure_compiled) since issue 13:
        # "ingest" is then what the caller's thread did that was not waiting for it.
        for r in rows:
            r["compile_staged"] = r["compile_staged"] + r["ensure_compiled"]
        out["compile_staged"] = summary([r["compile_staged"] for r in rows])
        out["ingest_excl_compile"] = summary([max(0.0, r["from_wheels"] - r["compile_staged"]) for r in rows])
        out["pyc_to_objects"] = summary([r["compile_staged"] - r["run_jobs"] for r in rows])
        out["py_files"] = rows[-1]["py_files"]
        out["wheels"] = rows[-1]["wheels"]
        out["pip_target_no_compile_s"] = summary(no_compile)
        out["pip_target_s"] = summary(full)
        # Each phase over (b)'s pip --target run of the same rep: robust to the machine's drift.
        for k in ("pip_wheel", "from_wheels", "compile_staged", "run_jobs"):
            out[f"{k}_vs_target"] = summary([r[k] / t for r, t in zip(rows, full)])
        out["ingest_excl_compile_vs_target"] = summary(
            [(r["from_wheels"] - r["compile_staged"]) / t for r, t in zip(rows, full)])
        out["api_total_vs_target"] = summary([(r["pip_wheel"] + r["from_wheels"]) / t for r, t in zip(rows, full)])
        out["no_compile_vs_target"] = summary([n / t for n, t in zip(no_compile, full)])
        return out

    def file_create_us(self) -> float:
        """Median time to create, write (4 KiB) and close a new file in the scratch dir, in µs:
        on some machines this dominates both sides and moves a lot from minute to minute."""
        d = tempfile.mkdtemp(dir=self.work)
        times = []
        for i in range(200):
            t = time.perf_counter()
            with open(os.path.join(d, str(i)), "wb") as f:
                f.write(b"x" * 4096)
            times.append(time.perf_counter() - t)
        self.rm(d)
        return round(statistics.median(times) * 1e6, 1)

    def close(self) -> None:
        if "meta" in self.results:
            self.results["meta"]["load_after"] = _loadavg()
            self.results["meta"]["file_create_us_after"] = self.file_create_us()
        if self.args.keep:
            self.log(f"kept {self.work}")
        else:
            self.rm(self.work)


def _normalize(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _git_rev(where: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", where, "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# -- output ---------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("ok" if ok else "MISSED")


def print_table(r: dict) -> None:
    m = r["meta"]
    print(f"pip-omni install benchmark: {m['requirement']} and its dependencies; "
          f"median [min-max] (IQR with 4+ reps) over {m['reps']} reps")
    print(f"python {m['venv_python']}, pip {m['pip']}, pip-omni {m['pip_omni']} (git {m['git']}), "
          f"{m['cpus']} cpus, load avg before {m['load_before']} after {m.get('load_after')}")
    print(f"creating a small file here took {m.get('file_create_us_before')} µs before the run, "
          f"{m.get('file_create_us_after')} µs after (both sides create ~1000 files per install)")
    print(f"main environment of the venv has rich {m['main_rich']}, so the install goes the bubble path")
    rows: list[tuple[str, str, str, str]] = []
    if "stored" in r:
        s = r["stored"]
        ok = s["command_s"]["median"] * 1e3 <= BUDGET_STORED_MS
        rows += [
            ("(a) bubble whose dists are all stored (no pip, no network)", "", "", ""),
            (f"    pip-omni install {m['requirement']} (whole command)", fmt_time(s["command_s"], "ms"),
             f"<= {BUDGET_STORED_MS:.0f} ms", verdict(ok)),
            ("    bubbles.bubble_from_store() in-process", fmt_time(s["api_s"], "ms"),
             f"<= {BUDGET_STORED_MS:.0f} ms", verdict(s["api_s"]["median"] * 1e3 <= BUDGET_STORED_MS)),
            ("    reference: python -c pass (interpreter start-up)", fmt_time(s["python_pass_s"], "ms"), "", ""),
            ("    reference: python -c 'import <what install imports>'", fmt_time(s["imports_s"], "ms"), "", ""),
        ]
        if "script_floor_s" in s:
            rows.append(("    reference: python -c 'import re, json' (a console script's floor)",
                         fmt_time(s["script_floor_s"], "ms"), "", ""))
        if "vs_uv" in s:
            rows += [
                ("    uv pip install --offline --target DIR (uv cache warm)", fmt_time(s["uv_offline_s"], "ms"), "", ""),
                ("    ratio pip-omni / uv --offline (paired per rep)", fmt_ratio(s["vs_uv"]),
                 f"<= {BUDGET_STORED_VS_UV}x", verdict(s["vs_uv"]["median"] <= BUDGET_STORED_VS_UV)),
            ]
    if "cold" in r:
        c = r["cold"]
        rows += [
            ("(b) cold bubble (empty store, pip HTTP cache warm)", "", "", ""),
            (f"    pip-omni install {m['requirement']}", fmt_time(c["pip_omni_s"], "s"), "", ""),
            (f"    pip install --target DIR {m['requirement']}", fmt_time(c["pip_target_s"], "s"), "", ""),
            ("    ratio pip-omni / pip --target (paired per rep)", fmt_ratio(c["ratio"]),
             f"<= {BUDGET_COLD_RATIO}x", verdict(c["ratio"]["median"] <= BUDGET_COLD_RATIO)),
            ("    ratio of the medians", f"{c['ratio_of_medians']:.2f}x", "", ""),
            (f"    pip-omni install {m['requirement']} with OMNIPKG_INDEX_PLAN=0 (same reps)",
             fmt_time(c["before_s"], "s"), "", ""),
            ("    its ratio / pip --target (one pip wheel run resolves and fetches the bubble)",
             fmt_ratio(c["before_ratio"]), "", ""),
            *([("    uv pip install --target DIR (uv cache warm, online)", fmt_time(c["uv_s"], "s"), "", ""),
               ("    uv pip install --compile-bytecode --target DIR", fmt_time(c["uv_pyc_s"], "s"), "", ""),
               ("    ratio pip-omni / uv (paired per rep)", fmt_ratio(c["vs_uv"]), "", ""),
               ("    ratio pip-omni / uv --compile-bytecode (paired per rep)", fmt_ratio(c["vs_uv_pyc"]), "", "")]
              if "vs_uv" in c else []),
            ("    same set on both sides", ", ".join(f"{n} {v}" for n, v in sorted(c["same_set"].items())), "", ""),
        ]
    if "planned" in r:
        c = r["planned"]
        rows += [
            (f"(p) cold bubble pip's plan sends to a bubble (main: pygments {c['pygments_main']}, no rich)", "", "", ""),
            (f"    pip-omni install {m['requirement']} (resolve against main, then the bubble)",
             fmt_time(c["pip_omni_s"], "s"), "", ""),
            (f"    pip install --target DIR {m['requirement']}", fmt_time(c["pip_target_s"], "s"), "", ""),
            ("    ratio pip-omni / pip --target (paired per rep)", fmt_ratio(c["ratio"]), "", ""),
            ("    before: the same with OMNIPKG_DIRECT_FETCH=0 (a pip wheel run fetches the planned files)",
             fmt_time(c["before_s"], "s"), "", ""),
            ("    before: ratio / pip --target (same reps)", fmt_ratio(c["before_ratio"]), "", ""),
            ("    after / before (same reps)", fmt_ratio(c["after_vs_before"]), "", ""),
        ]
    if "disk" in r:
        d = r["disk"]
        mb = lambda s: f"{s['median'] / 1e6:.2f} MB"  # noqa: E731
        pct = lambda s: f"{s['median']:.1f} % [{s['min']:.1f}-{s['max']:.1f}]"  # noqa: E731
        rows.append((f"(c) disk: the store with the {m['requirement']} and {m['second']} bubbles vs two --target trees",
                     "", "", ""))
        for key, label, budgeted in (
            ("du_sb", "du -sb: apparent bytes, each inode once, dirs too", True),
            ("bytes", "with pyc: apparent size of files, each inode once", False),
            ("du", "with pyc: du -s blocks (dirs too)", False),
            ("blocks", "with pyc: blocks of files, each inode once", False),
            ("blocks_no_pyc", "without pyc: blocks of files", False),
            ("bytes_no_pyc", "without pyc: apparent size", False),
        ):
            if f"saved_{key}_percent" not in d:
                continue
            s = d[f"saved_{key}_percent"]
            rows.append((f"    {label}", f"store {mb(d['store_' + key])} vs {mb(d['targets_' + key])}: "
                         f"saved {pct(s)}", f">= {BUDGET_DISK_SAVED:.0f} %" if budgeted else "",
                         verdict(s["median"] >= BUDGET_DISK_SAVED) if budgeted else ""))
        st, tg = d["store"], d["targets"]
        rows.append(("    files (links) / inodes / pyc inodes",
                     f"store {st['files']}/{st['inodes']}/{st['pyc_inodes']}, "
                     f"--target {tg['files']}/{tg['inodes']}/{tg['pyc_inodes']}", "", ""))
    if "cli" in r:
        c = r["cli"]
        rows += [
            ("(d) CLI start-up, wall time, interleaved with python -c pass", "", "", ""),
            ("    python -c pass", fmt_time(c["python_pass_s"], "ms"), "", ""),
            ("    pip-omni --version", fmt_time(c["version_s"], "ms"), f"<= {BUDGET_VERSION_MS:.0f} ms",
             verdict(c["version_s"]["median"] * 1e3 <= BUDGET_VERSION_MS)),
            ("      over python -c pass (paired)", fmt_ratio(c["version_vs_pass"]), "", ""),
            ("    pip-omni list", fmt_time(c["list_s"], "ms"), f"<= {BUDGET_LIST_MS:.0f} ms",
             verdict(c["list_s"]["median"] * 1e3 <= BUDGET_LIST_MS)),
            ("      over python -c pass (paired)", fmt_ratio(c["list_vs_pass"]), "", ""),
        ]
    if "pinned_startup" in r:
        e = r["pinned_startup"]
        rows += [
            ("(e) python -c pass in the venv, CPU time (user+sys), start-up cache warm", "", "", ""),
            ("    no pins", fmt_time(e["no_pin_s"], "ms"), "", ""),
            (f"    OMNIPKG_PINS={m['requirement']}", fmt_time(e["one_pin_s"], "ms"), "", ""),
            ("    difference (paired per rep)", fmt_delta(e["delta_s"]), f"<= +{BUDGET_PIN_MS:.0f} ms",
             verdict(e["delta_s"]["median"] * 1e3 <= BUDGET_PIN_MS)),
        ]
        if "site_main_delta_s" in e:
            rows += [
                ("    in-process: CPU time of site.main() (python -S), where the .pth lines run", "", "", ""),
                ("      no pins", fmt_time(e["site_main_no_pin_s"], "ms"), "", ""),
                (f"      OMNIPKG_PINS={m['requirement']}", fmt_time(e["site_main_one_pin_s"], "ms"), "", ""),
                ("      difference (paired per rep)", fmt_delta(e["site_main_delta_s"]), "", ""),
            ]
    if "phases" in r:
        p = r["phases"]
        x = lambda k: fmt_ratio(p[k + "_vs_target"])  # noqa: E731
        rows += [
            (f"phases of a cold bubble through the API ({p['wheels']} wheels, {p['py_files']} .py compiled; "
             "third column: over pip --target of the same rep)", "", "", ""),
            ("    pip wheel (resolve + fetch from warm cache)", fmt_time(p["pip_wheel"], "s"), x("pip_wheel"), ""),
            ("      its CPU time (the pip subprocess)", fmt_time(p["pip_wheel_cpu"], "s"), "", ""),
            ("    bubble_from_wheels, total", fmt_time(p["from_wheels"], "s"), x("from_wheels"), ""),
            ("      its CPU time (with compile subprocesses)", fmt_time(p["from_wheels_cpu"], "s"), "", ""),
            ("      ingest: unpack, check, objects, links, publish", fmt_time(p["ingest_excl_compile"], "s"),
             x("ingest_excl_compile"), ""),
            ("      compiling .pyc of routed dists (a thread, beside the unpacking)", fmt_time(p["compile_staged"], "s"),
             x("compile_staged"), ""),
            ("        of which bytecode._run_jobs (compiling)", fmt_time(p["run_jobs"], "s"), x("run_jobs"), ""),
            ("        of which pyc -> objects, links, manifest", fmt_time(p["pyc_to_objects"], "s"), "", ""),
            ("    pip wheel + bubble_from_wheels (no CLI start-up)", "", x("api_total"), ""),
            ("    reference: pip install --target DIR ((b), same reps)", fmt_time(p["pip_target_s"], "s"), "1.00x", ""),
            ("    reference: pip install --no-compile --target DIR", fmt_time(p["pip_target_no_compile_s"], "s"),
             x("no_compile"), ""),
        ]
    # Section headings (nothing but a label) print as they are; the other rows line up.
    body = [x for x in rows if any(x[1:])]
    w0, w1, w2 = (max(len(x[i]) for x in body) for i in range(3))
    for a, b, c, v in rows:
        if not any((b, c, v)):
            print("\n" + a)
        else:
            print(f"{a.ljust(w0)}  {b.ljust(w1)}  {c.ljust(w2)}  {v}".rstrip())


def fmt_delta(s: dict) -> str:
    out = f"{s['median'] * 1e3:+.2f} ms [{s['min'] * 1e3:+.2f} to {s['max'] * 1e3:+.2f}]"
    if "q1" in s:
        out += f" IQR {s['q1'] * 1e3:+.2f} to {s['q3'] * 1e3:+.2f}"
    return out


def _spread(s: dict, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    lo, hi = (s["q1"], s["q3"]) if "q1" in s else (s["min"], s["max"])
    return f"{lo * scale:.{digits}f}–{hi * scale:.{digits}f}{unit}"


def print_markdown(r: dict) -> None:
    """The goals of issue 13 as a Markdown table (README "Performance"): ratio, median, spread."""
    m = r["meta"]
    rows = []
    if "cold" in r:
        c = r["cold"]
        rows.append((f"cold bubble `{m['requirement']}` vs `pip install --target`",
                     f"{c['ratio']['median']:.2f}× (IQR/range {_spread(c['ratio'])}×)", f"≤ {BUDGET_COLD_RATIO}×"))
        if "vs_uv" in c:
            rows.append(("  same, vs `uv pip install --target` / `--compile-bytecode`",
                         f"{c['vs_uv']['median']:.2f}× / {c['vs_uv_pyc']['median']:.2f}×", "–"))
    if "planned" in r:
        c = r["planned"]
        rows.append((f"  cold bubble the plan sends to a bubble (main: pygments {c['pygments_main']}, no rich) "
                     "vs `pip install --target`", f"{c['ratio']['median']:.2f}× (IQR/range {_spread(c['ratio'])}×)",
                     "–"))
    if "stored" in r:
        s = r["stored"]
        if "vs_uv" in s:
            rows.append(("bubble from stored dists, whole command, vs `uv pip install --offline --target`",
                         f"{s['command_s']['median'] * 1e3:.0f} ms vs {s['uv_offline_s']['median'] * 1e3:.0f} ms = "
                         f"{s['vs_uv']['median']:.2f}× (IQR/range {_spread(s['vs_uv'])}×)", f"≤ {BUDGET_STORED_VS_UV}×"))
        else:
            rows.append(("bubble from stored dists, whole command", f"{s['command_s']['median'] * 1e3:.0f} ms", "–"))
    if "cli" in r:
        c = r["cli"]
        rows.append(("`pip-omni --version` / `pip-omni list` (wall; `python -c pass` "
                     f"{c['python_pass_s']['median'] * 1e3:.0f} ms)",
                     f"{c['version_s']['median'] * 1e3:.0f} / {c['list_s']['median'] * 1e3:.0f} ms "
                     f"({c['version_vs_pass']['median']:.2f}× / {c['list_vs_pass']['median']:.2f}× of python -c pass)",
                     f"≤ {BUDGET_VERSION_MS:.0f} / {BUDGET_LIST_MS:.0f} ms"))
    if "pinned_startup" in r:
        e = r["pinned_startup"]["delta_s"]
        inproc = r["pinned_startup"].get("site_main_delta_s")
        extra = (f"; in-process (`site.main()` under `python -S`) {inproc['median'] * 1e3:+.2f} ms "
                 f"(IQR/range {_spread(inproc, 1e3, 2, ' ms')})") if inproc else ""
        rows.append(("`python -c pass` with one cached pin vs none (CPU)",
                     f"{e['median'] * 1e3:+.2f} ms (IQR/range {_spread(e, 1e3, 2, ' ms')}){extra}",
                     f"≤ +{BUDGET_PIN_MS:.0f} ms"))
    if "disk" in r and "saved_du_sb_percent" in r["disk"]:
        d = r["disk"]
        rows.append((f"disk, {m['requirement']} + {m['second']} bubbles, `du -sb` of the store vs two `--target` trees",
                     f"{d['saved_du_sb_percent']['median']:.1f} % saved ({d['store_du_sb']['median'] / 1e6:.1f} MB vs "
                     f"{d['targets_du_sb']['median'] / 1e6:.1f} MB)", f"≥ {BUDGET_DISK_SAVED:.0f} %"))
    print(f"Markdown ({m['reps']} reps, python {m['venv_python']}, pip {m['pip']}, {m.get('uv', 'no uv')}, "
          f"{m['cpus']} cpus, load avg {m['load_before']} -> {m.get('load_after')}):")
    print()
    print("| figure | measured (median, spread) | goal |")
    print("|---|---|---|")
    for a, b, c in rows:
        print(f"| {a} | {b} | {c} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="repetitions per figure (default 5)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    ap.add_argument("--save", metavar="FILE", help="also write the results as JSON to FILE")
    ap.add_argument("--only", default="a,b,c,d,e,phases,p",
                    help="comma-separated sections to run: a, b, c, d, e, phases, p (default: all)")
    ap.add_argument("--no-uv", action="store_true", help="do not install uv; no uv baselines")
    ap.add_argument("--python", default=sys.executable, help="interpreter to make the venv with (default: this one)")
    ap.add_argument("--project", default=REPO,
                    help="pip-omni source tree to install in the venv (default: this checkout, as it is now)")
    ap.add_argument("--venv", help="use (or make and keep) the venv at this path instead of a throwaway one")
    ap.add_argument("--workdir", default=None, help="parent of the scratch directory (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--rich", default="13.4.2", help="version measured (default 13.4.2)")
    ap.add_argument("--rich-second", default="13.5.3", help="second version for the disk figure (default 13.5.3)")
    ap.add_argument("--rich-main", default="13.7.1", help="rich in the venv's main environment (default 13.7.1)")
    ap.add_argument("--pygments-main", default="2.12.0",
                    help="pygments in the main environment of the (p) venv (default 2.12.0: older than rich wants)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a budget is missed")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    args.only = {x.strip() for x in args.only.split(",") if x.strip()}
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    if args.venv:
        args.venv = os.path.abspath(args.venv)

    bench = Bench(args)
    try:
        bench.setup()
        bench.setup_uv()
        bench.warm_up()
        if "a" in args.only:
            bench.bench_stored()
        if "d" in args.only:
            bench.bench_cli()
        if "e" in args.only:
            bench.bench_pinned_startup()
        if "p" in args.only:
            bench.bench_planned()
        if args.only & {"b", "c", "phases"}:
            bench.bench_cold_and_disk()
            if "b" not in args.only:
                del bench.results["cold"]
    except BenchError as e:
        print(f"bench_install: {e}", file=sys.stderr)
        return 2
    finally:
        bench.close()
    r = bench.results
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump(r, f, indent=1)
    if args.json:
        json.dump(r, sys.stdout, indent=1)
        print()
    else:
        print_table(r)
        print()
        print_markdown(r)
    missed = []
    if "stored" in r and r["stored"]["command_s"]["median"] * 1e3 > BUDGET_STORED_MS:
        missed.append("a")
    if "cold" in r and r["cold"]["ratio"]["median"] > BUDGET_COLD_RATIO:
        missed.append("b")
    if "disk" in r and r["disk"].get("saved_du_sb_percent", {"median": 0})["median"] < BUDGET_DISK_SAVED:
        missed.append("c")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
