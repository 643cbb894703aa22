"""``pip-omni install`` with a remote: pull what the remote has instead of running pip; ``--push``."""

from __future__ import annotations

import json
import os

import pytest

from omnipkg_hook.store import Store, interpreter_key
from omnipkg_pip.remote import open_backend

from .conftest import imports_ok, pip_omni

KEY = interpreter_key()


@pytest.fixture
def offline(tmp_path, wheelhouse) -> dict:
    """pip sees only the wheelhouse; ``nothing`` is the environment of a runner without wheels."""
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    base = {"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    return {"wheels": {**base, "PIP_FIND_LINKS": str(wheelhouse)}, "nothing": {**base, "PIP_FIND_LINKS": str(empty)}}


def _rows(proc) -> dict:
    return {r["name"]: r for r in json.loads(proc.stdout)}


def test_install_pushes_what_it_made_and_another_runner_pulls_it_without_pip(wheels, remote, offline, tmp_path):
    maker = str(tmp_path / "maker")
    rows = _rows(pip_omni(maker, "install", "--bubble", "omt-app==1.0", "--push", "--remote", remote, "--json",
                          check=0, **offline["wheels"]))
    assert rows["omt-app"]["action"] == "created"
    assert f"bubbles/omt-app/1.0/{KEY}.json" in open_backend(remote).list("bubbles/")

    runner = str(tmp_path / "runner")
    # This runner has no wheels: without the remote, pip cannot make the bubble.
    failed = pip_omni(runner, "install", "--bubble", "omt-app==1.0", "--no-remote", check=1,
                      OMNIPKG_REMOTE=remote, **offline["nothing"])
    assert "pip" in failed.stderr
    rows = _rows(pip_omni(runner, "install", "--bubble", "omt-app>=1", "--json", check=0,
                          OMNIPKG_REMOTE=remote, **offline["nothing"]))
    assert rows["omt-app"]["action"] == "pulled" and rows["omt-app"]["version"] == "1.0"
    assert rows["omt-app"]["reason"].endswith(f"; from {remote}")
    imports_ok(runner, "omt-app==1.0")
    again = _rows(pip_omni(runner, "install", "--bubble", "omt-app==1.0", "--json", check=0,
                           OMNIPKG_REMOTE=remote, **offline["nothing"]))
    assert again["omt-app"]["action"] == "present"


def test_pyproject_remote_and_remote_push(wheels, offline, tmp_path):
    remote = f"file://{tmp_path / 'shared'}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.omnipkg]\nremote = "{remote}"\nremote_push = true\n')
    maker = str(tmp_path / "maker")
    pip_omni(maker, "install", "--bubble", "omt-tool==1.0", check=0, cwd=str(project), **offline["wheels"])
    assert open_backend(remote).list("bubbles/") == [f"bubbles/omt-tool/1.0/{KEY}.json"]
    runner = str(tmp_path / "runner")
    rows = _rows(pip_omni(runner, "install", "--bubble", "omt-tool==1.0", "--json", check=0, cwd=str(project),
                          **offline["nothing"]))
    assert rows["omt-tool"]["action"] == "pulled"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_pyproject_another_user_owns_configures_no_remote(wheels, offline, tmp_path):
    remote = f"file://{tmp_path / 'theirs'}"
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.omnipkg]\nremote = "{remote}"\nremote_push = true\n')
    os.chown(project / "pyproject.toml", 12345, 12345)
    maker = str(tmp_path / "maker")
    out = pip_omni(maker, "install", "--bubble", "omt-tool==1.0", check=0, cwd=str(project), **offline["wheels"])
    assert (f"pip-omni: warning: ignoring [tool.omnipkg] in {str(project / 'pyproject.toml')!r}: "
            "it is owned by uid 12345, not by you") in out.stderr
    assert not os.path.exists(tmp_path / "theirs")
    assert Store(maker).bubble_versions("omt-tool", KEY) == ["1.0"]


def test_a_remote_that_cannot_be_read_falls_back_to_pip_in_one_line(wheels, offline, tmp_path):
    shared = tmp_path / "shared"
    (shared / "bubbles" / "omt-app").mkdir(parents=True)
    (shared / "bubbles" / "omt-app" / "1.0").mkdir()
    (shared / "bubbles" / "omt-app" / "1.0" / f"{KEY}.json").write_text("{not json")
    maker = str(tmp_path / "maker")
    out = pip_omni(maker, "install", "--bubble", "omt-app==1.0", "--json", check=0,
                   OMNIPKG_REMOTE=f"file://{shared}", **offline["wheels"])
    assert _rows(out)["omt-app"]["action"] == "created"
    assert "pip-omni: not using the remote: rejected the pull from" in out.stderr
    assert "; running pip instead" in out.stderr
