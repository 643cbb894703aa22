"""Fixtures for the worker tests.

Every test gets its own store and its own runtime directory (``OMNIPKG_RUNTIME_DIR``,
short, under /tmp: a unix socket path has ~104 bytes), so daemons of different tests
never meet. Every daemon a test starts is stopped when it ends, failed or not.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time

import pytest

from omnipkg_hook.workers.client import DaemonClient, daemon_pid
from omnipkg_hook.workers.daemon import DaemonConfig
from omnipkg_hook.workers.runtime import Paths

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/wheelmaker.py


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc or needs zygotes")


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie waiting for a slow init to reap it counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.fixture
def runtime(monkeypatch):
    base = tempfile.mkdtemp(prefix="po-", dir="/tmp")
    rt = os.path.join(base, "rt")
    monkeypatch.setenv("OMNIPKG_RUNTIME_DIR", rt)
    for var in ("OMNIPKG_DAEMON_IDLE_TIMEOUT", "OMNIPKG_DAEMON_MAX_WORKERS", "OMNIPKG_DAEMON_ZYGOTES", "OMNIPKG_PINS"):
        monkeypatch.delenv(var, raising=False)
    yield rt
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def wstore(tmp_path, monkeypatch, runtime) -> str:
    root = str(tmp_path / "store")
    monkeypatch.setenv("OMNIPKG_STORE", root)
    return root


class Daemons:
    """Make clients of this test's daemon; :meth:`stop_all` stops it whatever happened."""

    def __init__(self, store: str, runtime: str) -> None:
        self.store = store
        self.runtime = runtime
        self.paths = Paths(store, runtime)
        self.clients: list[DaemonClient] = []

    def config(self, **overrides) -> DaemonConfig:
        return DaemonConfig(**{"quit_grace": 2.0, "spawn_timeout": 60.0, "poll_interval": 0.05, **overrides})

    def client(self, **config) -> DaemonClient:
        c = DaemonClient(self.store, runtime_dir=self.runtime, config=self.config(**config))
        self.clients.append(c)
        return c

    def pid(self) -> int | None:
        return daemon_pid(self.paths)

    def stop_all(self) -> None:
        for c in self.clients:
            c.close()
        if self.pid() is None:
            return
        try:
            DaemonClient(self.store, runtime_dir=self.runtime, start=False).stop(timeout=10)
        except Exception:
            pid = self.paths.read_pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture
def daemons(wstore, runtime):
    d = Daemons(wstore, runtime)
    try:
        yield d
    finally:
        d.stop_all()


@pytest.fixture
def pool(wstore):
    from omnipkg_hook.workers import WorkerPool

    p = WorkerPool(store=wstore)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def bubble(wstore, tmp_path):
    """``bubble("foo", "1.0", files=None, requires=())``: a real bubble in this test's store,
    built from a local wheel (``foo.VERSION`` says which one is imported)."""
    from wheelmaker import make_wheel

    from omnipkg_hook.store import Store
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    store = Store(wstore)

    def make(name: str, version: str, files=None, extra_wheels=(), **kw):
        mod = name.replace("-", "_")
        files = files or {f"{mod}/__init__.py": f"VERSION = {version!r}\n"}
        wheel = make_wheel(tmp_path / "wheels", name, version, files, **kw)
        bubble_from_wheels(store, [wheel, *extra_wheels], f"{name}=={version}")
        return f"{name}=={version}"

    return make
