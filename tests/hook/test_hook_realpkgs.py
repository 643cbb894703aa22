"""Pins hold against what real packages do (issue 10), each class with a tiny wheel:

1. other import hooks ahead of ours that ask ``PathFinder`` themselves (pytest's assertion
   rewriter loading a ``pytest11`` plugin, any delegating finder inserted later);
4. main-environment dependents whose requirement a pin leaves unmet are named;
5. a bubble's data scripts (``.data/scripts``) are on ``PATH`` for a pinned process;
6. ``pkg_resources`` reports the pinned distributions;
8. finders and path hooks a package adds inside ``using()`` are gone after it.

(Classes 2, 3, 5 and 7 need a real site directory or pip-omni's CLI: test_hook_realsite.py.)
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import textwrap

import pytest

import omnipkg_hook
from omnipkg_hook import finder
from omnipkg_hook.store import interpreter_key

from .conftest import module_files, needs_pth

# -- 1. other finders that delegate to PathFinder ------------------------------------------


class _Delegating:
    """A third-party meta-path finder (an import profiler, an editable finder) that asks PathFinder."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_spec(self, name, path=None, target=None):
        self.asked.append(name)
        return importlib.machinery.PathFinder.find_spec(name, path, target)


def test_a_finder_inserted_first_after_the_pin_that_asks_pathfinder_gets_the_store(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0", {"omt_a/sub.py": "S = 1"})))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/sub.py": "S = 2"})))
    omnipkg_hook.pin("omt-a==2.0")
    other = _Delegating()
    sys.meta_path.insert(0, other)
    try:
        import omt_a
        import omt_a.sub
    finally:
        sys.meta_path.remove(other)
    assert "omt_a" in other.asked  # it answered, not our finder
    assert (omt_a.VERSION, omt_a.sub.S) == ("2.0", 2)
    assert omt_a.__file__.startswith(store.root + os.sep)
    # Whoever asks: PathFinder itself, with the default path or main's directory explicitly.
    spec = importlib.machinery.PathFinder.find_spec("omt_a")
    assert spec.origin == omt_a.__file__
    assert importlib.machinery.PathFinder.find_spec("omt_a", [str(main_site.path)]).origin == omt_a.__file__


