"""Only what will run is compiled at install; a routed dist without .pyc still imports, writes
nothing into the store, and ``bytecode.compile_pending`` compiles it once main stops serving it."""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import store_state  # tests/conftest.py

from omnipkg_hook.store import Store
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles, bytecode

from .conftest import module_files, needs_pth

CURRENT = interp.current()
PYC = bytecode.pyc_manifest_name(CURRENT.cache_tag)


def _lib_files(version: str) -> dict:
    return module_files("omt_lib", version, {"omt_lib/sub/__init__.py": "", "omt_lib/sub/deep.py": f"D = {version!r}\n"})


def _make(store, wheel, main):
    app = wheel("omt-app", "1.0", module_files("omt_app", "1.0"), requires=["omt-lib==1.0"])
    lib = wheel("omt-lib", "1.0", _lib_files("1.0"))
    return bubbles.bubble_from_wheels(store, [app, lib], "omt-app==1.0", CURRENT, main)


def _dist_dir(store, manifest, name):
    return store.abspath(manifest["dists"][name]["path"])


def test_a_dist_main_has_at_the_same_version_is_not_compiled_the_others_are(store, wheel):
    manifest = _make(store, wheel, {"omt-lib": "1.0", "omt-app": "0.9"})
    app_dir, lib_dir = _dist_dir(store, manifest, "omt-app"), _dist_dir(store, manifest, "omt-lib")
    assert os.path.exists(os.path.join(app_dir, PYC))
    assert os.path.exists(os.path.join(app_dir, "omt_app", "__pycache__", f"__init__.{CURRENT.cache_tag}.pyc"))
    assert not os.path.exists(os.path.join(lib_dir, PYC))
    assert not os.path.exists(os.path.join(lib_dir, "omt_lib", "__pycache__"))
    # the root is compiled even when main has its version (it is what the pin routes)
    other = wheel("omt-solo", "1.0", module_files("omt_solo", "1.0"))
    solo = bubbles.bubble_from_wheels(store, [other], "omt-solo==1.0", CURRENT, {"omt-solo": "1.0"})
    assert os.path.exists(os.path.join(_dist_dir(store, solo, "omt-solo"), PYC))


def test_without_main_everything_is_compiled(store, wheel):
    manifest = _make(store, wheel, None)
    for name in ("omt-app", "omt-lib"):
        assert os.path.exists(os.path.join(_dist_dir(store, manifest, name), PYC))


def test_bubble_from_store_compiles_only_what_main_does_not_serve(store, wheel):
    manifest = _make(store, wheel, {"omt-lib": "1.0", "omt-app": "1.0"})
    os.unlink(store.bubble_path("omt-app", "1.0", CURRENT.key))
    again = bubbles.bubble_from_store(store, "omt-app==1.0", CURRENT, {"omt-lib": "1.0"})
    assert again["dists"].keys() == manifest["dists"].keys()
    assert not os.path.exists(os.path.join(_dist_dir(store, again, "omt-lib"), PYC))
    bubbles.bubble_from_store(store, "omt-app==1.0", CURRENT, {})  # main lost omt-lib
    assert os.path.exists(os.path.join(_dist_dir(store, again, "omt-lib"), PYC))


def test_compile_pending_compiles_what_main_no_longer_serves(store, wheel):
    manifest = _make(store, wheel, {"omt-lib": "1.0"})
    lib_dir = _dist_dir(store, manifest, "omt-lib")
    assert bytecode.compile_pending(store, CURRENT, {"omt-lib": "1.0"}) == []  # main still serves it
    assert not os.path.exists(os.path.join(lib_dir, PYC))
    assert bytecode.compile_pending(store, CURRENT, {"omt-lib": "2.0"}) == [lib_dir]
    record = json.loads(open(os.path.join(lib_dir, PYC)).read())
    assert sorted(e["path"] for e in record["files"]) == [
        f"omt_lib/__pycache__/__init__.{CURRENT.cache_tag}.pyc",
        f"omt_lib/sub/__pycache__/__init__.{CURRENT.cache_tag}.pyc",
        f"omt_lib/sub/__pycache__/deep.{CURRENT.cache_tag}.pyc",
    ]
    for e in record["files"]:  # every pyc is a store object, linked
        assert os.stat(os.path.join(lib_dir, e["path"])).st_ino == os.stat(store.object_path(e["sha256"])).st_ino
    assert bytecode.compile_pending(store, CURRENT, {}) == []  # nothing left


