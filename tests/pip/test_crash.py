"""Crash safety and concurrency of the store's writers (issue 2, item 5).

Whatever happens to a writer -- SIGKILL at any moment, another writer or a gc at
the same time -- a reader sees whole dists and whole bubbles or none:

- every ``dists/<name>/<version>/<tag>`` has its ``omnipkg-dist.json`` and every
  file that it (and each ``omnipkg-pyc-*.json``) lists, with the listed size, as a
  hard link to the object named by the listed sha256;
- every object's sha256 is its name (none is half-written), mode 0444 (0555 "x");
- every bubble manifest references only such whole dists;
- the main environment is byte-identical; rerunning the command succeeds and
  gives a bubble that imports.

Empty ``dists/<name>/<version>/`` directories and anything in ``tmp/`` are
allowed: they are invisible to readers and ``gc`` removes them.

Three ways to kill:

- the ``pip-omni install`` CLI in a venv, in its own process group (pip's
  subprocesses die too), SIGKILLed at moments spread over one timed run:
  ``OMNIPKG_CRASH_RUNS`` kill points (default 12); ``-m slow`` adds a long run
  with random moments;
- in-process writers in a forked child that SIGKILLs itself just before its n-th
  filesystem call (and just after each open), for every n: every interleaving
  point of making a bubble, of uninstall and of gc, without timing luck;
- a gc process that reaches the lock exactly between the resolve and the publish
  of a bubble made from stored dists.

The stores live on /dev/shm when there is one: this machine's disk takes ~2 ms to
create a file, and these tests create tens of thousands. The rename and link
semantics the tests rely on are the same on tmpfs.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from conftest import make_venv, tree_digest
from wheelmaker import make_wheel

from omnipkg_hook.store import DIST_MANIFEST, Store, read_manifest
from omnipkg_pip.commands import uninstall
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles
from omnipkg_pip.writers import collect as gc

CURRENT = interp.current()
DEFAULT_RUNS = 12


# -- places ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    """A directory on tmpfs if the machine has one (removed afterwards), else under tmp_path."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="pip-omni-crash-", dir=shm))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("crash")


@pytest.fixture
def here(fast, request):
    """This test's own directory (its stores, logs, temp files)."""
    return Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=fast))


def _package(module: str, count: int) -> dict[str, str]:
    files = {f"{module}/__init__.py": f"NAME = {module!r}\n"}
    for i in range(count):
        files[f"{module}/m{i:03d}.py"] = f"# {module} module {i}\nVALUE = {i}\n\ndef f(x):\n    return x + {i}\n"
    return files


@pytest.fixture(scope="module")
def wheels(fast) -> Path:
    """Local wheels: a bubble of a few hundred files, two others sharing its dependencies."""
    house = fast / "wheels"
    make_wheel(house, "crashroot", "1.0", _package("crashroot", 250), requires=["shared-a", "shared-b"])
    make_wheel(house, "shared-a", "1.0", _package("shared_a", 60))
    make_wheel(house, "shared-b", "1.0", _package("shared_b", 60))
    make_wheel(house, "other-x", "1.0", _package("other_x", 30), requires=["shared-a"])
    make_wheel(house, "other-y", "1.0", _package("other_y", 30), requires=["shared-a>=1", "shared-b"])
    return house


@pytest.fixture(scope="module")
def venv(fast, omni_wheel):
    """One venv with pip-omni for the CLI tests of this module; every run gets its own store."""
    return make_venv(fast / "venv", omni_wheel, fast)


def _env(venv, here: Path, store: Path) -> dict:
    (here / "tmp").mkdir(exist_ok=True)
    return {**venv.env, "OMNIPKG_STORE": str(store), "TMPDIR": str(here / "tmp"), "XDG_STATE_HOME": str(here / "state")}


def _main_digest(venv) -> dict:
    return tree_digest(venv.site, venv.path / "bin")


# -- the invariants --------------------------------------------------------------------