def test_unpinned_names_in_a_shadowed_entry_and_unpin_give_the_entry_back(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0")))
    main_site.install(wheel("omt-b", "1.0", module_files("omt_b", "1.0")))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    omnipkg_hook.pin("omt-a==2.0")
    entry = str(main_site.path)
    assert finder.FINDER.entries == [entry]
    assert type(sys.path_importer_cache[entry]) is finder.RoutingFileFinder
    assert isinstance(sys.path_importer_cache[entry], importlib.machinery.FileFinder)
    spec = importlib.machinery.PathFinder.find_spec("omt_b")
    assert spec.origin == str(main_site.path / "omt_b" / "__init__.py")
    omnipkg_hook.unpin()
    assert type(sys.path_importer_cache[entry]) is importlib.machinery.FileFinder
    assert finder.FINDER.entries == []
    assert importlib.machinery.PathFinder.find_spec("omt_a").origin == str(main_site.path / "omt_a" / "__init__.py")


def _plugin_wheel(wheel, version: str):
    files = {
        "omt_plug/__init__.py": textwrap.dedent(f"""\
            VERSION = {version!r}

            def pytest_report_header(config):
                loader = type(__spec__.loader).__name__
                return f"omt-plug {{VERSION}} from {{__file__}} loaded by {{loader}}"
            """),
    }
    return wheel("omt-plug", version, files, entry_points={"pytest11": {"omt_plug": "omt_plug"}})


@pytest.fixture
def plugin_case(tmp_path, store, bubble, main_site, wheel):
    """Main has omt-plug 1.0 (a pytest plugin); the store has 2.0; a test directory to run."""
    main_site.install(_plugin_wheel(wheel, "1.0"))
    bubble("omt-plug==2.0", _plugin_wheel(wheel, "2.0"))
    tests = tmp_path / "suite"
    tests.mkdir()
    (tests / "pytest.ini").write_text("[pytest]\n")
    (tests / "test_it.py").write_text(
        "import omt_plug\n\ndef test_version():\n    assert omt_plug.VERSION == '2.0', omt_plug.__file__\n"
    )
    return tests


def _pytest_saw(out: str, store) -> str:
    line = next(ln for ln in out.splitlines() if ln.startswith("omt-plug "))
    assert line.startswith("omt-plug 2.0 from " + store.root + os.sep), line
    return line


def test_pytest_imports_a_pinned_plugin_from_the_store_and_rewrites_it(plugin_case, store, run_python):
    code = (
        "import sys, omnipkg_hook, pytest\n"
        "omnipkg_hook.pin('omt-plug==2.0')\n"
        f"sys.exit(pytest.main(['-p', 'no:cacheprovider', {str(plugin_case)!r}]))\n"
    )
    proc = run_python(code)
    line = _pytest_saw(proc.stdout, store)
    assert line.endswith("loaded by AssertionRewritingHook")  # pytest's hook loaded it: the store's file
    assert "1 passed" in proc.stdout


@needs_pth
def test_pytest_under_startup_pins_imports_the_pinned_plugin(plugin_case, store, run_python):
    env = {"OMNIPKG_PINS": "omt-plug==2.0"}
    for _ in range(2):  # resolved, then from the start-up cache
        proc = run_python(
            f"import sys, pytest; sys.exit(pytest.main(['-p', 'no:cacheprovider', {str(plugin_case)!r}]))",
            env,
        )
        assert _pytest_saw(proc.stdout, store).endswith("loaded by AssertionRewritingHook")
        assert "1 passed" in proc.stdout


# -- 4. dependents a pin leaves unmet -----------------------------------------------------


@pytest.fixture
def dependents_case(store, bubble, main_site, wheel, monkeypatch):
    monkeypatch.delenv("OMNIPKG_QUIET", raising=False)
    main_site.install(wheel("omt-lib", "2.0", module_files("omt_lib", "2.0")))
    main_site.install(wheel("omt-app", "3.1", module_files("omt_app", "3.1"), requires=["omt-lib>=2"]))
    main_site.install(wheel("omt-fine", "1.0", module_files("omt_fine", "1.0"), requires=["omt-lib>=1"]))
    main_site.install(wheel("omt-win", "1.0", module_files("omt_win", "1.0"),
                            requires=['omt-lib>=3; sys_platform == "win32"'], extras={"x": ["omt-lib>=9"]}))
    bubble("omt-lib==1.0", ("omt-lib", "1.0", module_files("omt_lib", "1.0")))


def test_pin_names_the_main_dependent_it_breaks_in_one_line(dependents_case, capsys, monkeypatch):
    omnipkg_hook.pin("omt-lib==1.0")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pip-omni: warning: ")
    assert "omt-app 3.1 requires omt-lib>=2, pinned to omt-lib 1.0" in err[0]
    assert "pip-omni why omt-lib" in err[0] and "OMNIPKG_QUIET=1" in err[0]
    broken = omnipkg_hook.pins.plan().broken
    # omt-fine is satisfied; omt-win's requirement holds only on Windows or with an extra.
    assert [b["distribution"] for b in broken] == ["omt-app"]
    omnipkg_hook.pin("omt-lib==1.0")  # the same pins again: said once
    assert capsys.readouterr().err == ""
    omnipkg_hook.unpin()
    monkeypatch.setenv("OMNIPKG_QUIET", "1")
    omnipkg_hook.pin("omt-lib==1.0")
    assert capsys.readouterr().err == ""


def test_startup_warns_resolved_and_cached_and_quiet_silences(dependents_case, run_python):
    env = {"OMNIPKG_PINS": "omt-lib==1.0"}
    code = "import omt_lib; print(omt_lib.VERSION)"
    first = run_python(code, env)
    second = run_python(code, env)  # from the start-up cache
    for proc in (first, second):
        assert proc.stdout.strip() == "1.0"
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and "omt-app 3.1 requires omt-lib>=2" in lines[0], proc.stderr
    quiet = run_python(code, {**env, "OMNIPKG_QUIET": "1"})
    assert quiet.stderr == "" and quiet.stdout.strip() == "1.0"


def test_why_lists_every_broken_dependent(dependents_case, main_site, wheel, capsys):
    main_site.install(wheel("omt-app2", "0.5", module_files("omt_app2", "0.5"), requires=["omt-lib (>=1.5)"]))
    from omnipkg_pip import cli

    assert cli.main(["why", "omt-lib", "--pin", "omt-lib==1.0", "--json"]) == 0
    import json

    answer = json.loads(capsys.readouterr().out)
    assert [(b["distribution"], b["requires"]) for b in answer["breaks"]] == [
        ("omt-app", "omt-lib>=2"), ("omt-app2", "omt-lib>=1.5")]
    assert cli.main(["why", "omt-app", "--pin", "omt-lib==1.0"]) == 0
    out = capsys.readouterr().out
    assert "unmet in the main environment: omt-app 3.1 requires omt-lib>=2, served omt-lib 1.0 from the store" in out


@pytest.mark.parametrize(("marker", "holds"), [
    (f'python_version >= "{sys.version_info[0]}.{sys.version_info[1]}"', True),
    ('python_version < "3.8"', False),
    (f'sys_platform == "{sys.platform}" and (os_name == "nt" or os_name == "{os.name}")', True),
    ('python_version < "3" or sys_platform == "nonesuch" and os_name == "nt"', False),
    (f'"{sys.platform[:3]}" in sys_platform', True),
    ('extra == "socks"', False),  # which extras were installed is not known: never counted
    ('python_version >= "3" and extra == "socks"', False),
    ('platform_machine ==', False),  # unreadable: not counted
    ('python_version >= "3" garbage', False),
])
def test_requirement_markers_count_only_when_they_hold_here(marker, holds):
    from omnipkg_hook.dependents import marker_holds

    assert marker_holds(marker) is holds


# -- 8. what a pinned package adds inside using() ----------------------------------------

_ADDS_HOOKS = textwrap.dedent("""\
    import sys
    VERSION = {version!r}

    class VendorImporter:
        def find_spec(self, name, path=None, target=None):
            return None

    def path_hook(entry):
        raise ImportError(entry)

    sys.meta_path.append(VendorImporter())
    sys.path_hooks.append(path_hook)
    """)


def test_using_takes_out_the_finders_and_path_hooks_the_block_s_package_added(store, bubble, main_site, wheel):
    bubble("omt-v==2.0", ("omt-v", "2.0", {"omt_v/__init__.py": _ADDS_HOOKS.format(version="2.0")}))
    meta_path, path_hooks = list(sys.meta_path), list(sys.path_hooks)
    mine = _Delegating()
    with omnipkg_hook.using("omt-v==2.0"):
        import omt_v

        assert omt_v.VERSION == "2.0"
        assert any(type(f).__name__ == "VendorImporter" for f in sys.meta_path)
        sys.meta_path.append(mine)  # added by other code inside the block: kept
    assert "omt_v" not in sys.modules
    assert sys.meta_path == [*meta_path, mine]
    assert sys.path_hooks == path_hooks
    sys.meta_path.remove(mine)


# -- 5. binaries shipped as wheel data ----------------------------------------------------


def _tool_wheel(wheel, version: str, *, entry_point: bool = False):
    data = f"omt_tool-{version}.data/scripts"
    files = {
        **module_files("omt_tool", version),
        f"{data}/omt-bin": f"#!/bin/sh\necho omt-tool-bin {version}\n",
        f"{data}/omt-py": "#!python\nimport sys, omt_tool\nprint('omt-py', omt_tool.VERSION, sys.argv[1:])\n",
    }
    eps = {"console_scripts": {"omt-ep": "omt_tool:VERSION"}} if entry_point else None
    return wheel("omt-tool", version, files, executable={f"{data}/omt-bin", f"{data}/omt-py"}, entry_points=eps)


def test_data_scripts_of_a_pinned_bubble_run_their_own_version_from_path(store, bubble, wheel, run_python):
    bubble("omt-tool==2.0", _tool_wheel(wheel, "2.0"))
    bin_dir = store.bubble_bin("omt-tool", "2.0", interpreter_key())
    assert os.path.islink(os.path.join(bin_dir, "omt-bin"))  # a binary: the stored file itself
    assert not os.path.islink(os.path.join(bin_dir, "omt-py"))  # a #!python script: a launcher
    code = (
        "import subprocess, omnipkg_hook\n"
        "omnipkg_hook.pin('omt-tool==2.0')\n"
        "print(subprocess.run(['omt-bin'], capture_output=True, text=True, check=True).stdout.strip())\n"
        "print(subprocess.run(['omt-py', 'x'], capture_output=True, text=True, check=True).stdout.strip())\n"
    )
    out = run_python(code).stdout.splitlines()
    assert out == ["omt-tool-bin 2.0", "omt-py 2.0 ['x']"]


def test_a_bubble_with_data_scripts_only_still_gets_its_bin_dir_and_entry_points_win(store, bubble, wheel):
    manifest = bubble("omt-tool==3.0", _tool_wheel(wheel, "3.0", entry_point=True))
    bin_dir = store.bubble_bin("omt-tool", "3.0", manifest["interpreter"]["key"])
    assert sorted(os.listdir(bin_dir)) == ["omt-bin", "omt-ep", "omt-py"]


# -- 6. pkg_resources ----------------------------------------------------------------------


def test_pkg_resources_reports_the_pinned_version_and_follows_unpin_and_using(store, bubble, main_site, wheel,
                                                                              run_python):
    pytest.importorskip("pkg_resources")
    main_site.install(wheel("omt-pr", "1.0", module_files("omt_pr", "1.0")))
    for v in ("2.0", "3.0"):
        bubble(f"omt-pr=={v}", ("omt-pr", v, module_files("omt_pr", v)))
    code = textwrap.dedent("""\
        import warnings; warnings.simplefilter("ignore")
        import omnipkg_hook
        omnipkg_hook.pin("omt-pr==2.0")
        import pkg_resources
        v = lambda: pkg_resources.get_distribution("omt-pr").version
        print(v(), pkg_resources.get_distribution("omt-pr").location.startswith(omnipkg_hook.pins.plan().store.root))
        with omnipkg_hook.using("omt-pr==3.0"):
            print(v())
        print(v())
        omnipkg_hook.unpin()
        print(v(), sorted(d.project_name for d in pkg_resources.working_set if d.project_name.startswith("omt")))
        """)
    out = run_python(code).stdout.splitlines()
    assert out == ["2.0 True", "3.0", "2.0", "1.0 ['omt-pr']"]