@needs_pth
def test_a_routed_uncompiled_dist_imports_from_source_and_writes_nothing(store, wheel, main_site, run_python,
                                                                         monkeypatch):
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    manifest = _make(store, wheel, {"omt-lib": "1.0"})
    lib_dir = _dist_dir(store, manifest, "omt-lib")
    main_site.install(wheel("omt-lib", "2.0", _lib_files("2.0")))  # main changed since: lib is routed
    dists_before = store_state(store.dists, store.objects)
    code = (
        "import omt_app, omt_lib, omt_lib.sub.deep, sys\n"
        "print(omt_lib.VERSION, omt_lib.sub.deep.D, omt_lib.__file__)\n"
    )
    for _ in range(2):  # the second start-up takes the start-up cache
        out = run_python(code, {"OMNIPKG_PINS": "omt-app==1.0"}).stdout.split()
        assert out[:2] == ["1.0", "1.0"]
        assert out[2].startswith(lib_dir + os.sep)
        assert not os.path.exists(os.path.join(lib_dir, "omt_lib", "__pycache__"))
        assert store_state(store.dists, store.objects) == dists_before
    bytecode.compile_pending(Store(store.root), CURRENT, {"omt-lib": "2.0"})
    out = run_python(
        "import omt_lib.sub.deep as d, os; print(d.D, os.path.exists(d.__cached__))", {"OMNIPKG_PINS": "omt-app==1.0"}
    ).stdout.split()
    assert out == ["1.0", "True"]


def test_a_routed_uncompiled_dist_in_process_uses_the_source_only_loader(store, wheel, main_site, monkeypatch):
    import omnipkg_hook

    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    from omnipkg_hook import finder

    manifest = _make(store, wheel, {"omt-lib": "1.0"})
    lib_dir = _dist_dir(store, manifest, "omt-lib")
    before = store_state(store.dists, store.objects)
    omnipkg_hook.pin("omt-app==1.0")
    try:
        import omt_lib.sub.deep

        assert omt_lib.sub.deep.D == "1.0"
        assert type(omt_lib.sub.deep.__loader__).__name__ == "SourceOnlyLoader"
        assert lib_dir in finder.FINDER.source_only
        assert store_state(store.dists, store.objects) == before
    finally:
        from omnipkg_hook import uncompiled

        sys.path_hooks[:] = [h for h in sys.path_hooks if h is not uncompiled.source_only_hook]
        finder.FINDER.source_only = []
        finder.FINDER._checked = set()


def test_doctor_accepts_a_dist_left_uncompiled_while_main_serves_it(store, wheel, main_site):
    from omnipkg_pip.integrity import doctor

    _make(store, wheel, {"omt-lib": "1.0"})
    main_site.install(wheel("omt-lib", "1.0", _lib_files("1.0")))  # main has it at that version
    assert [p for p in doctor.check(store, main=False).problems if p.kind == "bubble-dist"] == []
    main_site.install(wheel("omt-lib", "2.0", _lib_files("2.0")))  # now main has another version too
    for meta in main_site.path.glob("omt_lib-1.0.dist-info"):
        import shutil

        shutil.rmtree(meta)
    problems = [p for p in doctor.check(store, main=False).problems if p.kind == "bubble-dist"]
    assert len(problems) == 1 and "is not compiled for" in problems[0].line()


def test_a_compile_failure_in_the_compile_thread_stops_the_bubble(store, wheel, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bytecode, "ensure_compiled", broken)
    with pytest.raises(OSError, match="No space left"):
        _make(store, wheel, None)
    assert not os.path.exists(store.bubble_path("omt-app", "1.0", CURRENT.key))  # nothing published


# -- the pending list: an install reads it, not every bubble ----------------------------------------


def _pending(store):
    base = os.path.join(store.root, "cache", "pyc-pending", CURRENT.key)
    return sorted(os.listdir(base)) if os.path.isdir(base) else None


def _no_scan(monkeypatch):
    def scan(*args, **kwargs):
        raise AssertionError("every bubble was read")

    monkeypatch.setattr(Store, "iter_bubbles", scan)


