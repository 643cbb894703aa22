"""``store push`` / ``store pull`` against a folder and a real S3-compatible server (moto)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import store_state  # tests/conftest.py

from omnipkg_hook.store import Store, interpreter_key
from omnipkg_pip.integrity import checkup
from omnipkg_pip.remote import RemoteStoreError, open_backend, sync

from .conftest import THREE, child_env, imports_ok, pip_omni, remote_put

KEY = interpreter_key()


def _clean(store: Store) -> None:
    result = checkup.run(store, full=True)
    assert result["problems"] == [], result["problems"]


def _remote_keys(url: str) -> list[str]:
    return open_backend(url).list("")


def test_round_trip_second_push_sends_nothing_and_each_object_is_fetched_once(stored, remote, tmp_path):
    backend = open_backend(remote)
    first = sync.push(stored, backend)
    assert sorted(first["bubbles"]) == sorted(f"bubbles/{r.replace('==', '/')}/{KEY}.json" for r in THREE)
    assert first["objects"] > 0 and first["object_bytes"] > 0
    keys = _remote_keys(remote)
    assert "omnipkg-remote.json" in keys
    # Every object the store's bubbles need is there, under the store's own names.
    objects = {k for k in keys if k.startswith("objects/")}
    local = {os.path.relpath(os.path.join(d, f), stored.root) for d, _, fs in os.walk(stored.objects) for f in fs}
    assert objects <= local and len(objects) == first["objects"]

    again = open_backend(remote)
    second = sync.push(stored, again)
    assert second["objects"] == 0 and second["object_bytes"] == 0 and second["bubbles"] == []
    assert again.stats["bytes_up"] == 0 and again.stats["requests"] == 3  # one check per bubble
    assert first["packs"] > 0 and second["packs"] == 0 and second["pack_bytes"] == 0

    other = Store(str(tmp_path / "runner"))
    puller = open_backend(remote)
    got = sync.pull(other, puller)
    assert sorted(got["bubbles"]) == sorted(first["bubbles"])
    assert got["objects"] == first["objects"]
    # Every object once and nothing else: the bytes fetched are exactly the remote's objects and
    # bubble manifests (new dists come as one pack each: few requests).
    assert max(n for k, n in puller.gets.items() if not k.startswith("packs/")) == 1  # packs: ranged reads
    sizes = {k: len(backend.get(k)) for k in keys if k.startswith(("objects/", "bubbles/"))}
    assert puller.stats["bytes_down"] == sum(sizes.values())
    assert any(k.startswith("packs/") for k in puller.gets)
    assert puller.stats["requests"] < len(objects)  # one by one it would be 1 + 3 + 36
    _clean(other)
    imports_ok(other.root, *THREE)
    assert not os.path.exists(other.tmp)

    before = store_state(other.root)  # pulling again changes nothing and fetches no object
    third = open_backend(remote)
    assert sync.pull(other, third)["bubbles"] == []
    assert not any(k.startswith("objects/") for k in third.gets)
    assert store_state(other.root) == before


def test_pull_brings_only_what_the_store_lacks(stored, remote, tmp_path):
    sync.push(stored, open_backend(remote))
    other = Store(str(tmp_path / "runner"))
    sync.pull(other, open_backend(remote), ["omt-app==1.0"])
    had = {os.path.relpath(os.path.join(d, f), other.root) for d, _, fs in os.walk(other.objects) for f in fs}
    backend = open_backend(remote)
    got = sync.pull(other, backend, ["omt-tool==1.0"])
    assert got["dists"] == ["dists/omt-tool/1.0/py3-none-any"]  # omt-lib was there already
    now = {os.path.relpath(os.path.join(d, f), other.root) for d, _, fs in os.walk(other.objects) for f in fs}
    rk = f"bubbles/omt-tool/1.0/{KEY}.json"
    # What the store had is not fetched again; what it lacked is fetched once.
    assert got["objects"] == len(now - had) > 0
    assert backend.stats["bytes_down"] == sum(os.path.getsize(other.abspath(k)) for k in now - had) + len(
        backend.get(rk))
    _clean(other)
    imports_ok(other.root, "omt-app==1.0", "omt-tool==1.0")


def test_the_cli_pushes_and_pulls_and_a_pulled_bubble_has_its_scripts(stored, remote, tmp_path):
    out = pip_omni(stored.root, "store", "push", remote, "omt-cli==1.0", "--json", check=0)
    assert json.loads(out.stdout)["bubbles"] == [f"bubbles/omt-cli/1.0/{KEY}.json"]
    runner = str(tmp_path / "runner")
    out = pip_omni(runner, "store", "pull", "omt-cli==1.0", check=0, OMNIPKG_REMOTE=remote)
    assert out.stdout.startswith("pulled 1 bubble, 2 dists, ")
    script = os.path.join(Store(runner).bubble_bin("omt-cli", "1.0", KEY), "omt-cli")
    assert os.access(script, os.X_OK)
    import subprocess

    ran = subprocess.run([script], capture_output=True, text=True, env=child_env(runner))
    assert ran.stdout == "omt-cli ran\n", ran.stderr
    missing = pip_omni(runner, "store", "pull", remote, "omt-app==1.0", check=1)
    assert f"the remote has no bubble 'bubbles/omt-app/1.0/{KEY}.json'" in missing.stderr


def test_a_corrupted_object_is_one_error_naming_it_and_nothing_is_published(stored, remote, tmp_path):
    sync.push(stored, open_backend(remote))
    other = Store(str(tmp_path / "runner"))
    sync.pull(other, open_backend(remote), ["omt-app==1.0"])
    bad = _only_in(stored, "omt-tool")
    remote_put(remote, bad, b"VERSION = 'evil'\n")
    remote_put(remote, _pack_of(stored, "omt-tool"), None)  # else the pull takes it from the pack
    before = store_state(other.root)
    with pytest.raises(RemoteStoreError) as e:
        sync.pull(other, open_backend(remote), ["omt-tool==1.0"])
    assert e.value.message == f"rejected the pull from {remote!r}: the object {bad!r} does not match its sha256"
    assert store_state(other.root) == before
    out = pip_omni(other.root, "store", "pull", remote, "omt-tool==1.0", check=1, **_aws())
    assert out.stderr.splitlines()[0] == f"pip-omni: error: {e.value.message}"
    assert store_state(other.root) == before


def test_an_object_deleted_on_the_remote_is_one_error_naming_it(stored, remote, tmp_path):
    sync.push(stored, open_backend(remote))
    gone = _only_in(stored, "omt-tool")
    remote_put(remote, gone, None)
    remote_put(remote, _pack_of(stored, "omt-tool"), None)
    other = Store(str(tmp_path / "runner"))
    sync.pull(other, open_backend(remote), ["omt-app==1.0"])
    before = store_state(other.root)
    with pytest.raises(RemoteStoreError) as e:
        sync.pull(other, open_backend(remote))
    assert e.value.message == f"rejected the pull from {remote!r}: the remote lacks the object {gone!r}"
    assert store_state(other.root) == before


@pytest.mark.parametrize("field, value, says", [
    ("path", "dists/../../etc", "names the dist path 'dists/../../etc', outside dists/"),
    # a script name or entry point goes into launcher source code: a newline would be code
    ("scripts", {"omt\nimport os": "omt_app.sub:main"}, "not a plain word"),
    ("scripts", {"omt": "omt_app.sub:main\nimport os"}, "not a plain word"),
])
def test_a_tampered_bubble_manifest_is_rejected(stored, remote, tmp_path, field, value, says):
    sync.push(stored, open_backend(remote))
    rk = f"bubbles/omt-app/1.0/{KEY}.json"
    m = json.loads(open_backend(remote).get(rk))
    if field == "path":
        m["dists"]["omt-lib"]["path"] = value
    else:
        m[field] = value
    remote_put(remote, rk, json.dumps(m).encode())
    other = Store(str(tmp_path / "runner"))
    sync.pull(other, open_backend(remote), ["omt-tool==1.0"])
    before = store_state(other.root)
    with pytest.raises(RemoteStoreError) as e:
        sync.pull(other, open_backend(remote), ["omt-app==1.0"])
    assert says in e.value.message
    assert store_state(other.root) == before


def test_a_damaged_pack_falls_back_to_its_objects(stored, remote, tmp_path):
    sync.push(stored, open_backend(remote))
    clean = open_backend(remote)
    sync.pull(Store(str(tmp_path / "clean")), clean, ["omt-tool==1.0"])
    pack = _pack_of(stored, "omt-tool")
    data = bytearray(open_backend(remote).get(pack))
    with open(os.path.join(stored.dists, "omt-tool", "1.0", "py3-none-any", "omnipkg-dist.json"), "rb") as f:
        sizes = sync.pack_keys(json.loads(f.read())["files"])
    bad = _only_in(stored, "omt-tool")
    data[sum(sizes[k] for k in list(sizes)[: list(sizes).index(bad)])] ^= 0xFF  # first byte of that object
    remote_put(remote, pack, bytes(data))
    other = Store(str(tmp_path / "runner"))
    backend = open_backend(remote)
    sync.pull(other, backend, ["omt-tool==1.0"])
    one_by_one = {k for k in backend.gets if k.startswith("objects/")}
    assert pack in backend.gets and one_by_one == {k for k in clean.gets if k.startswith("objects/")} | {bad}
    _clean(other)
    imports_ok(other.root, "omt-tool==1.0")


def _pack_of(store: Store, name: str) -> str:
    """The key of the pack of ``name``'s dist manifest."""
    import hashlib

    with open(os.path.join(store.dists, name, "1.0", "py3-none-any", "omnipkg-dist.json"), "rb") as f:
        return "packs/" + hashlib.sha256(f.read()).hexdigest()


