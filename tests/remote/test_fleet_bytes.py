"""Two runners of a fleet hold one dist with the same files but other manifest bytes.

A ``.pyc``'s bytes depend on the process that compiled it (``marshal`` writes a reference
only for an object something else also holds: CPython 3.9, 3.10, 3.13 differ between
processes), and a dist manifest records the URL its wheel came from. A bubble pulled (or
imported) onto a runner that already has one of its dists uses the runner's copy, so it must
record the runner's manifests: before, ``doctor`` called that dist tampered with. A dist of
other *files* at the same path is another build, and the pull is refused before anything is
published. The runner's ``.pyc`` are made to differ here on purpose (marshal format 3, which
Python loads), as another process may make them.
"""

from __future__ import annotations

import hashlib
import marshal
import os

import pytest
from conftest import store_state  # tests/conftest.py
from wheelmaker import make_wheel

from omnipkg_hook.store import DIST_MANIFEST, Store, interpreter_key
from omnipkg_pip.integrity import checkup
from omnipkg_pip.remote import RemoteStoreError, open_backend, sync
from omnipkg_pip.writers import archive, bytecode
from omnipkg_pip.writers.bubbles import bubble_from_wheels

from .conftest import build, imports_ok, lib_files

KEY = interpreter_key()
LIB = "dists/omt-lib/1.0/py3-none-any"
PYC = f"omnipkg-pyc-{__import__('sys').implementation.cache_tag}.json"


@pytest.fixture
def other_pyc_bytes(monkeypatch):
    """Compiles in this test make other (valid) ``.pyc`` bytes than a plain compile."""
    bytecode._pyc_bytes("/dev/null", "x.py")  # makes the function once, then it is replaced
    made = bytecode._namespace["pyc_bytes"]

    def other(src, dfile):
        with open(src, "rb") as f:
            code = compile(f.read(), dfile, "exec", dont_inherit=True)
        return made(src, dfile)[:16] + marshal.dumps(code, 3)

    monkeypatch.setitem(bytecode._namespace, "pyc_bytes", other)


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _record(store: Store, name: str) -> dict:
    return store.load_bubble(name, "1.0", KEY)["dists"]["omt-lib"]


def _problems(store: Store) -> list:
    return checkup.run(store, full=True)["problems"]


def _shared_pyc(stored, wheels, tmp_path) -> tuple[Store, str]:
    runner = build(Store(str(tmp_path / "runner")), wheels, names=("omt-app",))
    theirs, ours = _record(stored, "omt-tool")["pyc_manifest"], _sha(os.path.join(runner.abspath(LIB), PYC))
    assert theirs != ours  # the premise: one dist, two compiles, two byte strings
    return runner, ours


def _recorded_as_the_runners(runner: Store, ours: str) -> None:
    assert _record(runner, "omt-tool")["pyc_manifest"] == ours
    assert os.path.exists(runner.object_path(ours))  # kept as an object: repair can rebuild from it
    assert _problems(runner) == []
    imports_ok(runner.root, "omt-app==1.0", "omt-tool==1.0")


def test_a_pulled_bubble_records_the_runners_pyc_of_a_shared_dist(stored, wheels, remote, tmp_path, other_pyc_bytes):
    runner, ours = _shared_pyc(stored, wheels, tmp_path)
    sync.push(stored, open_backend(remote))
    sync.pull(runner, open_backend(remote), ["omt-tool==1.0"])
    _recorded_as_the_runners(runner, ours)


def test_an_imported_bubble_records_the_runners_pyc_of_a_shared_dist(stored, wheels, tmp_path, other_pyc_bytes):
    runner, ours = _shared_pyc(stored, wheels, tmp_path)
    path = str(tmp_path / "ci.tar")
    archive.export(stored, path, ["omt-tool==1.0"])
    archive.import_archive(runner, path)
    _recorded_as_the_runners(runner, ours)


def test_a_shared_dist_whose_manifest_names_another_origin_is_recorded_as_the_runners(stored, wheels, remote, tmp_path):
    runner = Store(str(tmp_path / "runner"))
    lib = wheels["omt-lib"]
    bubble_from_wheels(runner, [wheels["omt-app"], lib], "omt-app==1.0",
                       origins={os.fspath(lib): {"url": "https://mirror.example/omt_lib-1.0-py3-none-any.whl", "sha256": _sha(lib)}})
    ours = _sha(os.path.join(runner.abspath(LIB), DIST_MANIFEST))
    assert _record(stored, "omt-tool")["manifest"] != ours
    sync.push(stored, open_backend(remote))
    sync.pull(runner, open_backend(remote), ["omt-tool==1.0"])
    assert _record(runner, "omt-tool")["manifest"] == ours
    assert _problems(runner) == []
    imports_ok(runner.root, "omt-app==1.0", "omt-tool==1.0")


def test_a_shared_dist_of_other_files_is_another_build_and_the_pull_publishes_nothing(
        stored, wheels, remote, tmp_path):
    runner = Store(str(tmp_path / "runner"))
    files = {**lib_files("1.0"), "omt_lib/lazy.py": "WHO = 'another build'\n"}
    bubble_from_wheels(runner, [wheels["omt-app"], make_wheel(tmp_path / "w2", "omt-lib", "1.0", files)],
                       "omt-app==1.0")
    sync.push(stored, open_backend(remote))
    before = store_state(runner.root)
    with pytest.raises(RemoteStoreError) as e:
        sync.pull(runner, open_backend(remote), ["omt-tool==1.0"])
    assert f"its dist {LIB} is another build than the store's ('omt_lib/lazy.py' differs)" in e.value.message
    assert store_state(runner.root) == before


def test_a_runners_dist_no_bubble_vouches_for_stays_as_recorded_for_doctor(stored, wheels, remote, tmp_path,
                                                                           other_pyc_bytes):
    """Only manifests this store's bubbles record (or that were compiled just now) are taken:
    a dist left without any bubble (its bubble removed by hand) vouches for nothing."""
    runner = build(Store(str(tmp_path / "runner")), wheels, names=("omt-app",))
    os.unlink(runner.bubble_path("omt-app", "1.0", KEY))
    sync.push(stored, open_backend(remote))
    sync.pull(runner, open_backend(remote), ["omt-tool==1.0"])
    assert _record(runner, "omt-tool")["pyc_manifest"] == _record(stored, "omt-tool")["pyc_manifest"]
    kinds = {p["kind"] for p in _problems(runner)}
    assert kinds == {"dist-tampered"}, kinds
