"""Nothing is left outside the store (issue 9, item 9): downloads are staged in ``<store>/tmp``,
held while their writer (pip-omni, or the pip it started) lives; gc and doctor clear them only
once it is gone, and never touch one in use.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from tc_support import child_env, cli, tried

HOLDER = r"""
import subprocess, sys, time
from omnipkg_hook.store import DownloadDir, Store
d = DownloadDir(Store(sys.argv[1]), "wheels-").__enter__()
open(d.path + "/half.whl", "wb").write(b"partial")
p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], pass_fds=(d.fd,))
print(d.path, p.pid, flush=True)
time.sleep(120)
"""


def _gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} did not end")


def _leftovers(store_root):
    doctor = json.loads(cli(store_root, "doctor", "--json").stdout)
    return [p["path"] for p in doctor.get("leftovers", [])]


def test_a_held_download_survives_gc_and_doctor_and_goes_once_its_writer_is_gone(store, tmp_path):
    os.makedirs(store.root)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, store.root], stdout=subprocess.PIPE, text=True,
                              env=child_env(store.root))
    path, grandchild = holder.stdout.readline().split()
    grandchild = int(grandchild)
    try:
        assert os.path.dirname(path) == store.tmp and os.path.basename(path).startswith("dl-wheels-")
        holder.kill()  # the pip-omni that made it is killed; the pip it started still writes there
        holder.wait()
        tried("gc and doctor --repair while a download is in progress")
        gc = json.loads(cli(store.root, "gc", "--json").stdout)
        assert gc["tmp"] == 0 and os.path.exists(os.path.join(path, "half.whl"))
        assert _leftovers(store.root) == []  # not reported as a leftover either
        cli(store.root, "doctor", "--repair")
        assert os.path.exists(os.path.join(path, "half.whl"))
    finally:
        os.kill(grandchild, signal.SIGKILL)  # the one process this test started through the holder
        _gone(grandchild)
    assert _leftovers(store.root) == ["tmp/" + os.path.basename(path)]
    gc = json.loads(cli(store.root, "gc", "--json").stdout)
    assert gc["tmp"] == 1 and not os.path.exists(path)


class _IndexURL(str):
    held: list


@pytest.fixture
def stalled_index():
    """A loopback "index" that accepts connections and never answers (pip waits on it)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    url = _IndexURL(f"http://127.0.0.1:{server.getsockname()[1]}/simple/")
    url.held = held  # the connections pip made: once there is one, pip runs (and holds its download dir)
    yield url
    stop.set()
    t.join()
    for c in held:
        c.close()
    server.close()


def test_a_killed_install_leaves_nothing_in_the_system_temp_dir(store, tmp_path, stalled_index):
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    os.makedirs(store.root)
    env = child_env(store.root, TMPDIR=str(system_tmp), PIP_TIMEOUT="60", PIP_RETRIES="0",
                    PIP_CONFIG_FILE=os.devnull, XDG_STATE_HOME=str(tmp_path / "state"))
    install = subprocess.Popen([sys.executable, "-m", "omnipkg_pip", "install", "--bubble", "omt-x==1.0",
                                "--index-url", stalled_index], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tried("install killed while pip downloads")
    try:
        deadline = time.monotonic() + 60
        while not stalled_index.held or not (
                [n for n in os.listdir(store.tmp) if n.startswith("dl-wheels-")] if os.path.isdir(store.tmp) else []):
            assert time.monotonic() < deadline, "no download directory appeared in <store>/tmp"
            assert install.poll() is None, "the install ended before it downloaded"
            time.sleep(0.1)
        (download,) = [n for n in os.listdir(store.tmp) if n.startswith("dl-wheels-")]
        install.kill()  # pip-omni dies; its pip goes on (and holds the download)
        install.wait()
        assert json.loads(cli(store.root, "gc", "--json").stdout)["tmp"] == 0
        assert os.path.isdir(os.path.join(store.tmp, download))
    finally:
        try:
            os.killpg(install.pid, signal.SIGKILL)  # the process group this test started
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(install.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not [n for n in os.listdir(system_tmp) if n.startswith("pip-omni-")]
    assert _leftovers(store.root) == [f"tmp/{download}"]
    assert json.loads(cli(store.root, "gc", "--json").stdout)["tmp"] == 1
    assert os.listdir(store.tmp) == []