def test_without_a_pending_list_one_scan_makes_it_then_only_the_list_is_read(store, wheel, monkeypatch):
    manifest = _make(store, wheel, {"omt-lib": "1.0"})  # a store from before the list: none yet
    assert _pending(store) is None
    lib_dir = _dist_dir(store, manifest, "omt-lib")
    assert bytecode.compile_pending(store, CURRENT, {"omt-lib": "1.0"}) == []
    assert _pending(store) == ["omt-lib@1.0@py3-none-any"]  # found by the scan: main still serves it
    _no_scan(monkeypatch)
    served = {"omt-lib": "1.0"}
    for i in range(3):  # more bubbles, each with a dist main serves: marked as they are made
        app = wheel(f"omt-more{i}", "1.0", module_files(f"omt_more{i}", "1.0"), requires=[f"omt-dep{i}==1.0"])
        dep = wheel(f"omt-dep{i}", "1.0", module_files(f"omt_dep{i}", "1.0"))
        served[f"omt-dep{i}"] = "1.0"
        bubbles.bubble_from_wheels(store, [app, dep], f"omt-more{i}==1.0", CURRENT, served)
    assert _pending(store) == ["omt-dep0@1.0@py3-none-any", "omt-dep1@1.0@py3-none-any",
                               "omt-dep2@1.0@py3-none-any", "omt-lib@1.0@py3-none-any"]
    assert bytecode.compile_pending(store, CURRENT, served) == []  # nothing due: no scan, no compile
    del served["omt-lib"]  # main changed
    assert bytecode.compile_pending(store, CURRENT, served) == [lib_dir]
    assert os.path.exists(os.path.join(lib_dir, PYC)) and len(_pending(store)) == 3
    assert bytecode.compile_pending(store, CURRENT, {}) == [
        store.dist_path(f"omt-dep{i}", "1.0", "py3-none-any") for i in range(3)]
    assert _pending(store) == []
    assert bytecode.compile_pending(store, CURRENT, {}) == []


def test_a_compile_a_crash_interrupted_is_finished_by_a_later_install(store, wheel, monkeypatch):
    bytecode.compile_pending(store, CURRENT, {})  # the (empty) list exists
    manifest = _make(store, wheel, {"omt-lib": "1.0"})
    lib_dir = _dist_dir(store, manifest, "omt-lib")
    os.unlink(os.path.join(store.root, "cache", "pyc-pending", CURRENT.key, "omt-lib@1.0@py3-none-any"))
    real = bytecode._link_published

    def crash(store_, dist_dir, rel, *args):
        if rel == PYC:  # killed before the pyc manifest, the last step
            raise KeyboardInterrupt("killed")
        return real(store_, dist_dir, rel, *args)

    monkeypatch.setattr(bytecode, "_link_published", crash)
    dist = json.loads(open(os.path.join(lib_dir, "omnipkg-dist.json")).read())
    with pytest.raises(KeyboardInterrupt):  # e.g. doctor --repair compiling it
        bytecode.ensure_compiled(store, dist, lib_dir, CURRENT)
    assert not os.path.exists(os.path.join(lib_dir, PYC))
    assert _pending(store) == ["omt-lib@1.0@py3-none-any"]  # marked before the compile began
    with pytest.raises(KeyboardInterrupt):  # an install's compile_pending killed the same way
        bytecode.compile_pending(store, CURRENT, {})
    monkeypatch.setattr(bytecode, "_link_published", real)
    _no_scan(monkeypatch)
    assert bytecode.compile_pending(store, CURRENT, {}) == [lib_dir]  # the next install finishes it
    assert os.path.exists(os.path.join(lib_dir, PYC)) and _pending(store) == []


def test_another_users_store_gets_no_list_and_is_left_as_it_was(store, wheel, monkeypatch):
    _make(store, wheel, {"omt-lib": "1.0"})
    before = store_state(store.root)
    monkeypatch.setattr("omnipkg_hook.store._euid", lambda: os.stat(store.root).st_uid + 1)  # not the owner
    assert bytecode.compile_pending(store, CURRENT, {"omt-lib": "1.0"}) == []  # scanned, nothing due
    assert _pending(store) is None and store_state(store.root) == before