def check_store(root: Path) -> dict:
    """Assert the store at ``root`` is consistent; return its whole dists and bubbles."""
    problems: list[str] = []
    objects: dict[str, int] = {}
    for obj in sorted((root / "objects").glob("*/*")):
        name = obj.parent.name + obj.name
        executable = name.endswith("x")
        st = obj.lstat()
        if hashlib.sha256(obj.read_bytes()).hexdigest() != name.rstrip("x"):
            problems.append(f"object {name}: contents do not match its name (half-written?)")
        if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != (0o555 if executable else 0o444):
            problems.append(f"object {name}: mode {oct(st.st_mode)}")
        objects[name] = st.st_ino
    whole: set[str] = set()
    for level in ("*", "*/*"):
        for p in (root / "dists").glob(level):
            if not p.is_dir() or p.is_symlink():
                problems.append(f"{p.relative_to(root)}: not a directory")
    for dist in sorted((root / "dists").glob("*/*/*")):
        rel = dist.relative_to(root).as_posix()
        before = len(problems)
        try:
            manifest = read_manifest(str(dist / DIST_MANIFEST))
        except FileNotFoundError:
            problems.append(f"{rel}: visible without {DIST_MANIFEST}")
            continue
        entries = list(manifest["files"])
        for pyc in dist.glob("omnipkg-pyc-*.json"):
            entries += read_manifest(str(pyc))["files"]
        for entry in entries:
            path = dist / entry["path"]
            name = entry["sha256"] + ("x" if entry["mode"] & 0o111 else "")
            try:
                st = path.lstat()
            except FileNotFoundError:
                problems.append(f"{rel}/{entry['path']}: listed but missing")
                continue
            if st.st_size != entry["size"]:
                problems.append(f"{rel}/{entry['path']}: {st.st_size} bytes, listed {entry['size']}")
            if objects.get(name) != st.st_ino:
                problems.append(f"{rel}/{entry['path']}: not a hard link to object {name}")
        if len(problems) == before:
            whole.add(rel)
    found_bubbles = {}
    for path in sorted((root / "bubbles").glob("*/*/*.json")):
        rel = path.relative_to(root).as_posix()
        manifest = read_manifest(str(path))
        for dep, info in manifest["dists"].items():
            if info["path"] not in whole:
                problems.append(f"{rel}: references {info['path']} ({dep}), which is not a whole dist")
        found_bubbles[rel] = manifest
    assert not problems, f"store {root} is inconsistent:\n  " + "\n  ".join(problems)
    return {"dists": whole, "bubbles": found_bubbles}


