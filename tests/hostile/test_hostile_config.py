"""Configuration another user controls, links out of the store, pin files that are not files,
and start-up failures under OMNIPKG_STRICT=1 (issue 9, items 4 and 5).

Each case builds the hostile input and asserts the one line, the exit status and that the
store is byte-identical (``store_state``: bytes, inode, mode, links, owner).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from conftest import store_state
from tc_support import NOBODY, ROOT, build_store, child_env, cli, one_error, tried

from omnipkg_hook.store import Store

needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="files owned by another uid are made with os.chown, which needs root")

READERS = "from omnipkg_hook.store import find_store; print(find_store())"


def _both_readers(cwd, env):
    """What the hook (stdlib, a pinned start-up's reader) and the pip side decide for ``cwd``."""
    hook = subprocess.run([sys.executable, "-c", READERS], capture_output=True, text=True, cwd=cwd, env=env)
    pip_side = subprocess.run([sys.executable, "-m", "omnipkg_pip", "store", "info", "--json"],
                              capture_output=True, text=True, cwd=cwd, env=env)
    assert hook.returncode == 0 and pip_side.returncode == 0, (hook.stderr, pip_side.stderr)
    return hook, pip_side, json.loads(pip_side.stdout)["store"]


@pytest.fixture
def xdg(tmp_path):
    """No OMNIPKG_STORE: the default store is under this test's XDG_DATA_HOME."""
    env = child_env(None, XDG_DATA_HOME=str(tmp_path / "xdg"), XDG_STATE_HOME=str(tmp_path / "state"))
    return env, os.path.join(str(tmp_path / "xdg"), "pip-omni")


def test_own_pyproject_names_the_store_for_both_readers(tmp_path, xdg):
    env, _default = xdg
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.omnipkg]\nstore = "here-store"\n')
    hook, _pip, decided = _both_readers(project / "src", env)
    assert hook.stdout.strip() == decided == str(project / "here-store")
    assert hook.stderr == ""


@needs_root
@pytest.mark.parametrize("owned", ["file", "directory"])
def test_a_pyproject_another_user_controls_is_ignored_with_one_warning(tmp_path, xdg, owned):
    env, default = xdg
    project = tmp_path / "project"
    inner = project / "inner"
    inner.mkdir(parents=True)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(f'[tool.omnipkg]\nstore = "{tmp_path}/evil-store"\n')
    if owned == "file":
        os.chown(pyproject, NOBODY, NOBODY)
        why = f"it is owned by uid {NOBODY}"
    else:  # our own file in a directory another user owns: the walk stops there (safe.directory)
        os.chown(project, NOBODY, NOBODY)
        why = f"its directory {str(project)!r} is owned by uid {NOBODY}"
    tried(f"pyproject.toml: {owned} owned by another uid")
    before = store_state(tmp_path)

    hook, pip_side, decided = _both_readers(inner, env)

    assert hook.stdout.strip() == decided == default  # both readers agree: the default store
    for proc in (hook, pip_side):
        assert proc.stderr.splitlines() == [
            f"pip-omni: warning: ignoring [tool.omnipkg] in {str(pyproject)!r}: {why}, not by you (uid 0) "
            "or root; using the default store (set OMNIPKG_STORE to choose one)"]
    assert not (tmp_path / "evil-store").exists()
    assert store_state(tmp_path) == before

    # a pinned start-up reads it the same way: the pin is looked up in the default store
    pinned = subprocess.run([sys.executable, "-c", "import os; print(os.environ.get('OMNIPKG_STORE'))"],
                            capture_output=True, text=True, cwd=inner, env={**env, "OMNIPKG_PINS": "omt-none==1"})
    assert pinned.returncode == 0 and "evil-store" not in pinned.stdout + pinned.stderr
    assert f"ignoring [tool.omnipkg] in {str(pyproject)!r}" in pinned.stderr


@pytest.fixture
def built(store, wheel):
    return build_store(store, wheel)


