"""Issue 10 against real packages from the index (marked ``network``), one venv for all:

main environment                     store (bubbles)          class
pytest, pytest-timeout 2.3.1,        pytest-timeout 2.2.0     1. pytest's rewriter, xdist workers
  pytest-xdist
zope.interface 6.4.post2 (nspkg.pth) zope.interface 7.2       2. legacy namespace .pth
setuptools (latest, its              setuptools 65.5.0        3. start-up .pth import, 6. pkg_resources,
  distutils-precedence.pth)            (68.2.2 on 3.12+)       8. VendorImporter after using()
pytest (needs pluggy>=1.5)           pluggy 1.0.0             4. a dependent the pin breaks
ninja 1.11.1.1                       ninja 1.13.0 (binary in  5. data scripts on PATH
                                       .data/scripts)
a project needing setuptools>=70, built by pip-omni under OMNIPKG_PINS=setuptools==<that one>: 7.

setuptools 65's pkg_resources calls ``pkgutil.ImpImporter``, which Python 3.12 removed (later
setuptools releases do not use it): on 3.12+ the old setuptools is 68.2.2, still older than 70, still with its
``VendorImporter``, so every case tests the same behaviour of ours on every Python.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

pytestmark = pytest.mark.network

MAIN = ["pytest", "pytest-timeout==2.3.1", "pytest-xdist", "zope.interface==6.4.post2", "setuptools", "ninja==1.11.1.1"]
OLD_SETUPTOOLS = "65.5.0" if sys.version_info < (3, 12) else "68.2.2"  # see above; this Python runs the venv
BUBBLES = ["pytest-timeout==2.2.0", "zope.interface==7.2", f"setuptools=={OLD_SETUPTOOLS}", "pluggy==1.0.0", "ninja==1.13.0"]


@pytest.fixture(scope="module")
def real(network_venv):
    venv = network_venv
    venv.pip("install", "-q", *MAIN)
    venv.cli("install", "--bubble", "-q", *BUBBLES)  # one bubble (one pip run) each
    venv.store = venv.env["OMNIPKG_STORE"]
    return venv


def _py(venv, code: str, pins: str | None = None, **kw):
    env = {"OMNIPKG_PINS": pins} if pins else {}
    return venv.run("python", "-c", textwrap.dedent(code), env=env, **kw)


def test_pytest_and_xdist_workers_run_the_pinned_plugin(real, tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_pinned.py").write_text(textwrap.dedent(f"""\
        import importlib.metadata, os, pytest_timeout

        def test_pinned_plugin_is_the_stores():
            assert importlib.metadata.version("pytest-timeout") == "2.2.0"
            assert pytest_timeout.__file__.startswith({real.store!r} + os.sep), pytest_timeout.__file__
            assert type(pytest_timeout.__spec__.loader).__name__ == "AssertionRewritingHook"
        """))
    # In xdist's workers (their own interpreters, pinned at start-up by the inherited
    # OMNIPKG_PINS); the plain run is the hermetic test's (test_hook_realpkgs.py).
    proc = real.run("python", "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", str(tmp_path),
                    env={"OMNIPKG_PINS": "pytest-timeout==2.2.0"}, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_zope_interface_runs_the_pinned_version_beside_mains_nspkg_pth(real):
    site = str(real.site)
    assert any(p.name.endswith("-nspkg.pth") and p.name.startswith("zope.interface") for p in real.site.iterdir())
    code = f"""\
        import importlib.metadata as md, sys, zope.interface
        print(zope.interface.__file__.startswith({real.store!r}), md.version("zope.interface"))
        """
    for _ in range(2):  # resolved, then cached
        assert _py(real, code, "zope.interface==7.2").stdout.split() == ["True", "7.2"]
    proc = _py(real, "import omnipkg_hook; omnipkg_hook.pin('zope.interface==7.2')\n" + textwrap.dedent(code))
    assert proc.stdout.split() == ["True", "7.2"]
    plain = _py(real, "import zope.interface, importlib.metadata as md; print(zope.interface.__file__, md.version('zope.interface'))")
    assert plain.stdout.split()[0].startswith(site) and plain.stdout.split()[1] == "6.4.post2"


def test_old_setuptools_pins_without_replace_and_pkg_resources_agrees_and_using_cleans_up(real):
    code = f"""\
        import sys, warnings
        warnings.simplefilter("ignore")
        import omnipkg_hook
        assert "_distutils_hack" in sys.modules  # main's distutils-precedence.pth imported it
        before = [type(f).__name__ for f in sys.meta_path]
        with omnipkg_hook.using("setuptools=={OLD_SETUPTOOLS}"):
            import setuptools
            inside = [type(f).__name__ for f in sys.meta_path]
            print(setuptools.__version__, "VendorImporter" in inside)
        print([type(f).__name__ for f in sys.meta_path] == before)
        omnipkg_hook.pin("setuptools=={OLD_SETUPTOOLS}")
        import setuptools, pkg_resources
        print(setuptools.__version__, pkg_resources.get_distribution("setuptools").version)
        """
    out = _py(real, code).stdout.splitlines()
    assert out == [f"{OLD_SETUPTOOLS} True", "True", f"{OLD_SETUPTOOLS} {OLD_SETUPTOOLS}"]


def test_pinning_pluggy_1_0_names_main_pytest_and_why_lists_it(real):
    proc = _py(real, "import pluggy; print(pluggy.__version__)", "pluggy==1.0.0")
    assert proc.stdout.strip() == "1.0.0"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "requires pluggy" in lines[0] and "pinned to pluggy 1.0.0" in lines[0], proc.stderr
    assert "pytest " in lines[0]
    quiet = real.run("python", "-c", "import pluggy", env={"OMNIPKG_PINS": "pluggy==1.0.0", "OMNIPKG_QUIET": "1"})
    assert quiet.stderr == ""
    why = json.loads(real.cli("why", "pluggy", "--pin", "pluggy==1.0.0", "--json").stdout)
    assert "pytest" in [b["distribution"] for b in why["breaks"]]


def test_ninja_binary_from_data_scripts_is_the_pinned_one_on_path(real):
    code = f"""\
        import subprocess, ninja
        print(ninja.__version__, subprocess.run(["ninja", "--version"], capture_output=True, text=True).stdout.strip())
        print(ninja.BIN_DIR.startswith({real.store!r}))
        """
    pinned = _py(real, code, "ninja==1.13.0").stdout.split()
    assert pinned[0] == "1.13.0" and pinned[1].startswith("1.13.0"), pinned  # "1.13.0.git.kitware..."
    # ninja 1.13 finds its own binary through sysconfig.get_path("scripts"): main's (documented).
    assert pinned[2] == "False"
    assert _py(real, "import subprocess; print(subprocess.run(['ninja', '--version'], capture_output=True, "
               "text=True).stdout)").stdout.strip().startswith("1.11.1")


def test_a_build_needing_setuptools_70_is_not_given_the_pinned_old_one(real, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=70"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "omt-needs-new-setuptools"\nversion = "1.0"\n')
    (project / "setup.py").write_text(
        "import setuptools\nassert int(setuptools.__version__.split('.')[0]) >= 70, setuptools.__version__\n"
        "setuptools.setup(py_modules=[])\n")
    real.cli("install", f"omt-needs-new-setuptools @ {project.as_uri()}", env={"OMNIPKG_PINS": f"setuptools=={OLD_SETUPTOOLS}"})
    assert real.run("python", "-c", "import importlib.metadata as m; print(m.version('omt-needs-new-setuptools'))"
                    ).stdout.strip() == "1.0"
