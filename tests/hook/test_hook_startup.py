"""Start-up from OMNIPKG_PINS, strict mode, child processes, import hygiene, the store dir."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

import omnipkg_hook
from omnipkg_hook import startup
from omnipkg_hook.store import default_store_dir, interpreter_key

from .conftest import module_files, needs_pth

KEY = interpreter_key()

pytestmark = needs_pth


@pytest.fixture
def two(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0")))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    bubble("omt-b==1.0", ("omt-b", "1.0", module_files("omt_b", "1.0")))
    return store


SHOW = "import omt_a, importlib.metadata as md; print(omt_a.VERSION, md.version('omt-a'))"


def test_pins_from_the_environment_apply_at_start_up(two, run_python):
    assert run_python(SHOW).stdout == "1.0 1.0\n"
    proc = run_python(SHOW, {"OMNIPKG_PINS": "omt-a==2.0"})
    assert (proc.stdout, proc.stderr) == ("2.0 2.0\n", "")
    assert run_python(SHOW, {"OMNIPKG_PINS": " omt-a>=2,<3 ,omt-b==1.0 "}).stdout == "2.0 2.0\n"


def test_pins_from_a_file(two, run_python, tmp_path):
    pins = tmp_path / "pins.txt"
    pins.write_text("# CI pins\nomt-a==2.0  # the one under test\n\nomt-b==1.0\n")
    assert run_python(SHOW, {"OMNIPKG_PINS": f"@{pins}"}).stdout == "2.0 2.0\n"


BAD = [
    ("omt-a=2.0", "pip-omni: warning: ignoring OMNIPKG_PINS: invalid requirement 'omt-a=2.0': expected a version "
                  "operator (==, >=, ...) at column 6; starting without pins (set OMNIPKG_STRICT=1 to make this "
                  "fatal) (hint: write it as 'omt-a==2.0')"),
    ("omt-a==2.0,omt-a<3", "pip-omni: warning: ignoring OMNIPKG_PINS: 'omt-a' is pinned twice: 'omt-a==2.0' and "
                           "'omt-a<3'"),
    ("omt-a==2.0; python_version>'3'", "pip-omni: warning: ignoring OMNIPKG_PINS: pin \"omt-a==2.0; "
                                       "python_version>'3'\" has an environment marker"),
    ("@/nonexistent/pins.txt", "pip-omni: warning: ignoring OMNIPKG_PINS: cannot read pin file "
                               "'/nonexistent/pins.txt': No such file or directory"),
    ("omt-a[", "pip-omni: warning: ignoring OMNIPKG_PINS: invalid requirement 'omt-a[': expected ']' to close"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "line"), BAD, ids=[v for v, _ in BAD])
def test_a_bad_value_prints_one_line_and_the_interpreter_starts_without_pins(two, run_python, value, line):
    proc = run_python(SHOW, {"OMNIPKG_PINS": value})
    assert proc.stdout == "1.0 1.0\n"
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(line), proc.stderr


def test_an_unsatisfiable_pin_warns_by_default_and_is_fatal_in_strict_mode(two, run_python):
    cmd = f"pip-omni install '{'omt-a==9.0'}'"
    if not os.path.exists(os.path.join(os.path.dirname(sys.executable), "pip-omni")):
        cmd = f"pip-omni install --python '{sys.executable}' 'omt-a==9.0'"
    why = (f"OMNIPKG_PINS='omt-a==9.0,omt-b==1.0' cannot be applied: no stored version of 'omt-a' satisfies "
           f"'omt-a==9.0' for this interpreter ({KEY}) (the main environment has 1.0; stored: 2.0)")  # fmt: skip
    proc = run_python(SHOW, {"OMNIPKG_PINS": "omt-a==9.0,omt-b==1.0"})
    assert proc.stdout == "1.0 1.0\n"  # no pin applied, not even omt-b's
    assert proc.stderr == (f"pip-omni: warning: {why}; starting without pins (set OMNIPKG_STRICT=1 to make this "
                           f"fatal) (hint: run: {cmd})\n")  # fmt: skip

    proc = run_python(SHOW, {"OMNIPKG_PINS": "omt-a==9.0,omt-b==1.0", "OMNIPKG_STRICT": "1"}, check=False)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == f"pip-omni: error: {why} (hint: run: {cmd})\n"

    proc = run_python(SHOW, {"OMNIPKG_PINS": "omt-a=9", "OMNIPKG_STRICT": "1"}, check=False)
    assert proc.returncode == 1 and proc.stderr.startswith("pip-omni: error: ignoring OMNIPKG_PINS: invalid")


def test_run_is_idempotent_and_the_start_file_checks_the_variable(two, monkeypatch, capsys):
    monkeypatch.setenv("OMNIPKG_PINS", "omt-a==2.0")
    startup.run()
    startup.run()
    assert omnipkg_hook.pins() == ["omt-a==2.0"]
    monkeypatch.setenv("OMNIPKG_PINS", "omt-a=bad")
    startup.run()
    startup.run()  # reported once
    assert capsys.readouterr().err.count("ignoring OMNIPKG_PINS") == 1
    assert omnipkg_hook.pins() == ["omt-a==2.0"]
    monkeypatch.setenv("OMNIPKG_PINS", "omt-b==1.0")
    startup.run_if_pinned()
    assert omnipkg_hook.pins() == ["omt-b==1.0"]
    monkeypatch.delenv("OMNIPKG_PINS")
    startup.run_if_pinned()
    assert omnipkg_hook.pins() == ["omt-b==1.0"]
    monkeypatch.setenv("OMNIPKG_PINS", "omt-a==9.0")
    monkeypatch.setenv("OMNIPKG_STRICT", "1")
    with pytest.raises(omnipkg_hook.BubbleNotFoundError):
        startup.run(exit_on_error=False)


def test_data_files_call_the_start_up_code():
    data = os.path.join(os.path.dirname(omnipkg_hook.__file__), "data")
    with open(os.path.join(data, "omnipkg_hook.start")) as f:
        assert f.read().strip() == "omnipkg_hook.startup:run_if_pinned"
    with open(os.path.join(data, "omnipkg_hook.pth")) as f:
        line = f.read()
    assert line == startup.pth_line() and line.count("\n") == 1  # the source of the line is startup.py
    assert line.startswith('import os, sys; os.environ.get("OMNIPKG_PINS") and ')


HYGIENE = """
import sys
before = set(sys.modules)
import omnipkg_hook
{extra}
bad = ("pip", "packaging", "importlib.metadata", "importlib_metadata", "omnipkg_pip", "platformdirs")
print(sorted(m for m in bad if m in sys.modules), sorted(m for m in bad if m in before))
"""


@pytest.mark.parametrize(
    ("pins", "extra"),
    [
        (None, ""),
        ("omt-a==2.0", "import omt_a"),
        (None, "omnipkg_hook.pin('omt-a==2.0', 'omt-b==1.0'); import omt_a, omt_b"),
        (None, "with omnipkg_hook.using('omt-a==2.0'): import omt_a"),
    ],
    ids=["import", "start-up pin", "pin", "using"],
)
def test_import_hygiene_in_a_fresh_interpreter(two, run_python, pins, extra):
    env = {"OMNIPKG_PINS": pins} if pins else {}
    proc = run_python(HYGIENE.format(extra=extra), env)
    assert (proc.stdout, proc.stderr) == ("[] []\n", "")


def test_nothing_but_the_pth_line_runs_without_pins(run_python):
    proc = run_python("import sys; print(sorted(m for m in sys.modules if m.startswith('omnipkg')))")
    assert proc.stdout == "[]\n"
    proc = run_python("import sys; print(sorted(m for m in sys.modules if m.startswith('omnipkg')))",
                      {"OMNIPKG_PINS": ""})  # fmt: skip
    assert proc.stdout == "[]\n"


def test_child_processes_inherit_pins(two, run_python):
    code = textwrap.dedent("""
        import subprocess, sys, omnipkg_hook
        omnipkg_hook.pin("omt-a==2.0")
        out = subprocess.run([sys.executable, "-c", "import omt_a; print(omt_a.VERSION)"],
                             capture_output=True, text=True)
        print(out.stdout.strip(), out.stderr.strip())
        omnipkg_hook.unpin("omt-a")
        out = subprocess.run([sys.executable, "-c", "import omt_a; print(omt_a.VERSION)"],
                             capture_output=True, text=True)
        print(out.stdout.strip())
    """)
    assert run_python(code).stdout == "2.0 \n1.0\n"


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_multiprocessing_children_inherit_pins(two, main_site, tmp_path, method):
    import multiprocessing
    import subprocess

    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method!r} start method on this platform")
    script = tmp_path / "mp_script.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, omnipkg_hook

        def where(_):
            import omt_a, importlib.metadata as md
            return omt_a.VERSION, md.version("omt-a"), tuple(omnipkg_hook.pins())

        if __name__ == "__main__":
            omnipkg_hook.pin("omt-a==2.0")
            ctx = multiprocessing.get_context({method!r})
            with ctx.Pool(2) as pool:
                print(sorted(set(pool.map(where, range(4)))))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH")}
    env.update({"OMNIPKG_STORE": two.root, "PYTHONPATH": str(main_site.path)})
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout == "[('2.0', '2.0', ('omt-a==2.0',))]\n", out.stderr


def test_default_store_dir_agrees_with_platformdirs(monkeypatch, tmp_path):
    platformdirs = pytest.importorskip("platformdirs")
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_store_dir() == platformdirs.user_data_dir("pip-omni", appauthor=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_dir() == platformdirs.user_data_dir("pip-omni", appauthor=False)
    monkeypatch.setenv("XDG_DATA_HOME", "   ")
    assert default_store_dir() == platformdirs.user_data_dir("pip-omni", appauthor=False)


def test_a_store_found_through_pyproject_is_exported_to_children(two, main_site, tmp_path):
    import subprocess

    project = tmp_path / "project"
    project.mkdir()
    rel = os.path.relpath(two.root, project)
    (project / "pyproject.toml").write_text(f'[project]\nname = "x"\n\n[tool.omnipkg]\nstore = "{rel}"\n')
    code = textwrap.dedent("""
        import os, subprocess, sys, omnipkg_hook
        omnipkg_hook.pin("omt-a==2.0")
        out = subprocess.run([sys.executable, "-c", "import omt_a; print(omt_a.VERSION)"], cwd="/",
                             capture_output=True, text=True)
        print(os.environ["OMNIPKG_STORE"], out.stdout.strip(), out.stderr.strip())
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH", "OMNIPKG_STORE")}
    env["PYTHONPATH"] = str(main_site.path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=project)
    assert out.stdout == f"{two.root} 2.0 \n", out.stderr