LINKED = ["tmp", "bin", "quarantine", "dists", "objects"]


@pytest.mark.parametrize("name", LINKED)
def test_a_store_directory_that_is_a_link_out_of_the_store_is_refused(built, tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").mkdir()
    (outside / "precious" / "keep.txt").write_text("not the store's")
    path = os.path.join(built.root, name)
    if os.path.exists(path):
        os.rename(path, str(outside / f"real-{name}"))
    os.symlink(outside, path)
    tried(f"store {name}/ is a symlink out of the store")
    before = store_state(built.root, outside)

    for args in (["gc"], ["doctor", "--repair"], ["uninstall", "-y", "omt-app==1.0"]):
        message, hint = one_error(cli(built.root, *args))
        assert message == (f"cannot write the store {built.root!r}: {name}/ is a symbolic link (to {str(outside)!r}); "
                           "pip-omni never follows a link out of the store"), args
        assert hint == f"make {path} a real directory (or remove it) and rerun"
        assert store_state(built.root, outside) == before, args


def test_gc_never_follows_a_link_inside_dists_or_bin(built, tmp_path):
    outside = tmp_path / "outside"
    (outside / "1.0" / "py3-none-any").mkdir(parents=True)
    (outside / "1.0" / "py3-none-any" / "keep.txt").write_text("not the store's")
    os.symlink(outside, os.path.join(built.dists, "omt-evil"))  # no bubble references it: "garbage"
    os.makedirs(built.bin, exist_ok=True)
    os.symlink(outside, os.path.join(built.bin, "omt-evil-1.0-key"))
    tried("dists/<name> and bin/<dir> symlinked out of the store")
    before = store_state(outside)

    proc = cli(built.root, "gc", "--json")

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dists"] == 0 and json.loads(proc.stdout)["bins"] == 0
    assert store_state(outside) == before and (outside / "1.0" / "py3-none-any" / "keep.txt").exists()


@pytest.mark.parametrize("level", ["dist", "name"])
def test_doctor_repair_sets_aside_a_link_in_dists_and_never_reads_or_writes_through_it(built, tmp_path, level):
    # a dist directory (or its name directory) replaced by a link to a look-alike outside the
    # store: checking must not read it, repairing must neither hard-link its files into the
    # store (an object another user could edit) nor write through it
    name_dir = os.path.join(built.dists, "omt-lib")
    (tag,) = os.listdir(os.path.join(name_dir, "1.0"))
    outside = tmp_path / "outside"
    shutil.copytree(name_dir if level == "name" else os.path.join(name_dir, "1.0", tag), outside)
    dist_outside = outside / "1.0" / tag if level == "name" else outside
    (dist_outside / "extra.txt").write_text("mine")
    os.unlink(dist_outside / "omt_lib" / "__init__.py")
    linked = name_dir if level == "name" else os.path.join(name_dir, "1.0", tag)
    shutil.rmtree(linked)
    os.symlink(outside, linked)
    tried(f"dists: the {level} directory is a link out of the store")
    before = store_state(str(outside))

    found = json.loads(cli(built.root, "doctor", "--json").stdout)
    rel = os.path.relpath(linked, built.root)
    assert [p["detail"] for p in found["problems"] if p["path"] == rel] == [
        f"a symbolic link (to {str(outside)!r}), never followed: pip-omni makes none; --repair sets it aside and "
        "rebuilds what bubbles name"]
    assert not any("extra.txt" in (p["file"] or "") for p in found["problems"])  # nothing read through it

    repaired = cli(built.root, "doctor", "--repair", "--json")
    actions = json.loads(repaired.stdout)["actions"]
    assert actions[0]["action"] == "set aside" and actions[0]["path"] == rel, actions
    assert store_state(str(outside)) == before  # not one link count changed
    quarantined = os.path.join(built.root, actions[0]["detail"].rsplit("now ", 1)[1])
    assert os.path.islink(quarantined) and os.readlink(quarantined) == str(outside)
    assert not os.path.islink(linked) and os.path.isdir(linked)
    assert json.loads(cli(built.root, "doctor", "--json").stdout)["clean"]
    pinned = subprocess.run([sys.executable, "-c", "import omnipkg_hook; omnipkg_hook.pin('omt-app==1.0'); "
                             "import omt_lib; print(omt_lib.VERSION, omt_lib.__file__)"],
                            capture_output=True, text=True, env=child_env(built.root), timeout=120)
    assert pinned.returncode == 0 and pinned.stdout.startswith("1.0 " + built.root), pinned.stderr


def test_a_pin_repairs_a_dist_directory_that_is_a_link_without_linking_from_it(built, tmp_path):
    # the same look-alike behind a link, met by a pin: self-repair must rebuild the dist from
    # the bubble's record, never hard-link the other tree's manifests into the store
    (tag,) = os.listdir(os.path.join(built.dists, "omt-lib", "1.0"))
    dist = os.path.join(built.dists, "omt-lib", "1.0", tag)
    outside = tmp_path / "outside"
    shutil.copytree(dist, outside)
    os.unlink(outside / "omt_lib" / "__init__.py")
    shutil.rmtree(dist)
    os.symlink(outside, dist)
    tried("a pin meets a dist directory that is a link out of the store")
    before = store_state(str(outside))

    pinned = subprocess.run([sys.executable, "-c", "import omnipkg_hook; omnipkg_hook.pin('omt-app==1.0'); "
                             "import omt_lib; print(omt_lib.VERSION, omt_lib.__file__)"],
                            capture_output=True, text=True, env=child_env(built.root), timeout=120)

    assert pinned.returncode == 0 and pinned.stdout == f"1.0 {dist}/omt_lib/__init__.py\n", pinned.stderr
    assert "repaired omt-lib 1.0 in the store (its directory is a symbolic link) from objects; the link is now" \
        in pinned.stderr, pinned.stderr
    assert store_state(str(outside)) == before  # not one link count changed
    assert not os.path.islink(dist)
    assert json.loads(cli(built.root, "doctor", "--json").stdout)["clean"]


@needs_root
@pytest.mark.parametrize("where", ["root", "tmp", "objects"])
def test_a_store_directory_owned_by_another_user_is_not_written(built, where):
    path = built.root if where == "root" else os.path.join(built.root, where)
    os.makedirs(path, exist_ok=True)
    os.chown(path, NOBODY, NOBODY)
    tried(f"store {where} owned by another uid")
    before = store_state(built.root)
    for args in (["gc"], ["doctor", "--repair"], ["store", "import", os.devnull]):
        message, hint = one_error(cli(built.root, *args))
        if where == "root":
            assert message == f"cannot write the store {built.root!r}: it belongs to uid {NOBODY}, not to you (uid 0)"
            assert hint.startswith("read-only commands (list, show, why, doctor, pins) work there")
        else:
            assert message == f"cannot write the store {built.root!r}: {where}/ is owned by uid {NOBODY}, not by you"
        assert store_state(built.root) == before
    assert cli(built.root, "list").returncode == 0  # reading it is fine


def test_new_store_directories_are_0755_whatever_the_umask(store, wheel):
    old = os.umask(0o077)
    try:
        build_store(store, wheel)
        from omnipkg_pip.remote import open_backend, sync
        from omnipkg_pip.writers import archive

        out = os.path.join(os.path.dirname(store.root), "a.tar")
        archive.export(store, out)
        other = Store(os.path.join(os.path.dirname(store.root), "other"))
        archive.import_archive(other, out)
        remote = os.path.join(os.path.dirname(store.root), "remote")
        sync.push(store, open_backend("file://" + remote))  # a folder remote is a store too
        # a pin repairs a dist whose package directory is gone: the directories it makes again
        (lib,) = [os.path.join(other.dists, "omt-lib", "1.0", t) for t in os.listdir(os.path.join(other.dists, "omt-lib", "1.0"))]
        shutil.rmtree(os.path.join(lib, "omt_lib"))
        pinned = subprocess.run([sys.executable, "-c", "import omnipkg_hook; omnipkg_hook.pin('omt-app==1.0'); "
                                 "import omt_lib; print(omt_lib.VERSION)"], capture_output=True, text=True,
                                env=child_env(other.root), timeout=120)
        assert pinned.returncode == 0 and pinned.stdout == "1.0\n", pinned.stderr
        assert "repaired omt-lib 1.0" in pinned.stderr, pinned.stderr
    finally:
        os.umask(old)
    for root in (store.root, other.root, remote):
        for dirpath, dirnames, _files in os.walk(root):
            for d in [dirpath, *(os.path.join(dirpath, n) for n in dirnames)]:
                assert stat.S_IMODE(os.lstat(d).st_mode) == 0o755, d


# -- OMNIPKG_PINS=@file ---------------------------------------------------------------------


def _pinned(env, value, strict=False, timeout=20):
    env = {**env, "OMNIPKG_PINS": value}
    if strict:
        env["OMNIPKG_STRICT"] = "1"
    return subprocess.run([sys.executable, "-c", "print('started')"], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _special(kind, tmp_path):
    if kind == "fifo":
        path = tmp_path / "pins.fifo"
        os.mkfifo(path)  # nobody ever writes it: a blocking open would hang the interpreter
        return str(path), "not a regular file (it is a FIFO)"
    if kind == "device":
        return "/dev/zero", "not a regular file (it is a device)"
    if kind == "directory":
        return str(tmp_path), "not a regular file (it is a directory)"
    path = tmp_path / "huge.txt"
    with open(path, "wb") as f:
        f.write(b"# padding\n" * ((1 << 20) // 10 + 1))
    return str(path), f"larger than {1 << 20} bytes ({os.path.getsize(path)})"


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "oversized"])
def test_a_pin_file_that_is_not_a_small_regular_file_is_one_line(built, tmp_path, kind):
    path, why = _special(kind, tmp_path)
    tried(f"OMNIPKG_PINS=@{kind}")
    env = child_env(built.root)
    before = store_state(built.root)

    loose = _pinned(env, f"@{path}")
    assert loose.returncode == 0 and loose.stdout == "started\n"
    line = (f"pip-omni: warning: ignoring OMNIPKG_PINS: cannot read pin file {path!r}: {why}; starting without "
            "pins (set OMNIPKG_STRICT=1 to make this fatal) (hint: OMNIPKG_PINS=@path names a regular "
            "requirements-style file (at most 1 MiB) with one pin per line)")
    assert loose.stderr.splitlines() == [line]

    strict = _pinned(env, f"@{path}", strict=True)
    assert strict.returncode == 1 and strict.stdout == ""
    assert strict.stderr.splitlines() == [line.replace("warning", "error").replace(
        "; starting without pins (set OMNIPKG_STRICT=1 to make this fatal)", "")]
    assert store_state(built.root) == before


INJECT = {  # a failure the start-up path does not expect, raised where it would be
    "MemoryError in the cache": ("omnipkg_hook.finder", "load", "MemoryError()"),
    "a bug in resolving": ("omnipkg_hook.pins", "from_environment", "RuntimeError('boom')"),
    "KeyboardInterrupt": ("omnipkg_hook.pins", "from_environment", "KeyboardInterrupt()"),
}

# What the child prints once it runs user code: whether the pinned omt-app is importable
# (the main environment has no omt-app: only a pin makes it so).
STARTED = "import importlib.util as u; print('started', u.find_spec('omt_app') is not None)"
LOOSE_TAIL = "; starting without pins (set OMNIPKG_STRICT=1 to make this fatal)"


def _strict_then_loose(args, env, name, before_root):
    """Strict: status 1, nothing run, one error line naming ``name``. Not strict: Python runs
    user code without pins after one warning line -- or, for an interrupt, does not start."""
    pinned = {**env, "OMNIPKG_PINS": "omt-app==1.0"}
    before = store_state(before_root)
    strict = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                            env={**pinned, "OMNIPKG_STRICT": "1"})
    assert strict.returncode == 1 and strict.stdout == "", (strict.stdout, strict.stderr)
    lines = strict.stderr.strip().splitlines()
    head = f"OMNIPKG_PINS='omt-app==1.0' cannot be applied: {name}"
    assert len(lines) == 1 and lines[0].startswith(f"pip-omni: error: {head}"), lines
    assert lines[0].endswith("; OMNIPKG_STRICT=1 stops here")
    loose = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, env=pinned)
    if name == "KeyboardInterrupt":  # not swallowed: the interpreter does not start
        assert loose.returncode != 0 and "started" not in loose.stdout, (loose.stdout, loose.stderr)
    else:
        assert (loose.returncode, loose.stdout) == (0, "started False\n"), (loose.stdout, loose.stderr)
        lines = loose.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"pip-omni: warning: {head}"), lines
        assert lines[0].endswith(LOOSE_TAIL)
    assert store_state(before_root) == before


