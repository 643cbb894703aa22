"""using(): switching inside one process, exact restore, nesting, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import omnipkg_hook
from omnipkg_hook import finder
from omnipkg_hook.errors import BubbleNotFoundError, PinConflictError
from omnipkg_hook.store import interpreter_key

from .conftest import module_files, needs_pth
from .digest import tree_digest

KEY = interpreter_key()


@pytest.fixture
def three(store, bubble, main_site, wheel):
    """omt-a 1.0 in main, 2.0 and 3.0 in bubbles (3.0 with a console script)."""
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0", {"omt_a/sub.py": "S = '1.0'"})))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/sub.py": "S = '2.0'"})))
    bubble("omt-a==3.0", ("omt-a", "3.0", module_files("omt_a", "3.0", {"omt_a/sub.py": "S = '3.0'"}),
                          {"entry_points": {"console_scripts": {"omt-a-tool": "omt_a:main"}}}))  # fmt: skip
    return store


def _version():
    import omt_a
    import omt_a.sub

    assert omt_a.sub.S == omt_a.VERSION
    return omt_a.VERSION


def test_switch_between_main_and_two_bubbles(three):
    assert _version() == "1.0"
    outer = sys.modules["omt_a"]
    with omnipkg_hook.using("omt-a==2.0") as ctx:
        assert _version() == "2.0"
        import importlib.metadata as md

        assert md.version("omt-a") == "2.0"
        with omnipkg_hook.using("omt-a==3.0"):
            assert _version() == "3.0" and md.version("omt-a") == "3.0"
        assert _version() == "2.0" and md.version("omt-a") == "2.0"
    assert isinstance(ctx, omnipkg_hook.using)
    assert sys.modules["omt_a"] is outer and _version() == "1.0"
    with omnipkg_hook.using("omt-a==1.0"):  # main satisfies: nothing is purged
        assert sys.modules["omt_a"] is outer
    assert finder.FINDER.routes == {} and omnipkg_hook.pins() == []


def test_using_restores_modules_routes_env_and_path_exactly(three, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    omnipkg_hook.pin("omt-a==2.0")
    assert _version() == "2.0"
    modules = {k: v for k, v in sys.modules.items() if k.startswith("omt_a")}
    routes, env = finder.FINDER.routes, {k: os.environ.get(k) for k in ("OMNIPKG_PINS", "OMNIPKG_STORE", "PATH")}
    with omnipkg_hook.using("omt-a==3.0"):
        assert _version() == "3.0"
        assert os.environ["OMNIPKG_PINS"] == "omt-a==3.0"
        assert os.environ["PATH"].split(":")[0] == three.bubble_bin("omt-a", "3.0", KEY)
    assert {k: v for k, v in sys.modules.items() if k.startswith("omt_a")} == modules
    assert finder.FINDER.routes is routes
    assert {k: os.environ.get(k) for k in ("OMNIPKG_PINS", "OMNIPKG_STORE", "PATH")} == env
    assert omnipkg_hook.pins() == ["omt-a==2.0"]


def test_using_restores_when_the_block_raises(three):
    assert _version() == "1.0"
    with pytest.raises(KeyError, match="inside"):
        with omnipkg_hook.using("omt-a==2.0"):
            assert _version() == "2.0"
            raise KeyError("inside")
    assert _version() == "1.0" and "OMNIPKG_PINS" not in os.environ and not finder.installed()


def test_using_that_cannot_resolve_changes_nothing(three):
    assert _version() == "1.0"
    with pytest.raises(BubbleNotFoundError):
        with omnipkg_hook.using("omt-a==9.0"):
            raise AssertionError("not reached")
    assert _version() == "1.0" and omnipkg_hook.pins() == []


def test_pins_made_inside_using_are_undone_on_exit(three, bubble):
    bubble("omt-b==1.0", ("omt-b", "1.0", module_files("omt_b", "1.0")))
    with omnipkg_hook.using("omt-a==2.0"):
        omnipkg_hook.pin("omt-b==1.0")
        import omt_b  # noqa: F401

        assert omnipkg_hook.pins() == ["omt-a==2.0", "omt-b==1.0"]
    assert omnipkg_hook.pins() == [] and "omt_b" not in sys.modules


def test_same_using_object_nests_and_omnipkgloader_is_an_alias(three):
    block = omnipkg_hook.using("omt-a==2.0")
    with block:
        with omnipkg_hook.using("omt-a==3.0"):
            with block:
                assert _version() == "2.0"
            assert _version() == "3.0"
        assert _version() == "2.0"
    assert _version() == "1.0"
    with omnipkg_hook.omnipkgLoader("omt-a==3.0", quiet=True):
        assert _version() == "3.0"
    assert _version() == "1.0"


def test_using_conflicting_with_an_active_pin_raises_before_changing_anything(store, bubble):
    bubble("omt-x==1.0", ("omt-x", "1.0", module_files("omt_x", "1.0"), {"requires": ["omt-lib<2"]}),
           ("omt-lib", "1.0", module_files("omt_lib", "1.0")))  # fmt: skip
    bubble("omt-y==1.0", ("omt-y", "1.0", module_files("omt_y", "1.0"), {"requires": ["omt-lib>=2"]}),
           ("omt-lib", "2.0", module_files("omt_lib", "2.0")))  # fmt: skip
    omnipkg_hook.pin("omt-x==1.0")
    routes = finder.FINDER.routes
    with pytest.raises(PinConflictError):
        with omnipkg_hook.using("omt-y==1.0"):
            pass
    assert finder.FINDER.routes is routes and omnipkg_hook.pins() == ["omt-x==1.0"]


@needs_pth
def test_sigkill_inside_using_leaves_every_file_as_it_was(three, main_site, tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import omnipkg_hook
        omnipkg_hook.pin("omt-a==2.0")
        import omt_a
        with omnipkg_hook.using("omt-a==3.0"):
            import omt_a.sub, importlib.metadata
            assert importlib.metadata.version("omt-a") == "3.0"
            print("inside", omt_a.sub.S, flush=True)
            time.sleep(60)
    """))
    import sysconfig

    # The store is watched whole, .pyc included: the child may write bytecode (it is not
    # told otherwise) and must not write any there. Other tools' .pyc in site-packages may.
    def digest():
        return tree_digest(three.root), tree_digest(str(main_site.path), sysconfig.get_paths()["purelib"],
                                                    skip=("__pycache__",))  # fmt: skip

    before = digest()
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env.update({"OMNIPKG_STORE": three.root, "PYTHONPATH": str(main_site.path)})
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        assert line == b"inside 3.0\n", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.05)
    assert digest() == before
    # and a fresh process still gets what it asks for
    out = subprocess.run([sys.executable, "-c", "import omt_a; print(omt_a.VERSION)"],
                         env={**env, "OMNIPKG_PINS": "omt-a==3.0"}, capture_output=True, text=True)  # fmt: skip
    assert out.stdout == "3.0\n", out.stderr


