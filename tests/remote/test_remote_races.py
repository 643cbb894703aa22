"""Remote stores under pressure: processes pushing and pulling at once, a pull killed mid-way,
wrong credentials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from omnipkg_hook.store import Store, read_manifest
from omnipkg_pip.integrity import checkup
from omnipkg_pip.remote import open_backend, sync

from .conftest import THREE, build, child_env, imports_ok, needs_moto, pip_omni

# push: once. pull: until the remote has all three bubbles (a puller must never see a bubble
# whose objects are missing: any error fails it).
WORKER = r"""
import json, sys, time
from omnipkg_hook.store import Store
from omnipkg_pip.remote import open_backend, sync
action, root, url = sys.argv[1:4]
store, backend = Store(root), open_backend(url)
if action == "push":
    print(json.dumps(sync.push(store, backend)))
else:
    deadline = time.time() + 120
    while True:
        r = sync.pull(store, backend)
        if len(store.bubble_names()) == 3 or time.time() > deadline:
            break
        time.sleep(0.02)
    print(json.dumps({"bubbles": store.bubble_names(), "requests": backend.stats["requests"]}))
"""


def _clean(store: Store) -> None:
    result = checkup.run(store, full=True)
    assert result["problems"] == [], result["problems"]


def test_four_processes_push_and_pull_the_same_bubbles_at_once(remote, wheels, tmp_path):
    sources = [build(Store(str(tmp_path / f"src{i}")), wheels) for i in range(2)]
    target = Store(str(tmp_path / "runner"))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, action, root, remote], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=child_env(root))
             for action, root in [("pull", target.root), ("push", sources[0].root),
                                  ("pull", target.root), ("push", sources[1].root)]]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    pushes = [json.loads(outs[i][0]) for i in (1, 3)]
    # Each bubble was published on the remote by exactly one pusher; the other found it there.
    assert sorted(pushes[0]["bubbles"] + pushes[1]["bubbles"]) == sorted(pushes[0]["bubbles"] + pushes[0]["present"])
    assert len(pushes[0]["bubbles"]) + len(pushes[1]["bubbles"]) == 3
    assert json.loads(outs[0][0])["bubbles"] == ["omt-app", "omt-cli", "omt-tool"]
    _clean(target)
    imports_ok(target.root, *THREE)
    # Every manifest on the remote names only objects the remote has.
    backend = open_backend(remote)
    keys = set(backend.list(""))
    for k in (k for k in keys if k.startswith("bubbles/")):
        for e in json.loads(backend.get(k))["dists"].values():
            dist = json.loads(backend.get(sync.object_key(e["manifest"])))
            assert {sync.object_key(f["sha256"]) for f in dist["files"]} <= keys


# Pulls everything, stopping for good (until SIGKILL) at the chosen point.
KILLED = r"""
import os, sys, time
from omnipkg_hook.store import Store
from omnipkg_pip.writers import archive
from omnipkg_pip.remote import open_backend, sync
root, url, where, flag = sys.argv[1:5]
backend = open_backend(url)
backend.workers = 1
def stop():
    open(flag, "w").close()
    time.sleep(600)
if where == "download":
    real, n = backend.get, [0]
    def get(key):
        n[0] += 1
        if n[0] == 8:  # bubble manifests, dist manifests, then packs and objects
            stop()
        return real(key)
    backend.get = get
else:  # after the first dist directory and every object are published
    real, n = archive.materialize, [0]
    def materialize(store, files, dest):
        n[0] += 1
        if n[0] == 2:
            stop()
        return real(store, files, dest)
    archive.materialize = materialize
sync.pull(Store(root), backend)
"""


@pytest.mark.parametrize("where", ["download", "publish"])
def test_a_pull_killed_mid_way_leaves_the_store_clean(stored, remote, tmp_path, where):
    sync.push(stored, open_backend(remote))
    runner = Store(str(tmp_path / "runner"))
    flag = str(tmp_path / "stopped")
    proc = subprocess.Popen([sys.executable, "-c", KILLED, runner.root, remote, where, flag],
                            env=child_env(runner.root), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240  # a loaded machine: a 3.9 run once needed over 120 s to get there
    while not os.path.exists(flag):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert runner.bubble_names() == []  # no bubble is visible, so nothing half-made is used
    if where == "publish":
        assert len(os.listdir(runner.dists)) == 1  # one whole dist, referenced by nothing yet
    _clean(runner)
    pip_omni(runner.root, "store", "pull", remote, check=0)
    _clean(runner)
    imports_ok(runner.root, *THREE)


@needs_moto
def test_wrong_credentials_are_one_line(stored, moto_endpoint, aws_env, tmp_path):
    """With moto checking signatures: the right key pushes, a wrong secret is refused in one line."""
    import boto3
    from moto import settings

    admin = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                  region_name="us-east-1")
    iam = admin.client("iam", endpoint_url=moto_endpoint)
    iam.create_user(UserName="ci")
    iam.put_user_policy(UserName="ci", PolicyName="s3", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="ci")["AccessKey"]
    admin.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="omt-auth")
    url = "s3://omt-auth/ci"
    old = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0  # from now on moto checks every request
    try:
        good = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        pip_omni(stored.root, "store", "push", url, "omt-app==1.0", check=0, **good)
        bad = {**good, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        runner = str(tmp_path / "runner")
        out = pip_omni(runner, "store", "pull", url, "omt-app==1.0", check=1, **bad)
        lines = out.stderr.splitlines()
        assert len(lines) == 2 and lines[1].startswith("  hint: check AWS_ACCESS_KEY_ID"), out.stderr
        assert lines[0].startswith(f"pip-omni: error: the remote {url!r} refused the credentials to read "
                                   f"'s3://omt-auth/ci/bubbles/omt-app/1.0/"), lines[0]
        assert "SignatureDoesNotMatch" in lines[0] or "403" in lines[0]
        out = pip_omni(runner, "store", "pull", url, "omt-app==1.0", check=1, AWS_ACCESS_KEY_ID="AKIANOBODY")
        assert "refused the credentials" in out.stderr.splitlines()[0] and "InvalidAccessKeyId" in out.stderr
        assert not os.path.exists(os.path.join(runner, "bubbles"))
        pip_omni(runner, "store", "pull", url, "omt-app==1.0", check=0, **good)
        assert read_manifest(Store(runner).bubble_path("omt-app", "1.0", sync.interpreter_key()))["root"] == "omt-app"
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = old
