"""Stored later (omnipkg_pip/writers/deferred.py): a run's bubble does not wait for the storing
of a dist main has at the same version; the bubble leans on main's copy until the step after
the run stores it, and is then what it would have been."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
from conftest import store_state  # tests/conftest.py

from omnipkg_hook.errors import WheelRejectedError
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles, deferred

from .conftest import module_files

CURRENT = interp.current()


def _wheels(wheel):
    app = wheel("omt-app", "1.0", module_files("omt_app", "1.0"), requires=["omt-lib==1.0"])
    lib = wheel("omt-lib", "1.0", module_files("omt_lib", "1.0"))
    return app, lib


def _made(store, wheel, main_site=None, compile=False):
    app, lib = _wheels(wheel)
    if main_site is not None:
        main_site.install(lib)
    return bubbles.bubble_from_wheels(store, [app, lib], "omt-app==1.0", CURRENT, {"omt-lib": "1.0"},
                                      compile=compile, defer=True), lib


def _kept(store) -> list[str]:
    base = os.path.join(store.root, *deferred.WHEELS)
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def _bubble(store) -> dict:
    with open(store.bubble_path("omt-app", "1.0", CURRENT.key)) as f:
        return json.load(f)


def test_a_dist_main_has_at_the_same_version_is_stored_after_the_bubble(store, wheel):
    manifest, lib = _made(store, wheel)
    assert sorted(manifest["dists"]) == ["omt-app"]
    rec = manifest["deferred"]["omt-lib"]
    assert (rec["version"], rec["tag"], rec["wheel"]) == ("1.0", "py3-none-any", os.path.basename(lib))
    assert rec["requires"] == {} and manifest["dists"]["omt-app"]["requires"] == {"omt-lib": "==1.0"}
    assert not os.path.exists(store.dist_path("omt-lib", "1.0", "py3-none-any"))
    assert deferred.marks(store, CURRENT.key) == [("omt-app", "1.0")]
    assert _kept(store) == [rec["wheel_sha256"]]

    assert deferred.complete(store, CURRENT) == ["omt-app==1.0"]
    done = _bubble(store)
    assert "deferred" not in done and sorted(done["dists"]) == ["omt-app", "omt-lib"]
    assert os.path.isdir(store.dist_path("omt-lib", "1.0", "py3-none-any"))
    assert deferred.marks(store, CURRENT.key) == [] and _kept(store) == []
    assert deferred.complete(store, CURRENT) == []  # nothing left: a listdir

    # what it would have been, made at once (another store)
    from omnipkg_hook.store import Store

    other = Store(os.path.join(store.root, "..", "other-store"))
    app, lib = _wheels(wheel)
    at_once = bubbles.bubble_from_wheels(other, [app, lib], "omt-app==1.0", CURRENT, {"omt-lib": "1.0"},
                                         compile=False)
    assert done["dists"] == at_once["dists"]


def test_the_root_and_a_stored_dist_are_never_deferred(store, wheel):
    app, lib = _wheels(wheel)
    bubbles.bubble_from_wheels(store, [lib], "omt-lib==1.0", CURRENT, None, compile=False)  # omt-lib stored
    manifest = bubbles.bubble_from_wheels(store, [app, lib], "omt-app==1.0", CURRENT,
                                          {"omt-lib": "1.0", "omt-app": "1.0"}, compile=False, defer=True)
    assert sorted(manifest["dists"]) == ["omt-app", "omt-lib"] and "deferred" not in manifest
    assert deferred.marks(store, CURRENT.key) == [] and _kept(store) == []


def test_until_stored_the_pin_uses_mains_copy_then_the_stored_one(store, wheel, main_site, run_python):
    _made(store, wheel, main_site)
    code = "import omt_app, omt_lib, importlib.metadata as md; print(omt_lib.__file__, md.version('omt-lib'))"
    where, version = run_python(code, {"OMNIPKG_PINS": "omt-app==1.0"}).stdout.split()
    assert where.startswith(str(main_site.path)) and version == "1.0"

    deferred.complete(store, CURRENT)
    _remove_lib(main_site)
    main_site.install(_replace(wheel, "2.0"))  # main moves on: the bubble's own copy is routed now
    where, version = run_python(code, {"OMNIPKG_PINS": "omt-app==1.0"}).stdout.split()
    assert where.startswith(store.dist_path("omt-lib", "1.0", "py3-none-any")) and version == "1.0"


def _remove_lib(main_site) -> None:
    import shutil

    for entry in os.listdir(main_site.path):
        if entry.startswith("omt_lib"):
            shutil.rmtree(main_site.path / entry)


def _replace(wheel, version: str):
    return wheel("omt-lib", version, module_files("omt_lib", version))


def test_main_changing_before_it_is_stored_is_one_line_naming_the_fix(store, wheel, main_site, run_python):
    _made(store, wheel, main_site)
    _remove_lib(main_site)
    proc = run_python("import omt_app", {"OMNIPKG_PINS": "omt-app==1.0"}, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "omt-lib" in line]
    assert lines and "omt-app==1.0 needs omt-lib 1.0, which is not stored yet" in lines[-1]
    assert "pip-omni store compile" in proc.stderr


def test_a_kept_wheel_changed_since_is_refused_and_nothing_changes(store, wheel, capsys):
    manifest, _lib = _made(store, wheel)
    sha = manifest["deferred"]["omt-lib"]["wheel_sha256"]
    kept = os.path.join(store.root, *deferred.WHEELS, sha, manifest["deferred"]["omt-lib"]["wheel"])
    os.chmod(kept, 0o644)
    with zipfile.ZipFile(kept, "a") as zf:
        zf.writestr("omt_lib/evil.py", "print('not in RECORD')\n")
    before = store_state(store.root)
    assert deferred.complete(store, CURRENT) == []
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "omt-app==1.0" in err[0] and f"not the {sha} recorded" in err[0]
    assert store_state(store.root) == before  # the bubble, its mark and the kept wheel as they were


def test_a_damaged_deferral_record_names_no_path_outside_the_store(store, wheel, tmp_path, capsys):
    _made(store, wheel)
    m = _bubble(store)
    m["deferred"]["omt-lib"]["wheel_sha256"] = "../../../../outside"
    m["deferred"]["omt-lib"]["wheel"] = "../x.whl"
    with open(store.bubble_path("omt-app", "1.0", CURRENT.key), "w") as f:
        json.dump(m, f)
    before = store_state(store.root)
    assert deferred.complete(store, CURRENT) == []
    assert "record of the deferred 'omt-lib' is damaged" in capsys.readouterr().err
    assert store_state(store.root) == before


def test_a_hostile_wheel_is_refused_when_deferred_and_nothing_is_kept(store, wheel, wheelhouse):
    app, _lib = _wheels(wheel)
    bad = wheelhouse / "omt_lib-1.0-py3-none-any.whl"
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr("../escape.py", "x = 1\n")
    with pytest.raises(WheelRejectedError, match="escapes"):
        bubbles.bubble_from_wheels(store, [app, bad], "omt-app==1.0", CURRENT, {"omt-lib": "1.0"},
                                   compile=False, defer=True)
    assert not os.path.exists(store.bubble_path("omt-app", "1.0", CURRENT.key))
    assert _kept(store) == [] and deferred.marks(store, CURRENT.key) == []


def test_a_bubble_removed_before_it_was_completed_leaves_nothing_behind(store, wheel):
    _made(store, wheel)
    os.unlink(store.bubble_path("omt-app", "1.0", CURRENT.key))
    assert deferred.complete(store, CURRENT) == []
    assert deferred.marks(store, CURRENT.key) == [] and _kept(store) == []


def test_export_refuses_a_bubble_that_still_leans_on_main(store, wheel, tmp_path):
    from omnipkg_pip.writers import archive

    _made(store, wheel)
    with pytest.raises(archive.ArchiveError, match="pip-omni store compile"):
        archive.export(store, str(tmp_path / "out.tar"), ["omt-app==1.0"], CURRENT.key)
    deferred.complete(store, CURRENT)
    archive.export(store, str(tmp_path / "out.tar"), ["omt-app==1.0"], CURRENT.key)


def test_doctor_counts_a_waiting_bubble_and_repair_stores_it_once_main_has_moved_on(store, wheel, main_site):
    """A bubble that waits is no problem (a note says so); once main no longer has the version
    it waits for, it is one (the pin fails), and ``--repair`` stores what it waits for."""
    from omnipkg_pip.integrity import checkup

    _made(store, wheel, main_site, compile=True)  # as the background step leaves it: not yet stored
    rel = os.path.relpath(store.bubble_path("omt-app", "1.0", CURRENT.key), store.root)
    result = checkup.run(store)
    assert result["clean"] and result["waiting"] == {rel: ["omt-lib"]}, result["problems"]
    assert any("1 bubble of `pip-omni run` waits for 1 dist" in note for note in result["notes"])

    _remove_lib(main_site)
    result = checkup.run(store)
    [problem] = result["problems"]
    assert problem["kind"] == "bubble-deferred" and problem["path"] == rel
    assert "no longer has that version" in problem["detail"]

    repaired = checkup.run(store, repair=True)
    assert repaired["clean"] and repaired["waiting"] == {} and repaired["remaining"] == [], (repaired["actions"], repaired["remaining"])
    assert not any("waits for" in note for note in repaired["notes"])  # it was stored: no note says it waits
    assert [(a["action"], a["path"]) for a in repaired["actions"]] == [
        ("stored", rel), ("compiled", "dists/omt-lib/1.0/py3-none-any")]  # stored, then compiled: main no longer has it
    assert "deferred" not in _bubble(store) and sorted(_bubble(store)["dists"]) == ["omt-app", "omt-lib"]


def test_doctor_names_a_kept_wheel_that_is_gone_or_has_other_bytes(store, wheel, main_site):
    from omnipkg_pip.integrity import checkup

    manifest, _lib = _made(store, wheel, main_site, compile=True)
    rec = manifest["deferred"]["omt-lib"]
    kept = deferred.kept_wheel(store, rec)
    with open(kept, "ab") as f:
        f.write(b"tampered")
    [problem] = checkup.run(store)["problems"]
    assert problem["kind"] == "bubble-deferred" and f"not the {rec['wheel_sha256']} recorded" in problem["detail"]
    assert checkup.run(store, full=False)["clean"]  # --quick hashes nothing
    failed = checkup.run(store, repair=True)
    assert [a["action"] for a in failed["actions"]] == ["could not repair"] and not failed["clean"]
    assert "deferred" in _bubble(store)  # left as it was

    os.unlink(kept)
    [problem] = checkup.run(store)["problems"]
    assert problem["kind"] == "bubble-deferred" and "is gone" in problem["detail"]