CACHED = """
import sys, omt_a, importlib.metadata as md
slow = [m for m in ("omnipkg_hook.pins", "omnipkg_hook._requirements", "omnipkg_hook.resolve") if m in sys.modules]
print(omt_a.VERSION, md.version("omt-a"), slow)
import omnipkg_hook, os
print(omnipkg_hook.pins(), os.environ["OMNIPKG_PINS"])
"""


def test_a_second_start_up_applies_the_cached_decision_without_the_resolver(two, run_python):
    env = {"OMNIPKG_PINS": "omt-a==2.0 , omt-b==1.0"}
    first = run_python(CACHED, env).stdout.splitlines()
    assert first[0] == "2.0 2.0 ['omnipkg_hook.pins', 'omnipkg_hook._requirements', 'omnipkg_hook.resolve']"
    assert len(os.listdir(os.path.join(two.root, "cache", "startup"))) == 1
    second = run_python(CACHED, env).stdout.splitlines()
    assert second[0] == "2.0 2.0 []"
    assert first[1] == second[1] == "['omt-a==2.0', 'omt-b==1.0'] omt-a==2.0,omt-b==1.0"


def test_the_cache_notices_changes_to_main_and_to_the_store(two, run_python, main_site, wheel, bubble):
    env = {"OMNIPKG_PINS": "omt-a>=2"}
    assert run_python(SHOW, env).stdout == "2.0 2.0\n"
    assert run_python(SHOW, env).stdout == "2.0 2.0\n"  # from the cache
    bubble("omt-a==2.5", ("omt-a", "2.5", module_files("omt_a", "2.5")))  # a better stored version
    assert run_python(SHOW, env).stdout == "2.5 2.5\n"
    main_site.install(wheel("omt-a", "3.0", module_files("omt_a", "3.0")))  # main now satisfies the pin
    import shutil

    shutil.rmtree(main_site.path / "omt_a-1.0.dist-info")
    assert run_python(SHOW, env).stdout == "3.0 3.0\n"


