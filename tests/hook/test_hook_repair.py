"""Self-repair at pin time: damaged or missing dist directories are rebuilt from objects."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys

import pytest

import omnipkg_hook
from omnipkg_hook.errors import StoreCorruptError
from omnipkg_hook.store import interpreter_key, write_json_atomic

from .conftest import module_files, needs_pth
from .digest import tree_digest

KEY = interpreter_key()
TAG = sys.implementation.cache_tag


@pytest.fixture
def stored(store, bubble):
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/sub/__init__.py": "S = 'sub'",
                                                                          "omt_a/data.txt": "payload"})))  # fmt: skip
    return os.path.join(store.root, "dists", "omt-a", "2.0", "py3-none-any")


def _reinstall() -> str:
    if os.path.exists(os.path.join(os.path.dirname(sys.executable), "pip-omni")):
        return "pip-omni install 'omt-a==2.0'"
    return f"pip-omni install --python '{sys.executable}' 'omt-a==2.0'"


def _record_manifests(store, dist_dir) -> None:
    """The pip side records, per bubble dist entry, the dist manifest (and this
    interpreter's .pyc manifest) as objects: what rebuilding a dist directory that is
    gone entirely needs. Check they are there and match the files."""
    with open(store.bubble_path("omt-a", "2.0", KEY)) as f:
        entry = json.load(f)["dists"]["omt-a"]
    for field, name in (("manifest", "omnipkg-dist.json"), ("pyc_manifest", f"omnipkg-pyc-{TAG}.json")):
        with open(os.path.join(dist_dir, name), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        assert entry[field] == sha and os.path.exists(store.object_path(sha))


def _forget_manifests(store) -> None:
    """A bubble written before its entries recorded the manifests."""
    path = store.bubble_path("omt-a", "2.0", KEY)
    with open(path) as f:
        bubble = json.load(f)
    for field in ("manifest", "pyc_manifest"):
        bubble["dists"]["omt-a"].pop(field, None)
    write_json_atomic(store, path, bubble)


def _check_imports(store):
    import omt_a
    import omt_a.sub

    assert (omt_a.VERSION, omt_a.sub.S) == ("2.0", "sub")
    assert omt_a.__file__.startswith(store.root)


def test_a_deleted_file_is_restored_from_objects(store, stored, capsys):
    before = tree_digest(stored)
    os.unlink(os.path.join(stored, "omt_a", "data.txt"))
    omnipkg_hook.pin("omt-a==2.0")
    err = capsys.readouterr().err
    damaged = re.search(r"the damaged copy is in '([^']+)'", err).group(1)
    assert err == (f"pip-omni: repaired omt-a 2.0 in the store ('omt_a/data.txt' is missing) from objects; "
                   f"the damaged copy is in {damaged!r}\n")  # fmt: skip
    assert damaged.startswith(os.path.join(store.root, "tmp", "repair-"))
    assert not os.path.exists(os.path.join(damaged, "omt_a", "data.txt"))  # kept as it was
    assert tree_digest(stored) == before  # byte for byte, .pyc and manifests included
    _check_imports(store)


def test_a_replaced_file_of_another_size_is_restored(store, stored, capsys):
    before = tree_digest(stored)
    init = os.path.join(stored, "omt_a", "__init__.py")
    os.unlink(init)  # replaced, not edited through the link: the object is intact
    with open(init, "w") as f:
        f.write("VERSION = 'tampered with'\n")
    omnipkg_hook.pin("omt-a==2.0")
    assert "('omt_a/__init__.py' has 26 bytes, not 16)" in capsys.readouterr().err
    assert tree_digest(stored) == before


def test_a_deleted_dist_directory_comes_back_when_its_manifest_is_recorded(store, stored, capsys):
    _record_manifests(store, stored)
    before = tree_digest(stored)
    shutil.rmtree(stored)
    omnipkg_hook.pin("omt-a==2.0")
    assert capsys.readouterr().err == (
        "pip-omni: repaired omt-a 2.0 in the store (its directory is missing) from objects\n"
    )
    after = tree_digest(stored)
    manifest = os.path.join(stored, "omnipkg-dist.json")
    assert after.pop(manifest).split()[0] == before.pop(manifest).split()[0]  # now a link to its object (0444)
    assert after == before
    _check_imports(store)


def test_a_deleted_dist_directory_without_pyc_manifest_is_compiled_again(store, stored, capsys):
    _record_manifests(store, stored)
    with open(os.path.join(stored, f"omnipkg-pyc-{TAG}.json"), "rb") as f:
        pyc_manifest = json.load(f)
    bubble_path = store.bubble_path("omt-a", "2.0", KEY)
    with open(bubble_path) as f:
        bubble = json.load(f)
    del bubble["dists"]["omt-a"]["pyc_manifest"]
    write_json_atomic(store, bubble_path, bubble)
    shutil.rmtree(stored)
    omnipkg_hook.pin("omt-a==2.0")
    with open(os.path.join(stored, f"omnipkg-pyc-{TAG}.json"), "rb") as f:
        assert json.load(f)["files"] == pyc_manifest["files"]  # deterministic: the same bytes
    _check_imports(store)


def test_a_deleted_dist_directory_without_a_recorded_manifest_says_reinstall(store, stored):
    _forget_manifests(store)
    shutil.rmtree(stored)
    message = (
        f"cannot repair omt-a 2.0 in the store: its directory is missing and its manifest is gone with it "
        f"({stored!r})\n  hint: reinstall the bubble: {_reinstall()}"
    )
    with pytest.raises(StoreCorruptError, match=f"^{re.escape(message)}$"):
        omnipkg_hook.pin("omt-a==2.0")
    assert omnipkg_hook.pins() == []


def test_a_missing_object_is_a_clear_error(store, stored):
    data = os.path.join(stored, "omt_a", "data.txt")
    sha = hashlib.sha256(b"payload").hexdigest()
    os.unlink(data)
    os.unlink(store.object_path(sha))
    message = (
        f"cannot repair omt-a 2.0 in the store: 'omt_a/data.txt' is missing, and the object of 'omt_a/data.txt' "
        f"is missing too ({store.object_path(sha)!r})\n"
        f"  hint: run `pip-omni doctor --repair`, or reinstall the bubble: {_reinstall()}"
    )
    with pytest.raises(StoreCorruptError, match=f"^{re.escape(message)}$"):
        omnipkg_hook.pin("omt-a==2.0")


def test_a_file_edited_through_its_hard_link_damaged_the_object_too(store, stored):
    data = os.path.join(stored, "omt_a", "data.txt")
    os.chmod(data, 0o644)
    with open(data, "a") as f:  # the object is the same inode: both change
        f.write("more")
    with pytest.raises(StoreCorruptError, match=r"and the object of 'omt_a/data.txt' is damaged too \(.* has 11 "
                                                r"bytes, not 7\)\n  hint: run `pip-omni doctor --repair`"):  # fmt: skip
        omnipkg_hook.pin("omt-a==2.0")


@needs_pth
def test_start_up_checks_top_level_entries_and_repairs(store, stored, run_python):
    _record_manifests(store, stored)
    shutil.rmtree(os.path.join(stored, "omt_a"))
    proc = run_python("import omt_a.sub; print(omt_a.sub.S)", {"OMNIPKG_PINS": "omt-a==2.0"})
    assert proc.stdout == "sub\n"
    assert proc.stderr.startswith("pip-omni: repaired omt-a 2.0 in the store ('omt_a' is missing) from objects")
