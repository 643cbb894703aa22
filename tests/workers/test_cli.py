"""``pip-omni daemon start|stop|status [--json]``, in-process and as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from omnipkg_hook.workers import DaemonClient, DaemonProxy
from omnipkg_pip.cli import main

pytestmark = pytest.mark.timeout(60)


def _cli(*args):
    return main(["daemon", *args])


def test_status_when_nothing_runs(daemons, capsys):
    assert _cli("status") == 3
    assert "no daemon is running for store" in capsys.readouterr().out
    assert _cli("status", "--json") == 3
    assert json.loads(capsys.readouterr().out) == {
        "running": False, "store": daemons.store, "socket": daemons.paths.socket, "cell_zygotes": [],
    }
    assert _cli("stop") == 0
    assert "no daemon is running" in capsys.readouterr().out


def test_start_status_stop(daemons, capsys):
    assert _cli("start", "--idle-timeout", "30", "--max-workers", "3") == 0
    out = capsys.readouterr().out
    pid = daemons.pid()
    assert f"started the daemon (pid {pid})" in out
    assert _cli("start") == 0
    assert f"already running (pid {pid})" in capsys.readouterr().out

    client = DaemonClient(start=False)
    proxy = DaemonProxy(client)
    proxy.execute("1")
    assert _cli("status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pid"] == pid and status["config"] == {"idle_timeout": 30.0, "exit_timeout": 300.0,
                                                              "max_workers": 3, "zygotes": True}
    (w,) = status["workers"]
    assert set(w) == {
        "id", "pid", "pins", "python", "python_version", "state", "via", "clients", "calls",
        "idle_seconds", "age_seconds", "rss_bytes",
    }
    assert w["pid"] == proxy.pid and w["python"] == sys.executable
    (z,) = status["zygotes"]
    assert set(z) == {"pid", "pins", "python", "forks", "preloaded", "age_seconds", "rss_bytes"}
    assert {"running", "pid", "store", "socket", "log", "python", "uptime_seconds", "clients", "rss_bytes",
            "config", "workers", "zygotes", "no_zygote", "cell_zygotes"} == set(status)

    assert _cli("status") == 0
    text = capsys.readouterr().out
    assert f"daemon pid {pid}" in text and str(proxy.pid) in text and "(no pins)" in text

    proxy.close()
    client.close()
    assert _cli("stop") == 0
    assert f"stopped the daemon (pid {pid})" in capsys.readouterr().out
    assert daemons.pid() is None


def test_no_zygotes_option(daemons, capsys):
    assert _cli("start", "--no-zygotes") == 0
    assert DaemonClient(start=False).status()["config"]["zygotes"] is False


def test_as_a_user_runs_it(daemons):
    exe = os.path.join(os.path.dirname(sys.executable), "pip-omni")
    if not os.path.exists(exe):
        pytest.skip("pip-omni is not installed next to this interpreter")

    def run(*args):
        return subprocess.run([exe, "daemon", *args], capture_output=True, text=True, timeout=60)

    started = run("start")
    assert started.returncode == 0, started.stderr
    status = run("status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["pid"] == daemons.pid()
    stopped = run("stop")
    assert stopped.returncode == 0 and "stopped the daemon" in stopped.stdout
    assert run("status").returncode == 3


def test_a_bad_runtime_dir_is_one_line_and_a_hint(runtime, wstore, capsys):
    os.makedirs(runtime, mode=0o755)
    os.chmod(runtime, 0o755)
    assert _cli("status") == 1
    err = capsys.readouterr().err
    assert "has mode 0755; it must be 0700" in err and "hint:" in err
