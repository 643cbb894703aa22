"""Fixtures of the reliability tests: a small store of overlapping bubbles, offline re-fetching,
child interpreters that pin, and the figures file.

Distribution names start with ``omt`` so nothing collides with a real package. pip is
pointed at the test's wheelhouse (``PIP_NO_INDEX``, ``PIP_FIND_LINKS``): when
``doctor --repair`` fetches a wheel again it gets the local one, never the network.

Tests marked ``slow`` (longer randomised runs) are skipped unless ``-m slow`` is given
or ``OMNIPKG_SLOW=1`` is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from omnipkg_hook.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIGURES = os.environ.get("OMNIPKG_FIGURES") or os.path.join(tempfile.gettempdir(), "pip-omni-reliability-figures.jsonl")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("OMNIPKG_SLOW") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or OMNIPKG_SLOW=1")
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if "slow" in item.keywords and str(item.fspath).startswith(here):
            item.add_marker(skip)


def record_figures(test: str, **figures) -> None:
    """Append one line of figures (``{"test": ..., ...}``) to FIGURES, for the notes."""
    with open(FIGURES, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": test, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}) + "\n")


def lib_files(version: str) -> dict:
    return {"omt_lib/__init__.py": f"VERSION = {version!r}\n",
            "omt_lib/lazy.py": f"WHO = 'omt-lib {version} lazy'\n"}  # fmt: skip


def app_files(name: str, version: str) -> dict:
    mod = name.replace("-", "_")
    return {
        f"{mod}/__init__.py": f"VERSION = {version!r}\nimport omt_lib\n",
        f"{mod}/sub.py": f"WHO = '{name} {version} sub'\n",
        f"{mod}/data.txt": "payload " * 20,
    }


@pytest.fixture
def offline_pip(monkeypatch, wheelhouse):
    """pip finds wheels in the wheelhouse only (for doctor's re-fetch)."""
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("OMNIPKG_PINS", raising=False)


def age(root: str, seconds: int = 600) -> None:
    """Move every file's times back by ``seconds`` (order kept): an edit made now is seen as later."""
    done = set()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if (st.st_ino, st.st_dev) in done:
                continue
            done.add((st.st_ino, st.st_dev))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9), follow_symlinks=False)


@pytest.fixture
def stored(store, wheel, wheelhouse, offline_pip):
    """Bubbles omt-app 1.0 and omt-tool 1.0, both with omt-lib 1.0 (a shared dist)."""
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    lib = wheel("omt-lib", "1.0", lib_files("1.0"))
    app = wheel("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib>=1"])
    tool = wheel("omt-tool", "1.0", app_files("omt-tool", "1.0"), requires=["omt-lib"])
    bubble_from_wheels(store, [app, lib], "omt-app==1.0")
    bubble_from_wheels(store, [tool, lib], "omt-tool==1.0")
    age(store.root)
    return store


def dist_dir(store: Store, name: str, version: str = "1.0") -> str:
    return os.path.join(store.dists, name, version, "py3-none-any")


def child_env(store: Store, pins: str | None = None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH")}
    env["OMNIPKG_STORE"] = store.root
    if pins:
        env["OMNIPKG_PINS"] = pins
    env.update(extra)
    return env


# Imports each bubble's root package and its lazy submodule through pin(); prints what it got.
IMPORT_CHECK = r"""
import sys, omnipkg_hook
for req in sys.argv[1:]:
    name, version = req.split("==")
    mod = name.replace("-", "_")
    omnipkg_hook.pin(req, replace=True)
    m = __import__(mod)
    import importlib
    sub = importlib.import_module(mod + ".sub")
    assert m.VERSION == version, (m.VERSION, version)
    assert sub.WHO == f"{name} {version} sub", sub.WHO
    import omt_lib, omt_lib.lazy
    assert omt_lib.lazy.WHO.startswith("omt-lib "), omt_lib.lazy.WHO
print("ok")
"""


def imports_ok(store: Store, *reqs: str) -> subprocess.CompletedProcess:
    """Pin each requirement in a fresh interpreter and import its package and submodules."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK, *reqs], capture_output=True, text=True,
                          env=child_env(store), timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    return proc


def pip_omni(store: Store, *args, check=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    """``python -m omnipkg_pip args`` with this store (the dev environment's pip-omni)."""
    proc = subprocess.run([sys.executable, "-m", "omnipkg_pip", *args], capture_output=True, text=True,
                          env=child_env(store, **kw), timeout=timeout)  # fmt: skip
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
