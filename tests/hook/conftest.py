"""Fixtures of the import-hook tests: a clean hook per test, a fake main environment,
bubbles made from local wheels through the pip side's real ingest, child interpreters.

Every test has its own store (``store`` from tests/conftest.py sets ``OMNIPKG_STORE``).
Distribution names start with ``omt`` so nothing here collides with a real package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from omnipkg_hook import finder, pins

HOOK_VARS = ("OMNIPKG_PINS", "OMNIPKG_STORE", "OMNIPKG_STRICT", "PATH")


@pytest.fixture(autouse=True)
def clean_hook(monkeypatch, tmp_path_factory):
    """No pins, no finder, no test modules before and after each test; env restored."""
    for var in HOOK_VARS:
        if var in os.environ:
            monkeypatch.setenv(var, os.environ[var])
        else:
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("OMNIPKG_PINS", raising=False)
    monkeypatch.delenv("OMNIPKG_STRICT", raising=False)
    _reset()
    before = set(sys.modules)
    yield
    _reset()
    base = str(tmp_path_factory.getbasetemp())
    for name in [n for n in sys.modules if n not in before]:
        if name.startswith("omt") or _is_under(sys.modules[name], base):
            del sys.modules[name]


def _is_under(module, base: str) -> bool:
    where = getattr(module, "__file__", None) or ""
    paths = list(getattr(module, "__path__", None) or [])
    return any(isinstance(p, str) and p.startswith(base) for p in [where, *paths])


def _reset() -> None:
    pins._state.__init__()
    finder.FINDER.set_routes({}, {})
    finder.FINDER.cache.clear()
    finder.uninstall()


class Main:
    """A directory on ``sys.path`` standing in for the main environment's site-packages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def install(self, wheel_path) -> None:
        with zipfile.ZipFile(wheel_path) as zf:
            zf.extractall(self.path)
        finder.FINDER.cache.clear()


@pytest.fixture
def main_site(tmp_path, monkeypatch) -> Main:
    site = tmp_path / "main-site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return Main(site)


@pytest.fixture
def bubble(store, wheel):
    """``bubble("omt-a==2.0", ("omt-a", "2.0", {...}, {"requires": [...]}), ...)``: wheels -> a bubble."""
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    def make(requirement: str, *wheels) -> dict:
        paths = []
        for spec in wheels:
            if isinstance(spec, (str, os.PathLike)):
                paths.append(spec)
                continue
            name, version, files, kw = (*spec, None, {})[:4] if len(spec) < 4 else spec
            paths.append(wheel(name, version, files, **(kw or {})))
        return bubble_from_wheels(store, paths, requirement)

    return make


def module_files(name: str, version: str, extra: dict | None = None) -> dict:
    files = {f"{name}/__init__.py": f"VERSION = {version!r}\n"}
    files.update(extra or {})
    return files


@pytest.fixture
def run_python(store, main_site):
    """Run Python code in a child interpreter that sees this test's store and main site."""

    def run(code: str, env: dict | None = None, *, check: bool = True, args=(), timeout=120):
        full = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH")}
        full.update({"OMNIPKG_STORE": store.root, "PYTHONPATH": str(main_site.path)})
        full.update(env or {})
        proc = subprocess.run(
            [sys.executable, *args, "-c", code], capture_output=True, text=True, env=full, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    return run


def pth_installed() -> bool:
    import sysconfig

    return os.path.exists(os.path.join(sysconfig.get_paths()["purelib"], "omnipkg_hook.pth"))


needs_pth = pytest.mark.skipif(not pth_installed(), reason="omnipkg_hook.pth is not in this interpreter's site-packages")