def _only_in(store: Store, name: str) -> str:
    """The key of an object of ``name``'s dist that no other bubble uses (its data.txt)."""
    from omnipkg_hook.store import read_manifest

    m = read_manifest(os.path.join(store.dists, name, "1.0", "py3-none-any", "omnipkg-dist.json"))
    sha = next(f["sha256"] for f in m["files"] if f["path"].endswith("data.txt"))
    return f"objects/{sha[:2]}/{sha[2:]}"


def _aws() -> dict:
    return {k: os.environ[k] for k in os.environ if k.startswith("AWS_")}


@pytest.mark.parametrize("url, says", [
    ("ftp://host/x", "unknown kind of remote store 'ftp://host/x'"),
    ("s3://Bad_Bucket/x", "not an S3 bucket name in 's3://Bad_Bucket/x'"),
    ("s3://bucket/../x", "an s3:// remote is s3://bucket/prefix, not 's3://bucket/../x'"),
    ("file://host/share", "a file:// remote must be an absolute local path, not 'file://host/share'"),
])
def test_a_bad_remote_url_is_one_line(store, url, says):
    out = pip_omni(store.root, "store", "push", url, check=1)
    assert out.stderr.splitlines()[0] == f"pip-omni: error: {says}"
    assert not os.path.exists(store.root)


def test_pull_names_bubbles_exactly(store, tmp_path):
    out = pip_omni(store.root, "store", "pull", f"file://{tmp_path}/r", "omt-app>=1", check=1)
    assert out.stderr.splitlines()[0] == "pip-omni: error: pull names bubbles as NAME==VERSION, not 'omt-app>=1'"
    out = pip_omni(store.root, "store", "pull", check=1)
    assert "`pip-omni store pull` needs a REMOTE" in out.stderr


def test_s3_without_boto3_says_which_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(RemoteStoreError) as e:
        open_backend("s3://bucket/ci")
    assert e.value.message == "the remote 's3://bucket/ci' needs boto3, which is not installed"
    assert e.value.hint == "pip install 'pip-omni[s3]'"
