"""Shared fixtures: a private store per test, a wheelhouse, and a real venv with pip-omni.

Hermetic: wheels are written by ``tests/wheelmaker.py``; pip installs use
``--no-index --find-links``. The ``omni_venv`` venv gets pip-omni from a wheel
built from this checkout and its three runtime dependencies linked from the test
environment, so making it needs no package index either.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from wheelmaker import make_wheel  # noqa: E402

from omnipkg_hook.store import Store  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path, monkeypatch) -> Store:
    """An empty store of this test's own, exported as OMNIPKG_STORE."""
    root = tmp_path / "store"
    monkeypatch.setenv("OMNIPKG_STORE", str(root))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # pip logs
    return Store(str(root))


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    path = tmp_path / "wheels"
    path.mkdir()
    return path


@pytest.fixture
def wheel(wheelhouse):
    """``wheel("foo", "1.0", requires=[...])`` writes a wheel into the wheelhouse."""

    def make(name, version, files=None, **kw):
        return make_wheel(wheelhouse, name, version, files, **kw)

    return make


def tree_digest(*roots: os.PathLike, skip=("__pycache__",)) -> dict[str, str]:
    """path -> sha256 (or link target / 'dir') of every entry under ``roots``."""
    out = {}
    for root in roots:
        root = Path(root)
        if not root.exists():
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in skip)
            for d in dirnames:
                out[os.path.join(dirpath, d)] = "dir"
            for f in sorted(filenames):
                p = os.path.join(dirpath, f)
                if os.path.islink(p):
                    out[p] = "link:" + os.readlink(p)
                else:
                    with open(p, "rb") as fh:
                        out[p] = hashlib.sha256(fh.read()).hexdigest()
    return out


# pip-omni's own pip logs and interpreter facts, kept beside a store's content (omnipkg_pip/locations.py)
BESIDE_THE_STORE = ("logs", os.path.join("cache", "interpreters"))


def store_state(*roots: os.PathLike) -> dict[str, tuple]:
    """Every entry under ``roots`` -> (kind, sha256 or link target, mode, inode, nlink, uid).

    For hostile-input tests: equal before and after means nothing was written, replaced,
    re-linked, chmod'ed or chown'ed -- not even an object rewritten with the same bytes.
    ``logs/`` and ``cache/interpreters/`` at a root are left out (not store content; a pip
    log is what an error points to), and so is ``cache/`` when nothing else is in it.
    """
    out = {}
    for root in roots:
        root = Path(root)
        if not os.path.lexists(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            dirnames[:] = [d for d in dirnames if os.path.normpath(os.path.join(rel, d)) not in BESIDE_THE_STORE]
            for name in sorted(dirnames + filenames):
                p = os.path.join(dirpath, name)
                if rel == "." and name == "cache" and not os.listdir(p) or (
                        rel == "." and name == "cache" and os.listdir(p) == ["interpreters"]):
                    continue
                st = os.lstat(p)
                if os.path.islink(p):
                    body = ("link", os.readlink(p))
                elif os.path.isdir(p):
                    body = ("dir", "")
                else:
                    with open(p, "rb") as fh:
                        body = ("file", hashlib.sha256(fh.read()).hexdigest())
                out[os.path.relpath(p, root)] = (*body, st.st_mode, st.st_ino, st.st_nlink, st.st_uid)
    return out


@dataclass
class Venv:
    path: Path
    python: Path
    site: Path
    env: dict

    def run(self, *args, check=True, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
        """Run ``pip-omni args`` (or ``python -m ...`` if args[0] == "python") in this venv."""
        if args and args[0] == "python":
            cmd = [str(self.python), *args[1:]]
        else:
            cmd = [str(self.path / "bin" / "pip-omni"), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env={**self.env, **(env or {})}, timeout=timeout, **kw
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def cli(self, *args, **kw) -> subprocess.CompletedProcess:
        """Always ``pip-omni args`` (for ``pip-omni python ...``, which ``run`` would take for the interpreter)."""
        return self._cli(args, kw)

    def _cli(self, args, kw) -> subprocess.CompletedProcess:
        env = kw.pop("env", None)
        check = kw.pop("check", True)
        cmd = [str(self.path / "bin" / "pip-omni"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**self.env, **(env or {})},
                              timeout=kw.pop("timeout", 300), **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def pip(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.run("python", "-m", "pip", "--disable-pip-version-check", *args, **kw)


def _dist_paths(name: str) -> list[Path]:
    """Top-level files and dirs of an installed distribution (for linking into a venv)."""
    dist = importlib.metadata.distribution(name)
    base = Path(dist.locate_file(""))
    tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    return [base / t for t in sorted(tops) if (base / t).exists() and t != "__pycache__"]


@pytest.fixture(scope="session")
def omni_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("omni-wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )
    return next(out.glob("pip_omni-*.whl"))


def make_venv(path: Path, omni_wheel: Path, tmp: Path) -> Venv:
    """A fresh venv with pip-omni installed from ``omni_wheel`` (no index needed).

    The venv is made without pip (ensurepip costs seconds per test); pip and pip-omni's
    runtime dependencies are linked in from the test environment through one ``.pth``
    that points at a directory outside site-packages, so the venv's own site-packages --
    the "main environment" the tests hash -- holds only what the test installs.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    python = path / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
    ).strip())
    deps = path / "omni-test-deps"
    deps.mkdir()
    wanted = ["pip", "packaging", "platformdirs", "installer"]
    if sys.version_info < (3, 11):
        wanted.append("tomli")
    if sys.version_info < (3, 10):
        wanted.append("importlib-metadata")
        wanted.append("zipp")
    for name in wanted:
        for p in _dist_paths(name):
            (deps / p.name).symlink_to(p)
    (site / "_omni_test_deps.pth").write_text(str(deps) + "\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "OMNIPKG_PINS", "VIRTUAL_ENV") and not k.startswith("PIP_")}
    env.update({
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "XDG_STATE_HOME": str(tmp / "state"),
        "OMNIPKG_STORE": str(tmp / "store"),
    })
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(omni_wheel)],
        check=True, capture_output=True, env=env,
    )
    return Venv(path, python, site, env)


@pytest.fixture
def omni_venv(tmp_path, omni_wheel) -> Venv:
    """A fresh venv with pip-omni installed, its own store and log dir; pip never reaches an index."""
    return make_venv(tmp_path / "venv", omni_wheel, tmp_path)


def pytest_report_header(config):
    return f"pip-omni tests; python {sysconfig.get_python_version()} at {sys.executable}"


_INDEX_REACHABLE: bool | None = None


def index_reachable() -> bool:
    """Whether pip's configured index answers (checked once per session)."""
    global _INDEX_REACHABLE
    if _INDEX_REACHABLE is None:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-q",
             "-d", os.path.join(os.environ.get("TMPDIR", "/tmp"), "pip-omni-probe"), "mdurl==0.1.2"],
            capture_output=True, text=True, timeout=120,
        )
        _INDEX_REACHABLE = proc.returncode == 0
    return _INDEX_REACHABLE


@pytest.fixture(scope="module")
def network_venv(tmp_path_factory, omni_wheel) -> Venv:
    """A fresh venv with pip-omni whose pip may use the real package index."""
    if not index_reachable():
        pytest.skip("the package index cannot be reached: network tests skipped")
    tmp = tmp_path_factory.mktemp("netvenv")
    venv = make_venv(tmp / "venv", omni_wheel, tmp)
    for key in ("PIP_NO_INDEX", "PIP_CONFIG_FILE"):
        venv.env.pop(key, None)
    return venv
