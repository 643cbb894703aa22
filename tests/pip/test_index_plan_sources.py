"""writers/indexplan.py with the sources pip merges: ``file://`` extra indexes, ``--find-links``
folders and constraint files, as this very machine's pip configuration has them (a local
mirror tree and a wheel folder beside PyPI, a constraints file in ``/etc/xdg/pip``).

pip takes the best file of all its sources; the plan does too, and must give pip's answer
without running pip. Where a local copy has the same bytes as the index's (same name, same
sha256), which copy is read changes nothing, so the comparison with pip's report is by
(name, version, sha256). Where two sources have equally good files of other bytes, pip's
order decides, and pip resolves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import store_state  # tests/conftest.py
from simple_index import index, venv  # noqa: F401 (fixtures)
from test_index_plan import _env, _install, _pip_commands
from wheelmaker import make_wheel


def _tree(root: Path, wheels: list[Path]) -> Path:
    """A PEP 503 tree on disk (as ``/opt/pypi/simple`` here): ``simple/<project>/index.html``."""
    by_project: dict[str, list[Path]] = {}
    for w in wheels:
        by_project.setdefault(w.name.split("-")[0].replace("_", "-"), []).append(w)
    for project, files in by_project.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        links = "".join(f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
                        f"{w.name}</a>\n" for w in files)
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    return root / "simple"


def _report(venv, index, req: str, env: dict) -> set:
    proc = venv.pip("install", "-q", "--dry-run", "--ignore-installed", "--report", "-", req, env=_env(index, **env))
    return {(e["metadata"]["name"].lower().replace("_", "-"), e["metadata"]["version"],
             e["download_info"]["archive_info"]["hashes"]["sha256"]) for e in json.loads(proc.stdout)["install"]}


def _bubble(venv, name: str) -> set:
    store = Path(venv.env["OMNIPKG_STORE"])
    (manifest,) = (store / "bubbles" / name).glob("*/*.json")
    out = set()
    for dep, entry in json.loads(manifest.read_text())["dists"].items():
        dist = json.loads((store / entry["path"] / "omnipkg-dist.json").read_text())
        out.add((dep, entry["version"], dist["wheel_sha256"]))
    return out


def _without_pip(venv, index, req: str, root: str, env: dict) -> set:
    proc = _install(venv, index, req, env=env)
    assert "from the index without pip" in proc.stderr, proc.stderr
    assert _pip_commands(venv) == []
    got = _bubble(venv, root)
    assert got == _report(venv, index, req, env)
    return got


def test_a_local_mirror_with_the_same_files_and_a_newer_one_is_merged_as_pip_merges(venv, index, tmp_path):
    lib1 = index.add("omt-ma", "1.0")
    index.add("omt-mb", "1.0", requires=["omt-ma"])
    mirror = tmp_path / "mirror"
    lib1_copy = mirror / "files" / lib1.name
    lib1_copy.parent.mkdir(parents=True)
    lib1_copy.write_bytes(lib1.read_bytes())  # the same bytes, as a mirror has them
    lib2 = make_wheel(mirror / "files", "omt-ma", "2.0")  # only in the mirror: the best
    tree = _tree(mirror, [lib1_copy, lib2])
    env = {"PIP_EXTRA_INDEX_URL": f"file://{tree} file://{tmp_path / 'missing'}"}  # pip ignores a missing one

    got = _without_pip(venv, index, "omt-mb", "omt-mb", env)

    assert ("omt-ma", "2.0", hashlib.sha256(lib2.read_bytes()).hexdigest()) in got
    assert index.ours(lib1.name) == []  # not read from the index at all


def test_a_mirror_file_whose_metadata_excludes_this_python_is_dropped_as_pip_drops_it(venv, index, tmp_path):
    """A local mirror's page often gives no ``data-requires-python`` (this machine's does not):
    its copy of a wheel for a newer Python is a candidate, its METADATA says no, and pip takes
    the next one. So does the plan, without pip."""
    index.add("omt-la", "1.0")
    newer = index.add("omt-la", "2.0", requires_python=">=4")
    index.attrs[newer.name] = {"data-requires-python": ">=4"}  # the index says so; the mirror does not
    index.add("omt-lb", "1.0", requires=["omt-la"])
    mirror = tmp_path / "mirror"
    copy = mirror / "files" / newer.name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(newer.read_bytes())

    got = _without_pip(venv, index, "omt-lb", "omt-lb",
                       {"PIP_EXTRA_INDEX_URL": f"file://{_tree(mirror, [copy])}"})

    assert {(n, v) for n, v, _s in got} == {("omt-lb", "1.0"), ("omt-la", "1.0")}


def test_a_find_links_folder_with_a_newer_version_is_merged(venv, index, tmp_path):
    index.add("omt-fb", "1.0")
    links = tmp_path / "links"
    newer = make_wheel(links, "omt-fb", "1.5")

    got = _without_pip(venv, index, "omt-fb", "omt-fb", {"PIP_FIND_LINKS": str(links)})

    assert got == {("omt-fb", "1.5", hashlib.sha256(newer.read_bytes()).hexdigest())}


def test_a_constraint_file_in_pip_settings_bounds_the_plan(venv, index, tmp_path):
    index.add("omt-cx", "1.0")
    index.add("omt-cx", "2.0")
    index.add("omt-cy", "1.0", requires=["omt-cx"])
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("# as /etc/xdg/pip/constraints.txt here\nomt-cx<2\nomt-unrelated<=1\n")

    got = _without_pip(venv, index, "omt-cy", "omt-cy", {"PIP_CONSTRAINT": str(constraints)})

    assert {(n, v) for n, v, _s in got} == {("omt-cy", "1.0"), ("omt-cx", "1.0")}


def test_a_constraint_pip_omni_does_not_read_or_a_copy_of_other_bytes_goes_to_pip(venv, index, tmp_path):
    index.add("omt-pa", "1.0")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text('omt-pa<2; python_version > "3"\n')
    proc = _install(venv, index, "omt-pa", env={"PIP_CONSTRAINT": str(constraints)})
    assert "has a URL, extra or marker" in proc.stderr and "from the index without pip" not in proc.stderr

    index.add("omt-pb", "1.0", {"omt_pb/__init__.py": "WHO = 'index'\n"})
    links = tmp_path / "links"
    make_wheel(links, "omt-pb", "1.0", {"omt_pb/__init__.py": "WHO = 'another build'\n"})
    proc = _install(venv, index, "omt-pb", env={"PIP_FIND_LINKS": str(links)})
    assert "equally good files of 1.0: pip's choice depends on their order" in proc.stderr, proc.stderr
    assert [c for c in _pip_commands(venv) if " wheel " in c]


def test_a_local_mirror_page_listing_other_bytes_than_its_file_is_refused_and_nothing_is_stored(
        venv, index, tmp_path):
    index.add("omt-rs", "1.0")
    _install(venv, index, "omt-rs")  # a store with content

    def stored() -> dict:
        return {k: v for k, v in store_state(venv.env["OMNIPKG_STORE"]).items() if k.split("/")[0] != "tmp"}

    index.add("omt-ra", "1.0")
    index.add("omt-rb", "1.0", requires=["omt-ra"])
    mirror = tmp_path / "mirror"
    newer = make_wheel(mirror / "files", "omt-ra", "2.0")
    tree = _tree(mirror, [newer])
    newer.write_bytes(newer.read_bytes()[:-10] + b"0123456789")  # the page's sha256 is now a lie
    before = stored()

    proc = _install(venv, index, "omt-rb", env={"PIP_EXTRA_INDEX_URL": f"file://{tree}"}, check=False)

    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-2].startswith(
        f"pip-omni: error: {newer.name!r} at {str(newer)!r} has other bytes than the sha256 "), proc.stderr
    assert "the local index is out of date; nothing was stored" in proc.stderr
    assert _pip_commands(venv) == [] and stored() == before


@pytest.mark.network
def test_real_rich_with_this_machines_pip_settings_is_pips_choice(network_venv):
    """With the user's own pip settings, whatever they are (here: a local mirror tree, a wheel
    folder and a constraints file beside PyPI), a cold rich bubble is resolved without pip
    and is what pip would install, file for file."""
    import os

    venv = network_venv
    venv.env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_") and k != "PIP_NO_INDEX"})
    venv.env["HOME"] = os.path.expanduser("~")  # the user's pip.conf, as the user's shell has it

    proc = venv.run("install", "-v", "--bubble", "rich==13.4.2")

    assert "resolved rich==13.4.2 from the index without pip" in proc.stderr, proc.stderr
    assert _pip_commands(venv) == []
    report = venv.pip("install", "-q", "--dry-run", "--ignore-installed", "--report", "-", "rich==13.4.2")
    want = {(e["metadata"]["name"].lower().replace("_", "-"), e["metadata"]["version"],
             e["download_info"]["archive_info"]["hashes"]["sha256"]) for e in json.loads(report.stdout)["install"]}
    assert _bubble(venv, "rich") == want
