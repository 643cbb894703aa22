"""Shared by the configuration, archive and filesystem hostile-input tests: a small store, the CLI run as root or as
``nobody``, a read-only bind mount, and the "one line + hint" check.

Every hostile case counts itself with :func:`tried`:
``OMNIPKG_HOSTILE_COUNT=/tmp/n pytest tests/hostile; wc -l /tmp/n``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import pytest

from omnipkg_hook.store import Store

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NOBODY = 65534
COUNT_FILE = os.environ.get("OMNIPKG_HOSTILE_COUNT")  # set it to count: `wc -l` of that file


def tried(what: str) -> None:
    """Record one hostile input tried (one line per input) when OMNIPKG_HOSTILE_COUNT names a file."""
    if not COUNT_FILE:
        return
    with open(COUNT_FILE, "a", encoding="utf-8") as f:
        f.write(what.replace("\n", " ") + "\n")


def lib_files(version: str) -> dict:
    return {"omt_lib/__init__.py": f"VERSION = {version!r}\n"}


def app_files(name: str, version: str) -> dict:
    mod = name.replace("-", "_")
    return {f"{mod}/__init__.py": f"VERSION = {version!r}\nimport omt_lib\n", f"{mod}/sub.py": "WHO = 1\n"}


def build_store(store: Store, wheel) -> Store:
    """Bubbles omt-app 1.0 and omt-tool 1.0 sharing omt-lib 1.0, plus one dist no bubble uses."""
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    lib = wheel("omt-lib", "1.0", lib_files("1.0"))
    app = wheel("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib>=1"])
    tool = wheel("omt-tool", "1.0", app_files("omt-tool", "1.0"), requires=["omt-lib"])
    bubble_from_wheels(store, [app, lib], "omt-app==1.0")
    bubble_from_wheels(store, [tool, lib], "omt-tool==1.0")
    return store


def child_env(store_root: str | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIPKG_") and k != "PYTHONPATH"}
    if store_root is not None:
        env["OMNIPKG_STORE"] = store_root
    env.update(extra)
    return env


def cli(store_root: str | None, *args, user: int | None = None, cwd=None, timeout=120, **extra):
    """``python -m omnipkg_pip args`` (as ``user`` if given) with this store."""
    python, env = sys.executable, child_env(store_root, **extra)
    preexec = None
    if user is not None:
        python, path = nobody_python()
        env["PYTHONPATH"] = path
        env["HOME"] = "/nonexistent"
        env["XDG_STATE_HOME"] = env["XDG_CACHE_HOME"] = os.path.join(user_home(), "state")
        cwd = cwd or user_home()  # not this checkout (root's), whose pyproject.toml is not theirs

        def preexec():
            os.setgid(user)
            os.setgroups([])
            os.setuid(user)

    return subprocess.run([python, "-m", "omnipkg_pip", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout, preexec_fn=preexec)


def one_error(proc, *, code: int = 1) -> tuple[str, str]:
    """The process failed with ``code`` and said exactly ``pip-omni: error: ...`` and one hint line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    # progress steps ("pip-omni: fetch ... ...") are not part of the error
    lines = [ln for ln in proc.stderr.strip().splitlines()
             if not (ln.endswith(" ...") and not ln.startswith(("pip-omni: error:", "  hint:")))]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 2 and lines[0].startswith("pip-omni: error: ") and lines[1].startswith("  hint: "), lines
    return lines[0][len("pip-omni: error: "):], lines[1][len("  hint: "):]


# -- a normal user ------------------------------------------------------------------------------

_nobody: list = []


def user_home() -> str:
    """A directory ``nobody`` may write (made once per session)."""
    if not _nobody or _nobody[0][0] is None:
        raise AssertionError("nobody_python() first")
    return _nobody[0][0][2]


def nobody_python() -> tuple[str, str]:
    """(interpreter ``nobody`` can run, PYTHONPATH giving it this checkout and its dependencies),
    or skip saying why. The test interpreter itself often sits in root's 0700 home, so a
    system interpreter of the same version is used with the test environment's site-packages."""
    if _nobody:
        info, reason = _nobody[0]
        if info is None:
            pytest.skip(reason)
        return info[0], info[1]
    reason = None
    if not hasattr(os, "setuid") or os.geteuid() != 0:
        reason = "running a command as another user needs root (os.setuid)"
    else:
        home = tempfile.mkdtemp(prefix="omt-nobody-")
        import atexit

        atexit.register(shutil.rmtree, home, True)  # the session's; nothing left in /tmp
        os.chmod(home, 0o755)
        os.chown(home, NOBODY, NOBODY)
        ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        site = sysconfig.get_paths()["purelib"]
        path = os.pathsep.join([ROOT, site])
        for cand in (sys.executable, getattr(sys, "_base_executable", ""), shutil.which(f"python{ver}") or "",
                     f"/usr/bin/python{ver}", f"/usr/local/bin/python{ver}"):
            if not cand or not os.path.exists(cand):
                continue
            try:
                probe = subprocess.run(
                    [cand, "-c", "import sys, omnipkg_pip.writers.archive, packaging; print('%d.%d' % sys.version_info[:2])"],
                    capture_output=True, text=True, env={"PYTHONPATH": path, "PATH": os.environ.get("PATH", "")},
                    preexec_fn=lambda: (os.setgid(NOBODY), os.setgroups([]), os.setuid(NOBODY)), cwd="/",
                )
            except OSError:  # it cannot even be executed by nobody
                continue
            if probe.returncode == 0 and probe.stdout.strip() == ver:
                _nobody.append(((cand, path, home), None))
                return cand, path
        reason = (f"no Python {ver} that the user nobody can run and import this checkout with "
                  f"(the test interpreter {sys.executable} is not readable by it)")
    _nobody.append((None, reason))
    pytest.skip(reason)


def nobody_dir(prefix: str) -> str:
    """A fresh directory under /tmp that nobody can reach (0755 root), for stores and archives."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def chown_tree(root: str, uid: int) -> None:
    os.lchown(root, uid, uid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, uid)


# -- a read-only mount --------------------------------------------------------------------------


@contextlib.contextmanager
def read_only_view(path: str):
    """``path`` bind-mounted read-only at a new place (root); skipped with the reason otherwise."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a read-only bind mount needs root and mount(8)")
    target = tempfile.mkdtemp(prefix="omt-ro-")
    done = subprocess.run(["mount", "--bind", path, target], capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(target)
        pytest.skip(f"mount --bind is not permitted here: {done.stderr.strip()}")
    try:
        ro = subprocess.run(["mount", "-o", "remount,bind,ro", target], capture_output=True, text=True)
        if ro.returncode != 0:
            pytest.skip(f"cannot remount read-only: {ro.stderr.strip()}")
        yield target
    finally:
        subprocess.run(["umount", target], capture_output=True)
        os.rmdir(target)
