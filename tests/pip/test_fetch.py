"""writers/fetch.py: pip's plan read as files, and a planned file that is not the one pip planned."""

from __future__ import annotations

import hashlib

import pytest
from conftest import store_state
from wheelmaker import make_wheel

from omnipkg_hook.errors import PipError
from omnipkg_hook.store import DownloadDir
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import fetch


def _entry(name, version, info):
    return {"metadata": {"name": name, "version": version, "requires_dist": ["dep>=1"]}, "download_info": info}


def test_the_report_is_read_as_files_and_a_directory_or_vcs_item_leaves_it_to_pip_wheel():
    url = "https://files.example/a/omt_f-1.0-py3-none-any.whl"
    report = {"install": [_entry("Omt_F", "1.0", {"url": url, "archive_info": {"hash": "sha256=" + "a" * 64}})]}
    (p,) = fetch.planned_from_report(report).values()
    assert (p.name, p.version, p.url, p.sha256, p.tag, p.requires_dist) == (
        "omt-f", "1.0", url, "a" * 64, "py3-none-any", ["dep>=1"])
    assert p.requirement() == f"{url}#sha256={'a' * 64}"
    for info in ({"url": "file:///src/omt", "dir_info": {}}, {"url": "https://g/x.git", "vcs_info": {"vcs": "git"}}):
        assert fetch.planned_from_report({"install": [_entry("omt-f", "1.0", info)]}) is None


def test_a_local_planned_wheel_that_changed_since_the_plan_is_refused_and_nothing_is_stored(store, wheelhouse):
    wheel = make_wheel(wheelhouse, "omt-f", "1.0", {"omt_f/__init__.py": "X = 1\n"})
    planned_sha = hashlib.sha256(b"the file pip planned").hexdigest()
    plan = fetch.BubblePlan()
    plan.fetch.append(fetch.Planned("omt-f", "1.0", wheel.as_uri(), planned_sha))
    before = store_state(store.root)
    with DownloadDir(store, "wheels-") as work:
        with pytest.raises(PipError) as caught:
            fetch.fetch(interp.current(), plan, work, [], 0)
        assert caught.value.message == (
            f"'omt_f-1.0-py3-none-any.whl' has sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()}, "
            f"not the {planned_sha} pip planned ({wheel.as_uri()})")
    outside_tmp = lambda state: {k: v for k, v in state.items() if k.split("/")[0] != "tmp"}  # noqa: E731
    after = store_state(store.root)
    assert outside_tmp(after) == outside_tmp(before) and not [k for k in after if k.startswith("tmp/")]
