"""Stores the user cannot write and filesystems that fill up (issue 9, item 7).

Read-only work (list, show, why, doctor, doctor --quick, gc --dry-run, store export, store
info, pins) works on a read-only bind mount and on another user's store; every writer there
fails with one line naming the store and the reason, and the store is byte-identical. A full
disk during an install is "no space left on the store's filesystem", the store stays as it
was, and the same install succeeds once there is room.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import store_state
from tc_support import (
    NOBODY,
    build_store,
    child_env,
    cli,
    nobody_dir,
    nobody_python,
    one_error,
    read_only_view,
    tried,
)

from omnipkg_hook.store import Store

READERS = [
    ["list"], ["list", "--json"], ["show", "omt-app"], ["why", "omt_lib", "--pin", "omt-app==1.0"],
    ["doctor"], ["doctor", "--quick"], ["gc", "--dry-run"], ["store", "info"],
]


def _writers(wheelhouse, archive_path):
    return [
        ["gc"], ["doctor", "--repair"], ["uninstall", "-y", "omt-app==1.0"], ["store", "import", archive_path],
        ["install", "--bubble", "omt-new==1.0", "--no-index", "-f", str(wheelhouse)],
    ]


@pytest.fixture
def built(store, wheel):
    build_store(store, wheel)
    wheel("omt-new", "1.0", {"omt_new/__init__.py": "X = 1\n"})
    return store


def _good_archive(store, where):
    from omnipkg_pip.writers import archive

    path = os.path.join(where, "good.tar")
    archive.export(store, path, ["omt-tool==1.0"])
    os.chmod(path, 0o644)
    return path


PIN_CHECK = ("import omnipkg_hook; omnipkg_hook.pin('omt-app==1.0'); import omt_app, omt_lib; "
             "print(omt_app.VERSION, omt_lib.VERSION)")


def test_a_read_only_mount_reads_and_refuses_writers_in_one_line(built, tmp_path, wheelhouse):
    good = _good_archive(built, str(tmp_path))
    before = store_state(built.root)
    with read_only_view(built.root) as ro:
        for args in READERS:
            proc = cli(ro, *args)
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        doctor = json.loads(cli(ro, "doctor", "--json").stdout)
        assert doctor["clean"] and doctor["problems"] == []
        export = cli(ro, "store", "export", str(tmp_path / "out.tar"), "omt-app==1.0")
        assert export.returncode == 0 and export.stdout.startswith("exported 1 bubble, "), export.stderr
        pushed = cli(ro, "store", "push", (tmp_path / "remote").as_uri(), "omt-app==1.0")  # reads only
        assert pushed.returncode == 0 and pushed.stdout.startswith("pushed 1 bubble, "), pushed.stderr
        pinned = subprocess.run([sys.executable, "-c", PIN_CHECK], capture_output=True, text=True,
                                env=child_env(ro), timeout=60)
        assert pinned.returncode == 0 and pinned.stdout == "1.0 1.0\n", pinned.stderr
        at_start = subprocess.run([sys.executable, "-c", "import omt_app; print(omt_app.VERSION)"], capture_output=True,
                                  text=True, env=child_env(ro, OMNIPKG_PINS="omt-app==1.0", OMNIPKG_STRICT="1"))
        assert at_start.returncode == 0 and at_start.stdout == "1.0\n", at_start.stderr

        for args in _writers(wheelhouse, good):
            tried(f"read-only mount: {args[0]}")
            message, hint = one_error(cli(ro, *args))
            assert message.startswith(f"the store {ro!r} is on a read-only file system"), (args, message)
            assert hint == ("read-only commands (list, show, why, doctor, pins) work there; "
                            "to install, use a store you can write (OMNIPKG_STORE)")
    assert store_state(built.root) == before


def test_another_users_store_reads_and_refuses_writers_in_one_line(store, wheel, wheelhouse):
    nobody_python()  # skips, saying why, where no other user can run this checkout
    base = nobody_dir("omt-shared-")
    try:
        shared = Store(os.path.join(base, "store"))  # root's store; nobody may read it
        build_store(shared, wheel)
        wheel("omt-new", "1.0", {"omt_new/__init__.py": "X = 1\n"})
        for d in (str(wheelhouse), *(os.path.dirname(str(wheelhouse)) for _ in [0])):
            os.chmod(d, 0o755)
        good = _good_archive(shared, base)
        before = store_state(shared.root)
        for args in READERS:
            proc = cli(shared.root, *args, user=NOBODY)
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        export = cli(shared.root, "store", "export", os.path.join(base, "nobody-home-ok.tar"), user=NOBODY)
        assert export.returncode == 1  # base is root's: nobody cannot write the archive there...
        assert one_error(export)[0].startswith("Permission denied: ")  # ...and says so in one line
        from tc_support import user_home

        export = cli(shared.root, "store", "export", os.path.join(user_home(), "x.tar"), user=NOBODY)
        assert export.returncode == 0, export.stderr
        python, path = nobody_python()
        pinned = subprocess.run([python, "-c", PIN_CHECK], capture_output=True, text=True, timeout=60,
                                env={**child_env(shared.root), "PYTHONPATH": path},
                                preexec_fn=lambda: (os.setgid(NOBODY), os.setgroups([]), os.setuid(NOBODY)))
        assert pinned.returncode == 0 and pinned.stdout == "1.0 1.0\n", pinned.stderr
        for args in _writers(wheelhouse, good):
            tried(f"another user's store: {args[0]}")
            message, hint = one_error(cli(shared.root, *args, user=NOBODY))
            assert message == f"cannot write the store {shared.root!r}: it belongs to uid 0, not to you (uid {NOBODY})", args
            assert hint.startswith("read-only commands (list, show, why, doctor, pins) work there")
        assert store_state(shared.root) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def tiny_fs():
    """A 4 MiB tmpfs (root only), removed afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("a tiny tmpfs needs root and mount(8)")
    where = tempfile.mkdtemp(prefix="omt-tiny-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", where], capture_output=True, text=True)
    if done.returncode != 0:
        os.rmdir(where)
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", where], capture_output=True)
        os.rmdir(where)