# -- the resolution cache: a second enter of the same pins does not resolve again ---------------


@pytest.fixture
def counted(monkeypatch):
    """How many times the pins resolve (``pins.resolve`` wrapped), once the stamps of the store
    and of sys.path are old enough to be trusted (startcache._RACY_NS)."""
    from omnipkg_hook import pins, startcache

    calls = []
    real = pins.resolve

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(pins, "resolve", counting)
    time.sleep(2 * startcache._RACY_NS / 1e9)  # not a timing assertion: lets the clock pass the stamps
    return calls


def test_second_enter_of_the_same_pins_does_not_resolve_again(three, counted):
    for _ in range(3):
        with omnipkg_hook.using("omt-a==2.0"):
            assert _version() == "2.0"
        assert _version() == "1.0"
    assert len(counted) == 1
    with omnipkg_hook.using("omt-a==3.0"):  # other pins: resolved, then remembered too
        assert _version() == "3.0"
    with omnipkg_hook.using("omt-a==3.0"):
        assert _version() == "3.0"
    assert len(counted) == 2
    finder.FINDER.invalidate_caches()  # importlib.invalidate_caches() while the finder is installed
    with omnipkg_hook.using("omt-a==2.0"):
        assert _version() == "2.0"
    assert len(counted) == 3


def test_a_bubble_added_or_removed_after_an_enter_is_seen_by_the_next(three, bubble, counted):
    from omnipkg_pip.commands.uninstall import remove_bubble

    with omnipkg_hook.using("omt-a>=2"):
        assert _version() == "3.0"
    bubble("omt-a==4.0", ("omt-a", "4.0", module_files("omt_a", "4.0", {"omt_a/sub.py": "S = '4.0'"})))
    with omnipkg_hook.using("omt-a>=2"):
        assert _version() == "4.0"
    assert remove_bubble(three, "omt-a", "4.0", KEY)
    with omnipkg_hook.using("omt-a>=2"):
        assert _version() == "3.0"
    assert len(counted) == 3


def test_a_routed_dist_deleted_after_an_enter_is_resolved_and_repaired_on_the_next(three, counted):
    import shutil

    with omnipkg_hook.using("omt-a==2.0"):
        assert _version() == "2.0"
        dist = omnipkg_hook.pins.plan().routed()[0].path
    shutil.rmtree(dist)  # what a damaged store looks like; its objects are still there
    with omnipkg_hook.using("omt-a==2.0"):
        assert _version() == "2.0"
    assert len(counted) == 2 and os.path.isdir(dist)


def test_using_in_a_removed_working_directory_resolves_without_remembering(three, tmp_path, monkeypatch, counted):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # os.getcwd() now raises: the cache has nothing to key on
    for _ in range(2):
        with omnipkg_hook.using("omt-a==2.0"):
            assert _version() == "2.0"
    assert len(counted) == 2