@pytest.mark.parametrize("case", sorted(INJECT))
def test_strict_never_starts_python_without_its_pins(built, case):
    module, attr, exc = INJECT[case]
    # -S: site runs only when the code says so, after it broke one function of the start-up
    # path; site.main() then processes omnipkg_hook.pth as any start-up does.
    code = (f"import site, {module} as m\ndef f(*a, **k):\n raise {exc}\nsetattr(m, {attr!r}, f)\n"
            f"site.main()\n{STARTED}")
    tried(f"start-up failure: {case}")
    _strict_then_loose(["-S", "-c", code], child_env(built.root, PYTHONPATH=ROOT), exc.split("(")[0], built.root)


# Failures of importing the start-up code itself: the .pth line's own handler reports them.
IMPORT_FAILS = {  # module, exception, only the first time (the venv's .pth runs twice here)
    "MemoryError importing omnipkg_hook": ("omnipkg_hook", "MemoryError", False),
    "MemoryError importing omnipkg_hook.finder": ("omnipkg_hook.finder", "MemoryError", False),
    "ImportError importing omnipkg_hook.finder": ("omnipkg_hook.finder", "ImportError", False),
    "MemoryError importing omnipkg_hook.finder, once": ("omnipkg_hook.finder", "MemoryError", True),
}