def check_bubble_imports(python, root: Path, name: str, modules: list[str]) -> None:
    """The bubble of ``name`` in ``root`` has its dists and ``modules`` import from them."""
    state = check_store(root)
    (manifest,) = [m for rel, m in state["bubbles"].items() if rel.startswith(f"bubbles/{name}/")]
    paths = [str(root / d["path"]) for d in manifest["dists"].values()]
    code = ("import importlib, sys; n = int(sys.argv[1]); sys.path[:0] = sys.argv[2:2 + n]; "
            "print('\\n'.join(importlib.import_module(m).__file__ for m in sys.argv[2 + n:]))")
    out = subprocess.run([str(python), "-I", "-B", "-c", code, str(len(paths)), *paths, *modules],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(out) == len(modules) and all(f.startswith(str(root / "dists")) for f in out), out


# -- killing the CLI -------------------------------------------------------------------

INSTALL = ("install", "-q", "--bubble", "--no-index", "-f")
CRASHROOT_MODULES = ["crashroot.m123", "shared_a.m059", "shared_b"]


def _group_gone(pgid: int, timeout: float = 10.0) -> None:
    """Wait until no live process is left in process group ``pgid`` (zombies do not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                alive = True
                break
        if not alive:
            return
        time.sleep(0.01)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def _start(venv, env, args, log) -> subprocess.Popen:
    return subprocess.Popen([str(venv.path / "bin" / "pip-omni"), *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # its own process group


def _wait_for(proc: subprocess.Popen, path: Path) -> float | None:
    """Poll until ``path`` exists (seconds waited) or ``proc`` ends (None)."""
    started = time.monotonic()
    while not path.exists():
        if proc.poll() is not None:
            return None
        time.sleep(0.003)
    return time.monotonic() - started


def _run_and_kill(venv, env, args, delay: float, log: Path, sync: bool) -> str:
    """Start ``pip-omni args``; SIGKILL its process group ``delay`` s after the start, or
    with ``sync`` after the store's ``tmp/`` appears (the first write). Returns what the
    store had when it was killed, or "finished" if the run ended first."""
    store = Path(env["OMNIPKG_STORE"])
    with open(log, "wb") as out:
        proc = _start(venv, env, args, out)
        try:
            if sync and _wait_for(proc, store / "tmp") is None:
                code = proc.wait()
            else:
                code = proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            seen = "+".join(sorted(os.listdir(store))) if store.exists() else "nothing"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            _group_gone(proc.pid)
            return f"killed: {seen}"
    assert code == 0, log.read_text()
    return "finished"


def _kill_install_many_times(venv, wheels, here, runs: int, randomised: bool) -> None:
    """One timed run, then ``runs`` kills: one while pip fetches, the others spread over
    the part that writes the store (from the moment its tmp/ appears to the end)."""
    args = (*INSTALL, str(wheels), "crashroot==1.0")
    main_before = _main_digest(venv)
    timed = here / "timed"
    with open(here / "timed.log", "wb") as log:
        started = time.monotonic()
        proc = _start(venv, _env(venv, here, timed), args, log)
        fetching = _wait_for(proc, timed / "tmp")
        assert proc.wait() == 0 and fetching is not None, (here / "timed.log").read_text()
        writing = time.monotonic() - started - fetching
    check_bubble_imports(venv.python, timed, "crashroot", CRASHROOT_MODULES)
    shutil.rmtree(timed)

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    step = writing / max(1, runs - 1)
    kills = []
    for i in range(runs):
        store = here / f"kill-{i}"
        env = _env(venv, here, store)
        if i == 0:
            delay, sync = fetching * (rng.random() if randomised else 0.5), False
        else:
            delay, sync = (i - 1 + (rng.random() if randomised else 0.5)) * step, True
        what = _run_and_kill(venv, env, args, delay, here / f"kill-{i}.log", sync)
        kills.append(f"{'after tmp/ ' if sync else ''}{delay:.2f}s: {what}")
        try:
            check_store(store)
            assert _main_digest(venv) == main_before, "main environment changed"
            venv.run(*args, env=env)  # the same command again
            check_bubble_imports(venv.python, store, "crashroot", CRASHROOT_MODULES)
        except AssertionError as e:
            raise AssertionError(f"kill {i} (seed {seed}): {e}\nkills so far:\n  " + "\n  ".join(kills)) from None
        shutil.rmtree(store)
    print(f"fetching {fetching:.2f}s, writing {writing:.2f}s; kills:", *kills, sep="\n  ")


def test_sigkill_of_an_install_at_spread_out_moments_leaves_a_consistent_store(venv, wheels, here):
    runs = int(os.environ.get("OMNIPKG_CRASH_RUNS", DEFAULT_RUNS))
    _kill_install_many_times(venv, wheels, here, runs, randomised=False)


@pytest.mark.slow
def test_sigkill_of_an_install_at_random_moments_long(venv, wheels, here, request):
    _skip_unless_asked(request)  # OMNIPKG_CRASH_RUNS=N sets the kill points
    runs = int(os.environ.get("OMNIPKG_CRASH_RUNS", 5 * DEFAULT_RUNS))
    _kill_install_many_times(venv, wheels, here, runs, randomised=True)


# -- killing in-process writers before every filesystem call -----------------------------

_COUNTED = ("mkdir", "rename", "replace", "link", "unlink", "rmdir", "chmod", "symlink", "utime")
_TWO_PATHS = ("rename", "replace", "link", "symlink")


def _visible(store: str, args, kwargs) -> bool:
    """Whether a call may change what readers of ``store`` see: it touches a path outside
    ``tmp/``, or writes through a hard link (a file of the store with several names)."""
    paths = []
    for arg, fd in ((args[0] if args else None, kwargs.get("dir_fd", kwargs.get("src_dir_fd"))),
                    (args[1] if len(args) > 1 else None, kwargs.get("dst_dir_fd"))):
        if isinstance(arg, (str, bytes, os.PathLike)):
            path = os.fsdecode(arg)
            if fd is not None and not os.path.isabs(path):
                path = os.path.join(os.readlink(f"/proc/self/fd/{fd}"), path)
            paths.append(os.path.abspath(path))
    tmp = os.path.join(store, "tmp") + os.sep
    for path in paths:
        if path.startswith(store + os.sep) and not path.startswith(tmp):
            return True
        try:
            if os.lstat(path).st_nlink > 1:
                return True
        except OSError:
            pass
    return False


def run_killed_at(kill_at: int | None, work, store: str) -> list[bool] | None:
    """Run ``work(Store(store))`` in a forked child that SIGKILLs itself just before its
    ``kill_at``-th filesystem call (an open counts again once it returned: the file exists,
    still empty).

    Returns, if ``work`` finished, one flag per call: whether it could change what
    readers of ``store`` see; None if the child was killed.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            flags: list[bool] = []

            def counted(real, after=False):
                def call(*args, **kwargs):
                    if len(flags) + 1 == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    flags.append(kill_at is None and _visible(store, args, kwargs))
                    result = real(*args, **kwargs)
                    if after:
                        if len(flags) + 1 == kill_at:
                            os.kill(os.getpid(), signal.SIGKILL)
                        flags.append(flags[-1])
                    return result
                return call

            for name in _COUNTED:
                setattr(os, name, counted(getattr(os, name)))
            os.open = counted(os.open, after=True)
            builtins.open = counted(builtins.open, after=True)
            work(Store(store))
            os.write(write_end, json.dumps(flags).encode())
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(3)
    os.close(write_end)
    _pid, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as f:
        out = f.read()
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL and kill_at is not None
        return None
    assert os.WEXITSTATUS(status) == 0, "the writer failed without being killed (see captured stderr)"
    return json.loads(out)


def _copy_store(template: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(template), str(dest)], check=True)  # -a keeps the hard links
    return dest


