"""PEP 723 scripts under `pip-omni run`: the block, bubbles on demand, requires-python, the warm path."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from conftest import tree_digest  # noqa: E402
from test_interpreters import need  # noqa: E402

from omnipkg_pip.run import pep723  # noqa: E402

SCRIPT = """\
#!/usr/bin/env -S pip-omni run
# /// script
# dependencies = ["stored==1.0", "fresh==2.0", "inmain>=1"]
# ///
import json, os, sys
import stored, fresh, inmain
print(json.dumps({"stored": stored.V, "fresh": fresh.V, "inmain": inmain.V, "pid": os.getpid(),
                  "where": {m.__name__: m.__file__ for m in (stored, fresh, inmain)}, "argv": sys.argv[1:]}))
"""


@pytest.fixture
def scripted(omni_venv, wheel, wheelhouse, tmp_path):
    for name, version in (("stored", "1.0"), ("stored", "1.1"), ("fresh", "2.0"), ("inmain", "1.0")):
        wheel(name, version, files={f"{name}/__init__.py": f"V = {version!r}\n"})
    omni_venv.run("install", "--bubble", "--no-index", "-f", str(wheelhouse), "stored==1.0")
    omni_venv.pip("install", "-q", "--no-index", "-f", str(wheelhouse), "inmain==1.0")
    script = tmp_path / "tool.py"
    script.write_text(SCRIPT)
    return omni_venv, script


def test_stored_made_on_demand_and_main_satisfied(scripted, wheelhouse, tmp_path):
    venv, script = scripted
    before = tree_digest(venv.site)
    proc = venv.run("run", "--offline", str(script), check=False)
    assert proc.returncode == 1 and "fresh==2.0" in proc.stderr and "pip-omni install --bubble" in proc.stderr
    assert proc.stdout == ""  # refused before anything ran

    proc = venv.run("run", "--no-index", "-f", str(wheelhouse), str(script), "a", "-b")
    out = json.loads(proc.stdout)
    assert (out["stored"], out["fresh"], out["inmain"], out["argv"]) == ("1.0", "2.0", "1.0", ["a", "-b"])
    store = venv.env["OMNIPKG_STORE"]
    assert out["where"]["stored"].startswith(store) and out["where"]["fresh"].startswith(store)
    assert out["where"]["inmain"].startswith(str(venv.site))
    assert "making bubbles" in proc.stderr and "fresh==2.0" in proc.stderr
    assert tree_digest(venv.site) == before  # nothing installed into main

    # warm: everything is stored now -- no pip, no packaging, no second interpreter
    cmd = [str(venv.python), "-X", "importtime", str(venv.path / "bin" / "pip-omni"), "run", "--offline", str(script)]
    for _ in range(2):  # the second run comes from the caches
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=venv.env)
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
    assert json.loads(stdout)["pid"] == p.pid
    imported = {line.split("|")[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    assert "fresh" in imported and "stored" in imported  # importtime did see the script's imports
    assert not {m for m in imported if m.split(".")[0] in ("packaging", "pip", "tomllib", "tomli", "argparse")}
    # the start-up cache decided: no resolver, no store module (nor the json it imports)
    assert not imported & {"omnipkg_hook.pins", "omnipkg_hook.resolve", "omnipkg_hook.store", "omnipkg_pip.pipopts"}


def test_with_overrides_the_block_stdin_and_shebang(scripted, wheelhouse, tmp_path):
    venv, script = scripted
    venv.run("run", "--no-index", "-f", str(wheelhouse), str(script))  # makes fresh
    proc = venv.run("run", "--with", "stored==1.1", "--no-index", "-f", str(wheelhouse), str(script))
    assert json.loads(proc.stdout)["stored"] == "1.1"
    proc = venv.run("run", "--offline", "-", "x", input=SCRIPT)
    out = json.loads(proc.stdout)
    assert (out["stored"], out["argv"]) == ("1.0", ["x"])
    script.chmod(0o755)
    env = {**venv.env, "PATH": f"{venv.path / 'bin'}{os.pathsep}{venv.env['PATH']}"}
    proc = subprocess.run([str(script), "y"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["argv"] == ["y"]


@pytest.mark.parametrize("block, line, words", [
    ('# /// script\n# dependencies = ["rich==13.4.2"\n# ///\n', 2, "not valid TOML"),
    ('# /// script\n# dependencies = ["rich=13.4.2"]\n# ///\n', 2, "'rich=13.4.2'"),
    ('# /// script\n# dependencies = "rich"\n# ///\n', 2, "must be a list"),
    ('# /// script\n# requires-python = "3.9"\n# ///\n', 2, "'3.9'"),
    ('# /// script\n# dependencies = []\n', 1, "not closed"),
    ('# /// script\n# dependencies = ["rich; python_version >< \'3\'"]\n# ///\n', 2, "marker"),
    ('# /// script\n# dependencies = []\n# ///\n\n# /// script\n# dependencies = []\n# ///\n', 5, "second"),
])
def test_malformed_block_is_one_line_with_its_line_number(omni_venv, tmp_path, block, line, words):
    script = tmp_path / "bad.py"
    script.write_text("import sys\n" + block + "print('ran')\n")
    proc = omni_venv.run("run", str(script), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"pip-omni: error: {script}:{line + 1}: ") and words in first, proc.stderr


def test_reference_regex_reads_the_pep_example():
    text = ('# /// script\n# requires-python = ">=3.11"\n# dependencies = [\n#   "requests<3",\n'
            '#   "rich",\n# ]\n# ///\n\nimport requests\n')
    meta = pep723.read(text)
    assert (meta.dependencies, meta.requires_python, meta.line) == (["requests<3", "rich"], ">=3.11", 1)
    assert pep723.read("# /// pyproject\n# x = 1\n# ///\nprint()\n") is None  # another block type


def test_requires_python_picks_an_adopted_39(omni_venv, tmp_path):
    need("3.9")
    if sys.version_info[:2] == (3, 9):
        pytest.skip("this test needs a default interpreter other than 3.9")
    omni_venv.cli("python", "adopt", "3.9")
    script = tmp_path / "old.py"
    script.write_text('# /// script\n# requires-python = "<3.10"\n# ///\nimport sys\nprint(sys.version_info[:2])\n')
    proc = omni_venv.run("run", str(script))
    assert proc.stdout == "(3, 9)\n"
    script.write_text('# /// script\n# requires-python = ">=3.14"\n# ///\nprint("ran")\n')
    proc = omni_venv.run("run", str(script), check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "requires Python >=3.14" in proc.stderr and "3.9." in proc.stderr and "pip-omni python adopt" in proc.stderr


TWICE = """\
# /// script
# dependencies = ["lib>=1.0", "lib<3.0", "other; python_version < '3'", "lib[x]; python_version >= '3'"]
# ///
import sys, lib
print(lib.V, "other" in sys.modules, "packaging" in sys.modules)
"""


def test_the_same_name_twice_is_one_requirement_and_markers_need_no_packaging(omni_venv, libs, wheelhouse, tmp_path):
    """As uv takes it: `lib>=1.0` and `lib<3.0` is `lib[x]>=1.0,<3.0` (the marker-true entry's
    extras too); the false marker drops `other` (which does not exist anywhere)."""
    script = tmp_path / "twice.py"
    script.write_text(TWICE)
    proc = omni_venv.run("run", "--no-index", "-f", str(wheelhouse), str(script), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "2.0 False False\n"  # 3.0 excluded, 2.0 the best; no packaging imported
    assert "making bubbles for Python" in proc.stderr and "lib[x]>=1.0,<3.0" in proc.stderr  # one bubble
    # --with still replaces the block's requirement of its name
    proc = omni_venv.run("run", "--with", "lib==3.0", "--no-index", "-f", str(wheelhouse), str(script))
    assert proc.stdout.split()[0] == "3.0"


def test_requirements_combine_unit():
    from omnipkg_pip.run.ondemand import requirements

    env = {"python_version": "3.12", "python_full_version": "3.12.1", "sys_platform": "linux"}
    assert requirements(["a>=1", "b"], [], env) == ["a>=1", "b"]  # the fast path: as given
    assert requirements(["a>=1", "A<2", "b"], [], env) == ["a>=1,<2", "b"]
    assert requirements(["a>=1; python_version < '3.10'", "a==2; sys_platform == 'linux'"], [], env) == ["a==2"]
    assert requirements(["a[y]>=1", "A[x]"], ["b==1", "a==3"], env) == ["b==1", "a==3"]
    assert requirements(["a[y]>=1", "a[x]"], [], env) == ["a[x,y]>=1"]
