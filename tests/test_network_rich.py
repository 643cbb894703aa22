"""The user's scenario against the real package index (marked ``network``).

Main has rich 13.7.1; ``pip-omni install rich==13.5.3`` and ``rich==13.4.2``
leave main (rich and its dependencies) byte-identical and create two bubbles
whose .dist-info say 13.5.3 and 13.4.2.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import tree_digest

pytestmark = pytest.mark.network


@pytest.fixture(scope="module")
def rich_env(network_venv):
    network_venv.pip("install", "-q", "rich==13.7.1")
    before = tree_digest(network_venv.site, network_venv.path / "bin")
    results = {}
    for version in ("13.5.3", "13.4.2"):
        out = network_venv.run("install", f"rich=={version}", "--json").stdout
        results[version] = json.loads(out)
    after = tree_digest(network_venv.site, network_venv.path / "bin")
    return network_venv, before, after, results


def test_main_environment_is_byte_identical(rich_env):
    _venv, before, after, _results = rich_env
    assert after == before


@pytest.mark.parametrize("version", ["13.5.3", "13.4.2"])
def test_each_version_is_a_bubble_with_its_own_dist_info(rich_env, version):
    venv, _before, _after, results = rich_env
    assert results[version] == [{
        "name": "rich", "version": version, "where": "bubble", "action": "created",
        "reason": results[version][0]["reason"],
    }]
    assert results[version][0]["reason"].startswith("main has rich 13.7.1")
    shown = json.loads(venv.run("show", "rich", "--json").stdout)
    assert shown["main"]["version"] == "13.7.1"
    (bubble,) = [b for b in shown["bubbles"] if b["version"] == version]
    names = {d["name"] for d in bubble["closure"]}
    assert {"rich", "markdown-it-py", "mdurl", "pygments"} <= names
    rich_dist = next(d for d in bubble["closure"] if d["name"] == "rich")
    dist_dir = os.path.join(venv.env["OMNIPKG_STORE"], rich_dist["path"])
    metadata = open(os.path.join(dist_dir, f"rich-{version}.dist-info", "METADATA")).read()
    assert f"\nVersion: {version}\n" in metadata


def test_main_still_imports_its_own_rich(rich_env):
    venv = rich_env[0]
    out = venv.run("python", "-c", "import importlib.metadata as m, rich; print(m.version('rich'), rich.__file__)").stdout
    version, path = out.split()
    assert version == "13.7.1" and path.startswith(str(venv.site))


def _readme_block(containing: str) -> str:
    readme = open(os.path.join(os.path.dirname(__file__), os.pardir, "README.md"), encoding="utf-8").read()
    blocks = readme.split("```python\n")[1:]
    return next(b.split("```", 1)[0] for b in blocks if containing in b)


def _printed(block: str) -> list[str]:
    """What the README says a block prints: the comment after each print(...)."""
    return [line.split("#", 1)[1].strip().split(":")[0].split()[0] for line in block.splitlines()
            if line.lstrip().startswith("print(")]


@pytest.mark.parametrize("marker", ['pin("rich==13.4.2")', 'using("rich==13.5.3")'])
def test_the_readme_examples_work_as_printed(rich_env, marker):
    venv = rich_env[0]
    block = _readme_block(marker)
    out = venv.run("python", "-c", block).stdout.split()
    assert out == _printed(block) and out  # e.g. ['13.5.3', '13.7.1']


def test_omnipkg_pins_at_start_up_imports_the_bubble_and_metadata_agrees(rich_env):
    venv = rich_env[0]
    out = venv.run("python", "-c", "import importlib.metadata as m, rich; print(m.version('rich'), rich.__file__)",
                   env={"OMNIPKG_PINS": "rich==13.4.2"}).stdout
    version, path = out.split()
    assert version == "13.4.2"
    assert path.startswith(os.path.join(venv.env["OMNIPKG_STORE"], "dists", "rich", "13.4.2"))


def test_the_rich_switching_example_runs_as_printed(rich_env):
    import shutil
    import tempfile

    venv = rich_env[0]
    example = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "rich_switching.py")
    runtime = tempfile.mkdtemp(prefix="omt-", dir="/tmp")  # AF_UNIX paths must stay short
    try:
        proc = venv.run("python", example, env={"OMNIPKG_RUNTIME_DIR": runtime}, check=False)
        venv.run("daemon", "stop", env={"OMNIPKG_RUNTIME_DIR": runtime}, check=False)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = [line for line in proc.stdout.splitlines() if line[:3] in ("ok ", "BAD")]
    assert len(checks) == 7 and all(line.startswith("ok ") for line in checks), proc.stdout