def _kill_points(flags: list[bool], limit: int | None) -> list[int]:
    """Kill before every call that may change what readers see and before the call after it
    (the state just after it); other calls only touch staging. ``limit``: evenly spread subset."""
    points = sorted({n for i, visible in enumerate(flags, 1) if visible for n in (i, i + 1) if n <= len(flags)})
    if limit and len(points) > limit:
        points = [points[round(k * (len(points) - 1) / (limit - 1))] for k in range(limit)]
    return points


def _every_kill_point(template: Path, here: Path, work, after_each, limit: int | None) -> list[int]:
    """Kill ``work(store)`` at each kill point, each time on a fresh copy of ``template``;
    ``after_each(store, last)`` checks the store and finishes the job. Returns the points."""
    counting = str(_copy_store(template, here / "count"))
    flags = run_killed_at(None, work, counting)
    shutil.rmtree(counting)
    points = _kill_points(flags, limit)
    for kill_at in points:
        store = _copy_store(template, here / f"at-{kill_at}")
        assert run_killed_at(kill_at, work, str(store)) is None
        try:
            after_each(store, kill_at == points[-1])
        except AssertionError as e:
            raise AssertionError(f"killed before filesystem call {kill_at} of {len(flags)}: {e}") from None
        shutil.rmtree(store)
    return points