def test_the_cache_is_not_trusted_when_a_routed_entry_is_gone(two, run_python, bubble):
    env = {"OMNIPKG_PINS": "omt-a==2.0"}
    run_python(SHOW, env)
    dist = os.path.join(two.root, "dists", "omt-a", "2.0", "py3-none-any")
    os.rename(os.path.join(dist, "omt_a"), os.path.join(two.root, "elsewhere"))
    proc = run_python(SHOW, env, check=False)
    assert proc.stderr.startswith("pip-omni: repaired omt-a 2.0 in the store ('omt_a' is missing)"), proc.stderr
    assert proc.stdout == "2.0 2.0\n"


def test_pinned_dists_are_leased_so_gc_keeps_them(two, run_python):
    from omnipkg_hook import leases

    dist = os.path.join(two.root, "dists", "omt-a", "2.0", "py3-none-any")
    omnipkg_hook.pin("omt-a==2.0")
    assert dist in leases.held() and leases.in_use(dist)
    code = (f"from omnipkg_hook import leases; print(leases.in_use({dist!r}), end=' '); import omnipkg_hook; "
            f"omnipkg_hook.pins(); print({dist!r} in leases.held())")  # held() knows them once pins is loaded
    env = {"OMNIPKG_PINS": "omt-a==2.0"}
    assert run_python(code, env).stdout == "True True\n"  # resolved at start-up
    assert run_python(code, env).stdout == "True True\n"  # from the start-up cache