@pytest.mark.parametrize("case", sorted(IMPORT_FAILS))
def test_strict_stops_when_the_start_up_code_cannot_even_be_imported(built, case):
    name, exc, once = IMPORT_FAILS[case]
    # A meta path finder that fails for one module, put first before site processes the .pth;
    # "once": a second try would succeed, and must not pin after the warning said it would not.
    code = ("import site, sys\nclass Fail:\n fired = False\n def find_spec(self, fullname, path=None, target=None):\n"
            f"  if fullname == {name!r} and not (self.fired and {once}):\n   self.fired = True\n"
            f"   raise {exc}('injected')\n"
            f"sys.meta_path.insert(0, Fail())\nsite.main()\nsys.meta_path.pop(0)\n{STARTED}")
    tried(f"start-up import failure: {case}")
    _strict_then_loose(["-S", "-c", code], child_env(built.root), exc, built.root)


def test_strict_stops_when_a_broken_package_shadows_the_hook(built, tmp_path):
    shadow = tmp_path / "shadow" / "omnipkg_hook"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("def broken(:\n")  # found first: PYTHONPATH precedes site-packages
    tried("start-up: a broken omnipkg_hook package shadows the hook")
    _strict_then_loose(["-c", STARTED], child_env(built.root, PYTHONPATH=str(tmp_path / "shadow")), "SyntaxError",
                       built.root)