def _skip_unless_asked(request) -> None:
    """Nothing deselects ``slow`` by default: the long versions run only when asked for."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("the long version runs with -m slow")


# An even spread of 40 kill points by default; every one of them with -m slow.
LIMITS = pytest.mark.parametrize("limit", [pytest.param(40, id="40-points"),
                                           pytest.param(None, id="every-point", marks=pytest.mark.slow)])


@pytest.fixture(scope="module")
def small_wheels(fast) -> list[Path]:
    house = fast / "small-wheels"
    return [
        make_wheel(house, "app", "1.0", {**_package("app", 1), "app-1.0.data/scripts/app-tool": "#!python\n"},
                   requires=["dep-a", "dep-b"], entry_points={"console_scripts": {"app": "app:main"}},
                   executable={"app-1.0.data/scripts/app-tool"}),
        make_wheel(house, "dep-a", "1.0", _package("dep_a", 1)),
        make_wheel(house, "dep-b", "1.0", _package("dep_b", 1)),
        make_wheel(house, "keeper", "1.0", _package("keeper", 1), requires=["dep-a"]),
    ]


@LIMITS
def test_kill_before_every_filesystem_call_of_making_a_bubble(here, small_wheels, request, limit):
    if limit is None:
        _skip_unless_asked(request)
    template = here / "empty"
    template.mkdir()
    app_wheels = small_wheels[:3]

    def after_each(store: Path, last: bool) -> None:
        check_store(store)
        bubbles.bubble_from_wheels(Store(str(store)), app_wheels, "app")  # the same again
        (manifest,) = check_store(store)["bubbles"].values()
        assert sorted(manifest["dists"]) == ["app", "dep-a", "dep-b"]
        if last:
            check_bubble_imports(sys.executable, store, "app", ["app.m000", "dep_a.m000", "dep_b"])

    points = _every_kill_point(template, here, lambda s: bubbles.bubble_from_wheels(s, app_wheels, "app"),
                               after_each, limit)
    assert len(points) >= (limit or 40)  # sanity: the writer was watched


@LIMITS
def test_kill_before_every_filesystem_call_of_uninstall_and_gc(here, small_wheels, request, limit):
    if limit is None:
        _skip_unless_asked(request)
    both = here / "both"
    bubbles.bubble_from_wheels(Store(str(both)), small_wheels[:3], "app")
    bubbles.bubble_from_wheels(Store(str(both)), [small_wheels[1], small_wheels[3]], "keeper")
    assert sorted(check_store(both)["dists"]) == [f"dists/{n}/1.0/py3-none-any" for n in ("app", "dep-a", "dep-b", "keeper")]

    def keeper_intact(store: Path) -> dict:
        state = check_store(store)
        assert any(rel.startswith("bubbles/keeper/") for rel in state["bubbles"])
        return state

    def after_uninstall_killed(store: Path, last: bool) -> None:
        state = keeper_intact(store)
        if any(rel.startswith("bubbles/app/") for rel in state["bubbles"]):
            assert uninstall.remove_bubble(Store(str(store)), "app", "1.0", None) == [CURRENT.key]
        assert not any(rel.startswith("bubbles/app/") for rel in keeper_intact(store)["bubbles"])

    uninstall_points = _every_kill_point(
        both, here, lambda s: uninstall.remove_bubble(s, "app", "1.0", None), after_uninstall_killed, limit)

    garbage = _copy_store(both, here / "garbage")
    uninstall.remove_bubble(Store(str(garbage)), "app", "1.0", None)

    def after_gc_killed(store: Path, last: bool) -> None:
        keeper_intact(store)
        gc.collect(Store(str(store)))  # the same again
        state = keeper_intact(store)
        assert sorted(state["dists"]) == ["dists/dep-a/1.0/py3-none-any", "dists/keeper/1.0/py3-none-any"]
        assert {k: v for k, v in gc.garbage(Store(str(store))).items() if v} == {}
        if last:
            check_bubble_imports(sys.executable, store, "keeper", ["keeper.m000", "dep_a.m000"])

    gc_points = _every_kill_point(garbage, here, gc.collect, after_gc_killed, limit)
    assert len(uninstall_points) >= 3 and len(gc_points) >= min(limit or 40, 40)


# -- concurrency -----------------------------------------------------------------------

_GC_LOOP = """
import os, sys, time
from omnipkg_hook.store import Store
from omnipkg_pip.writers import collect as gc
store, stop = Store(sys.argv[1]), sys.argv[2]
rounds = 0
while True:  # at least one round, however late this process starts
    gc.collect(store)
    rounds += 1
    if os.path.exists(stop):
        break
    time.sleep(0.02)