def _fill(where: str, leave: int) -> str:
    """A file that leaves about ``leave`` bytes free on the filesystem of ``where``."""
    st = os.statvfs(where)
    free = st.f_bavail * st.f_frsize
    filler = os.path.join(where, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("stage", ["download", "ingest"])
def test_a_full_disk_is_one_true_line_and_a_rerun_after_freeing_space_succeeds(tiny_fs, wheel, wheelhouse, tmp_path, stage):
    from tc_support import lib_files

    store = Store(os.path.join(tiny_fs, "store"))
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    bubble_from_wheels(store, [wheel("omt-lib", "1.0", lib_files("1.0"))], "omt-lib==1.0")
    blob = os.urandom(1 << 20) + os.urandom(1 << 19)  # 1.5 MiB that does not compress
    big = wheel("omt-big", "1.0", {"omt_big/__init__.py": "", "omt_big/blob.bin": blob})
    size = os.path.getsize(big)
    # download: not even the wheel fits in tmp/; ingest: the wheel fits, its objects do not
    filler = _fill(tiny_fs, size // 2 if stage == "download" else size + (1 << 18))
    tried(f"full disk during {stage}")
    before = store_state(store.root)
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}

    proc = cli(store.root, "install", "--bubble", "omt-big==1.0", "--no-index", "-f", str(wheelhouse), **env)

    message, hint = one_error(proc)
    assert message == f"no space left on the store's filesystem ({store.root!r})", message
    assert hint == ("free space there and rerun (`pip-omni gc` removes what no bubble uses); "
                    "nothing half-written is visible in the store")
    assert "damaged or malicious" not in proc.stderr
    assert store_state(store.root) == before  # consistent: exactly as it was

    os.unlink(filler)
    again = cli(store.root, "install", "--bubble", "omt-big==1.0", "--no-index", "-f", str(wheelhouse), **env)
    assert again.returncode == 0, again.stderr
    doctor = json.loads(cli(store.root, "doctor", "--json").stdout)
    assert doctor["clean"], doctor["problems"]
    assert [n for n, *_ in store.iter_bubbles()] == ["omt-big", "omt-lib"]


def test_every_oserror_is_one_line_and_the_traceback_only_with_v(built, tmp_path, monkeypatch, capsys):
    from omnipkg_pip import cli as cli_module
    from omnipkg_pip.commands import uninstall

    tried("OSError outside the store (export to a missing directory)")
    proc = cli(built.root, "store", "export", str(tmp_path / "missing" / "x.tar"))
    message, hint = one_error(proc)
    assert message == f"No such file or directory: {str(tmp_path / 'missing' / 'x.tar.part')!r}"
    assert hint == "rerun with -v for the traceback"

    def quota(*a, **k):
        raise OSError(errno.EDQUOT, "Disk quota exceeded", os.path.join(built.root, "tmp", "x"))

    monkeypatch.setattr(uninstall, "WriteLock", lambda *a, **k: (_ for _ in ()).throw(quota()))
    tried("EDQUOT (simulated) while removing a bubble")
    assert cli_module.main(["uninstall", "omt-app==1.0"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"pip-omni: error: no space left on the store's filesystem ({built.root!r}) (disk quota exceeded)",
                   "  hint: free space there and rerun (`pip-omni gc` removes what no bubble uses); "
                   "nothing half-written is visible in the store"]
    assert cli_module.main(["uninstall", "-v", "omt-app==1.0"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
