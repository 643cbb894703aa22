"""The daemon exits when idle (item 11); logs and the probe cache follow the store or their variables."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest


@pytest.fixture
def runtime():
    path = tempfile.mkdtemp(prefix="omx-", dir="/tmp")  # AF_UNIX paths must stay short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_daemon_exits_after_its_exit_timeout_with_no_workers(omni_venv, runtime):
    env = {"OMNIPKG_RUNTIME_DIR": runtime}
    started = json.loads(omni_venv.cli("daemon", "start", "--exit-timeout", "1", "--idle-timeout", "1", "--json",
                                       env=env).stdout)
    try:
        status = json.loads(omni_venv.cli("daemon", "status", "--json", env=env).stdout)
        assert status["config"]["exit_timeout"] == 1.0 and status["workers"] == []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if omni_venv.cli("daemon", "status", env=env, check=False).returncode == 3:
                break
            time.sleep(0.3)
        else:
            pytest.fail("the daemon did not exit after its exit timeout")
        with open(started["log"]) as f:
            assert "no worker and no client for" in f.read()
    finally:
        omni_venv.cli("daemon", "stop", env=env, check=False)


def test_daemon_stays_while_a_client_holds_it(omni_venv, runtime):
    env = {"OMNIPKG_RUNTIME_DIR": runtime, "OMNIPKG_DAEMON_EXIT_TIMEOUT": "1", "OMNIPKG_DAEMON_IDLE_TIMEOUT": "1"}
    holder = subprocess.Popen(
        [str(omni_venv.python), "-c",
         "import sys, time; from omnipkg_hook.workers import DaemonClient; c = DaemonClient(); "
         "print('up', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**omni_venv.env, **env})
    try:
        assert holder.stdout.readline().strip() == "up"
        time.sleep(3)
        assert omni_venv.cli("daemon", "status", env=env, check=False).returncode == 0
    finally:
        holder.communicate("\n", timeout=30)
        omni_venv.cli("daemon", "stop", env=env, check=False)


def test_pip_logs_and_probe_cache_follow_the_store_or_their_variables(omni_venv, wheel, wheelhouse, tmp_path):
    wheel("logged", "1.0")
    omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "logged")
    store = omni_venv.env["OMNIPKG_STORE"]
    assert any(n.startswith("pip-") for n in os.listdir(os.path.join(store, "logs")))
    assert os.listdir(os.path.join(store, "cache", "interpreters"))
    other = tmp_path / "elsewhere"
    env = {"OMNIPKG_LOG_DIR": str(other / "logs"), "OMNIPKG_CACHE_DIR": str(other / "cache")}
    wheel("logged2", "1.0")
    omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "logged2", env=env)
    assert os.listdir(other / "logs") and os.listdir(other / "cache" / "interpreters")
    assert not (tmp_path / "state").exists()  # nothing in the user's log directory
