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