def test_the_start_up_cache_finds_the_store_as_store_py_does(monkeypatch, tmp_path):
    from omnipkg_hook.store import find_store

    monkeypatch.delenv("OMNIPKG_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    for xdg in (None, str(tmp_path / "xdg"), "  "):
        if xdg is None:
            monkeypatch.delenv("XDG_DATA_HOME", raising=False)
        else:
            monkeypatch.setenv("XDG_DATA_HOME", xdg)
        assert startup._store_root() == find_store() == default_store_dir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no [tool.omnipkg]: default
    assert startup._store_root() == find_store()
    (tmp_path / "pyproject.toml").write_text('[tool.omnipkg]\nstore = "here"\n')  # store.py reads it
    assert startup._store_root() is None and find_store() == str(tmp_path / "here")
    monkeypatch.setenv("OMNIPKG_STORE", "~/elsewhere")
    assert startup._store_root() == find_store() == os.path.expanduser("~/elsewhere")


def test_run_again_with_other_pins_switches_through_the_resolver(two, run_python, bubble):
    bubble("omt-a==3.0", ("omt-a", "3.0", module_files("omt_a", "3.0")))
    code = """
import os, sys, omt_a
from omnipkg_hook import startup
first = omt_a.VERSION
os.environ["OMNIPKG_PINS"] = "omt-a==3.0"
startup.run()
import omt_a
print(first, omt_a.VERSION, "omnipkg_hook.pins" in sys.modules)
"""
    env = {"OMNIPKG_PINS": "omt-a==2.0"}
    run_python(SHOW, {"OMNIPKG_PINS": "omt-a==3.0"})  # both values cached
    run_python(SHOW, env)
    assert run_python(code, env).stdout == "2.0 3.0 True\n"