print(rounds)
"""


def test_concurrent_installs_of_overlapping_bubbles_while_gc_loops(venv, wheels, here):
    store = here / "store"
    env = _env(venv, here, store)
    main_before = _main_digest(venv)
    stop = here / "stop"
    looping = subprocess.Popen([str(venv.python), "-c", _GC_LOOP, str(store), str(stop)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    roots = ["crashroot==1.0", "other-x==1.0", "other-y==1.0"]
    installs = [subprocess.Popen([str(venv.path / "bin" / "pip-omni"), *INSTALL, str(wheels), root], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for root in roots]
    results = [(*p.communicate(timeout=240), p.returncode)[::-1] for p in installs]  # (code, err, out)
    stop.touch()
    gc_out, gc_err = looping.communicate(timeout=60)

    for root, (code, err, _out) in zip(roots, results):
        assert code == 0, f"{root}: {err}"
    assert looping.returncode == 0, gc_err
    assert int(gc_out) >= 1
    assert _main_digest(venv) == main_before
    venv.run("gc", env=env)  # nothing may be garbage: every dist belongs to a bubble
    state = check_store(store)
    assert sorted(state["dists"]) == [f"dists/{n}/1.0/py3-none-any"
                                      for n in ("crashroot", "other-x", "other-y", "shared-a", "shared-b")]
    paths = {rel.split("/")[1]: {n: d["path"] for n, d in m["dists"].items()} for rel, m in state["bubbles"].items()}
    assert paths == {
        "crashroot": {"crashroot": "dists/crashroot/1.0/py3-none-any", "shared-a": "dists/shared-a/1.0/py3-none-any",
                      "shared-b": "dists/shared-b/1.0/py3-none-any"},
        "other-x": {"other-x": "dists/other-x/1.0/py3-none-any", "shared-a": "dists/shared-a/1.0/py3-none-any"},
        "other-y": {"other-y": "dists/other-y/1.0/py3-none-any", "shared-a": "dists/shared-a/1.0/py3-none-any",
                    "shared-b": "dists/shared-b/1.0/py3-none-any"},
    }
    # The shared dists exist once: each of their package files has one link besides its object.
    for package in ("shared_a", "shared_b"):
        dist = store / "dists" / package.replace("_", "-") / "1.0" / "py3-none-any" / package
        assert {p.stat().st_nlink for p in dist.rglob("*") if p.is_file()} == {2}
    check_bubble_imports(venv.python, store, "crashroot", CRASHROOT_MODULES)
    check_bubble_imports(venv.python, store, "other-x", ["other_x.m010", "shared_a.m010"])
    check_bubble_imports(venv.python, store, "other-y", ["other_y.m010", "shared_a.m011", "shared_b.m012"])


_GC_NOW = """
import sys
from omnipkg_hook.store import Store, WriteLock
from omnipkg_pip.writers import collect as gc
store = Store(sys.argv[1])
with WriteLock(store, on_wait=lambda: print("waiting", flush=True)):
    gc.collect(store)
print("collected", flush=True)
"""


def test_a_gc_between_resolving_and_publishing_cannot_leave_a_bubble_of_deleted_dists(store, tmp_path, monkeypatch):
    # The stored dists of an uninstalled bubble are garbage until a bubble uses them again.
    wheels = [make_wheel(tmp_path, "app", "1.0", requires=["dep"]), make_wheel(tmp_path, "dep", "1.0")]
    bubbles.bubble_from_wheels(store, wheels, "app")
    uninstall.remove_bubble(store, "app", "1.0", None)
    real = bubbles.resolve_closure
    said = []

    def resolve_then_let_gc_run(*args, **kwargs):
        picked = real(*args, **kwargs)
        other = subprocess.Popen([sys.executable, "-c", _GC_NOW, store.root], stdout=subprocess.PIPE, text=True)
        said.append(other.stdout.readline().strip())  # "waiting" if we hold the lock, else it ran
        said.append(other)
        return picked

    monkeypatch.setattr(bubbles, "resolve_closure", resolve_then_let_gc_run)
    manifest = bubbles.bubble_from_store(store, "app")
    said[1].wait(timeout=60)

    assert said[0] == "waiting"
    assert sorted(manifest["dists"]) == ["app", "dep"]
    check_store(Path(store.root))
    assert sorted(check_store(Path(store.root))["dists"]) == ["dists/app/1.0/py3-none-any", "dists/dep/1.0/py3-none-any"]
