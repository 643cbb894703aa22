"""``pip-omni doctor``: each kind of damage is found (quick and full) and ``--repair`` heals it,
so that a second doctor is clean and the bubble imports again; exit codes and ``--json``."""

from __future__ import annotations

import glob
import json
import os
import shutil
import stat
import sys

import pytest
from conftest import tree_digest  # tests/conftest.py

from omnipkg_hook.store import interpreter_key
from omnipkg_pip.cli import main as cli_main
from omnipkg_pip.integrity import checkup, mainenv

from .conftest import app_files, dist_dir, imports_ok, lib_files

KEY = interpreter_key()
TAG = sys.implementation.cache_tag
BOTH = ("omt-app==1.0", "omt-tool==1.0")


def _writable(path):
    os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR)


def _object_of(store, dist, rel):
    with open(os.path.join(dist, "omnipkg-dist.json")) as f:
        entry = next(e for e in json.load(f)["files"] if e["path"] == rel)
    return store.object_path(entry["sha256"], bool(entry["mode"] & 0o111))


# -- the damage table: (id, damage(store) -> None, kinds found by quick, kinds found by full) ------


def delete_dist_file(store):
    os.unlink(os.path.join(dist_dir(store, "omt-app"), "omt_app", "sub.py"))


def edit_object_in_place(store):
    """Same size, through the hard link: every dist sharing the object sees it."""
    path = os.path.join(dist_dir(store, "omt-lib"), "omt_lib", "lazy.py")
    _writable(path)
    with open(path, "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data.replace(b"lazy", b"LAZY"))


def edit_pyc_in_place(store):
    """A .pyc is an object too (deterministic, hash-based): the wheel fetched again recompiles it."""
    path = os.path.join(dist_dir(store, "omt-lib"), "omt_lib", "__pycache__", f"lazy.{TAG}.pyc")
    _writable(path)
    with open(path, "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))


def append_to_dist_file(store):
    path = os.path.join(dist_dir(store, "omt-app"), "omt_app", "data.txt")
    _writable(path)
    with open(path, "ab") as f:
        f.write(b"appended\n")


def replace_dist_file(store):
    """An editor that writes a new file and renames it over the old: the link is broken."""
    path = os.path.join(dist_dir(store, "omt-tool"), "omt_tool", "sub.py")
    with open(path + ".new", "w") as f:
        f.write("WHO = 'edited'\n")
    os.replace(path + ".new", path)


def extra_file(store):
    with open(os.path.join(dist_dir(store, "omt-app"), "omt_app", "evil.py"), "w") as f:
        f.write("import os\n")


def damage_bubble_json(store):
    path = store.bubble_path("omt-tool", "1.0", KEY)
    with open(path, "r+b") as f:
        f.truncate(40)


def delete_object(store):
    os.unlink(_object_of(store, dist_dir(store, "omt-app"), "omt_app/__init__.py"))


def delete_object_and_file(store):
    d = dist_dir(store, "omt-app")
    os.unlink(_object_of(store, d, "omt_app/sub.py"))
    os.unlink(os.path.join(d, "omt_app", "sub.py"))


def leftover_staging(store):
    staging = os.path.join(store.tmp, "ingest-crashed", "dist")
    os.makedirs(staging)
    with open(os.path.join(staging, "half.py"), "w") as f:
        f.write("X = ")


def delete_dist_manifest(store):
    os.unlink(os.path.join(dist_dir(store, "omt-tool"), "omnipkg-dist.json"))


def damage_pyc_manifest(store):
    path = os.path.join(dist_dir(store, "omt-lib"), f"omnipkg-pyc-{TAG}.json")
    os.unlink(path)  # a replaced file: writing through it would damage its object too (another case)
    with open(path, "w") as f:
        f.write("{not json")


def delete_dist_dir(store):
    shutil.rmtree(dist_dir(store, "omt-lib"))


def stray_object(store):
    with open(os.path.join(glob.glob(os.path.join(store.objects, "*"))[0], "junk"), "w") as f:
        f.write("?")


DAMAGE = [
    (delete_dist_file, {"file-missing"}, {"file-missing"}),
    (edit_object_in_place, {"object-corrupt"}, {"object-corrupt"}),
    (edit_pyc_in_place, {"object-corrupt"}, {"object-corrupt"}),
    (append_to_dist_file, {"object-corrupt"}, {"object-corrupt"}),
    (replace_dist_file, {"file-changed"}, {"file-changed"}),
    (extra_file, {"file-extra"}, {"file-extra"}),
    (damage_bubble_json, {"bubble-damaged"}, {"bubble-damaged"}),
    (delete_object, {"object-missing"}, {"object-missing"}),
    (delete_object_and_file, {"object-missing", "file-missing"}, {"object-missing", "file-missing"}),
    (delete_dist_manifest, {"dist-manifest"}, {"dist-manifest"}),
    (damage_pyc_manifest, {"dist-manifest"}, {"dist-manifest"}),
    (delete_dist_dir, {"bubble-dist"}, {"bubble-dist"}),
    (stray_object, {"object-stray"}, {"object-stray"}),
]


def _kinds(result) -> set:
    return {p["kind"] for p in result["problems"] if p["kind"] != "main-env"}


def test_a_sound_store_is_clean(stored):
    for full in (False, True):
        result = checkup.run(stored, full=full)
        assert _kinds(result) == set() and result["counts"]["bubbles"] == 2, result
    assert result["counts"]["dists"] == 3 and result["counts"]["hashed_bytes"] > 0


@pytest.mark.parametrize("damage, quick, full", DAMAGE, ids=[d[0].__name__ for d in DAMAGE])
def test_doctor_finds_each_damage_and_repair_heals_it(stored, damage, quick, full):
    objects_before = {os.path.relpath(p, stored.objects) for p in glob.glob(os.path.join(stored.objects, "*", "*"))}
    damage(stored)
    assert _kinds(checkup.run(stored, full=False)) == quick
    found = checkup.run(stored, full=True)
    assert _kinds(found) == full
    assert all(p["detail"] for p in found["problems"])

    healed = checkup.run(stored, full=True, repair=True)

    assert healed["actions"], healed
    assert [p for p in healed["remaining"] if p["kind"] != "main-env"] == []
    assert _kinds(checkup.run(stored, full=True)) == set()
    assert _kinds(checkup.run(stored, full=False)) == set()
    imports_ok(stored, *BOTH)
    # nothing lost: every object that was there is there again, or set aside in the quarantine
    quarantined = {os.path.relpath(p, q) for q in glob.glob(os.path.join(stored.root, "quarantine", "*", "objects"))
                   for p in glob.glob(os.path.join(q, "*", "*"))}  # fmt: skip
    now = {os.path.relpath(p, stored.objects) for p in glob.glob(os.path.join(stored.objects, "*", "*"))}
    assert objects_before <= now | quarantined


def test_an_edit_through_a_hard_link_is_named_with_every_dist_sharing_it(stored):
    edit_object_in_place(stored)
    (problem,) = [p for p in checkup.run(stored)["problems"] if p["kind"] == "object-corrupt"]
    assert problem["path"].startswith("objects/")
    assert "its bytes do not match its name" in problem["detail"]
    assert "dists/omt-lib/1.0/py3-none-any/omt_lib/lazy.py" in problem["detail"]


def test_repair_sets_the_bad_bytes_aside_and_refetches_the_checked_wheel(stored):
    edit_object_in_place(stored)
    result = checkup.run(stored, repair=True)
    actions = {a["action"] for a in result["actions"]}
    assert {"set aside", "restored", "rebuilt"} <= actions, result["actions"]
    restored = [a for a in result["actions"] if a["action"] == "restored"]
    assert "fetched again (checked against its recorded sha256)" in restored[0]["detail"]
    (bad,) = glob.glob(os.path.join(stored.root, "quarantine", "*", "objects", "*", "*"))
    assert b"LAZY" in open(bad, "rb").read()


def test_a_wheel_that_changed_on_the_index_is_not_used(stored, wheel):
    edit_object_in_place(stored)
    wheel("omt-lib", "1.0", {**lib_files("1.0"), "omt_lib/other.py": "X = 1\n"})  # same file name, other bytes
    result = checkup.run(stored, repair=True)
    assert not result["clean"]
    failed = [a for a in result["actions"] if a["action"] == "could not fetch"]
    assert "sha256 differs" in failed[0]["detail"]
    assert {p["kind"] for p in result["remaining"]} >= {"object-missing"}


def test_a_missing_object_without_any_source_is_reported_not_hidden(stored, wheelhouse):
    delete_object_and_file(stored)
    for w in glob.glob(os.path.join(wheelhouse, "omt_app-*")):
        os.unlink(w)
    result = checkup.run(stored, repair=True)
    assert not result["clean"]
    assert any(a["action"] == "could not repair" and a["path"] == "dists/omt-app/1.0/py3-none-any"
               for a in result["actions"])  # fmt: skip
    assert {"object-missing", "file-missing"} <= {p["kind"] for p in result["remaining"]}


def test_a_dist_swapped_during_repair_keeps_its_manifest_inode(stored):
    """Leases are flocks on the manifest: a rebuilt dist keeps the same manifest file."""
    manifest = os.path.join(dist_dir(stored, "omt-app"), "omnipkg-dist.json")
    before = os.stat(manifest).st_ino
    delete_dist_file(stored)
    checkup.run(stored, repair=True)
    assert os.stat(manifest).st_ino == before


# -- exit codes, --json, the command line -----------------------------------------------------------


def _cli(capsys, *args):
    code = cli_main(["doctor", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_exit_codes_and_json(stored, capsys, monkeypatch):
    monkeypatch.setattr(mainenv, "check_main", lambda store: ([], []))
    assert _cli(capsys, "--quick")[0] == 0
    code, out, _ = _cli(capsys)
    assert code == 0 and "clean" in out

    delete_dist_file(stored)
    extra_file(stored)
    code, out, _ = _cli(capsys, "--json")
    data = json.loads(out)
    assert code == 1
    assert set(data) == {"store", "mode", "clean", "counts", "problems", "leftovers", "actions", "remaining",
                         "waiting", "notes", "seconds", "sources"}
    assert data["mode"] == "full" and data["clean"] is False and data["actions"] == [] and data["waiting"] == {}
    assert {s["path"]: s["wheel"] for s in data["sources"]}["dists/omt-app/1.0/py3-none-any"] == \
        "omt_app-1.0-py3-none-any.whl"
    assert data["remaining"] == data["problems"]
    assert sorted((p["kind"], p["file"]) for p in data["problems"]) == [
        ("file-extra", "omt_app/evil.py"), ("file-missing", "omt_app/sub.py")]
    assert json.loads(_cli(capsys, "--quick", "--json")[1])["mode"] == "quick"
    code, out, _ = _cli(capsys)
    assert code == 1 and out.splitlines()[1:] == [
        "found 2 problems:",
        "  file-extra      dists/omt-app/1.0/py3-none-any: omt_app/evil.py: no manifest lists it",
        "  file-missing    dists/omt-app/1.0/py3-none-any: omt_app/sub.py: missing",
        "  hint: `pip-omni doctor --repair` repairs the store (and deletes nothing)",
    ]

    code, out, _ = _cli(capsys, "--repair")
    assert code == 0
    assert "repairing:\n  rebuilt dists/omt-app/1.0/py3-none-any: from objects" in out
    assert out.rstrip().endswith("clean now")
    assert _cli(capsys)[0] == 0


def test_doctor_does_not_change_the_main_environment_but_reports_it(stored, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    site.mkdir()
    for meta, installer in (("omt_x-1.0.dist-info", "pip"), ("omt_x-2.0.dist-info", "pip-omni")):
        (site / meta).mkdir()
        (site / meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: omt-x\nVersion: {meta[6:9]}\n")
        (site / meta / "INSTALLER").write_text(installer + "\n")
        (site / meta / "RECORD").write_text(f"omt_x/__init__.py,,\n{meta}/METADATA,,\n")
    (site / "omt_x").mkdir()
    (site / "omt_x.omnipkg_bak").mkdir()  # omnipkg's renamed folder
    (site / "omt_x-old").mkdir()
    (site / "stray.pth").write_text(stored.root + "\n")
    (site / "unrelated.txt").write_text("mine\n")
    import sysconfig

    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {"purelib": str(site), "platlib": str(site)})
    before = tree_digest(site)
    result = checkup.run(stored, repair=True)
    assert tree_digest(site) == before
    details = sorted((os.path.basename(p["path"]), p["detail"]) for p in result["remaining"])
    assert details == [
        ("omt_x-2.0.dist-info", "metadata of a store dist (INSTALLER says pip-omni) in the main environment"),
        ("omt_x-old", "no installed distribution owns it (a renamed copy of 'omt_x'?)"),
        ("omt_x.omnipkg_bak", "no installed distribution owns it (a renamed copy of 'omt_x'?)"),
        ("site", "2 metadata directories for omt-x: omt_x-1.0.dist-info, omt_x-2.0.dist-info"),
        ("stray.pth", f"puts the store ({stored.root}) on sys.path"),
    ]
    assert any("unrelated.txt: no installed distribution lists it" in n for n in result["notes"])
    assert not result["clean"]


def test_doctor_on_a_store_that_does_not_exist_creates_nothing(tmp_path, monkeypatch):
    from omnipkg_hook.store import Store

    monkeypatch.setattr(mainenv, "check_main", lambda store: ([], []))
    result = checkup.run(Store(str(tmp_path / "nothing")))
    assert result["clean"] and not os.path.exists(tmp_path / "nothing")


def test_cli_in_a_fresh_venv(omni_venv, wheel, wheelhouse):
    """As users run it: install bubbles, damage them, doctor finds it, --repair heals it, imports work."""
    wheel("omt-lib", "1.0", lib_files("1.0"))
    wheel("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib>=1"])
    env = {"PIP_FIND_LINKS": str(wheelhouse)}
    omni_venv.cli("install", "--bubble", "omt-app==1.0", env=env)
    store = omni_venv.env["OMNIPKG_STORE"]
    lib = os.path.join(store, "dists", "omt-lib", "1.0", "py3-none-any")
    assert omni_venv.cli("doctor", "--quick").returncode == 0
    os.unlink(os.path.join(store, "dists", "omt-app", "1.0", "py3-none-any", "omt_app", "sub.py"))
    path = os.path.join(lib, "omt_lib", "lazy.py")
    _writable(path)
    with open(path, "ab") as f:
        f.write(b"BROKEN = 1\n")

    proc = omni_venv.cli("doctor", "--json", check=False)
    assert proc.returncode == 1
    assert {p["kind"] for p in json.loads(proc.stdout)["problems"]} == {"object-corrupt", "file-missing"}
    proc = omni_venv.cli("doctor", "--repair", env=env)
    assert "clean now" in proc.stdout
    assert omni_venv.cli("doctor").returncode == 0
    code = "import omt_app.sub, omt_lib.lazy; print(omt_app.sub.WHO, omt_lib.lazy.WHO)"
    out = omni_venv.run("python", "-c", code, env={"OMNIPKG_PINS": "omt-app==1.0"}).stdout
    assert out.split() == ["omt-app", "1.0", "sub", "omt-lib", "1.0", "lazy"]


def test_staging_left_by_a_crash_is_harmless_and_repair_clears_it(stored):
    # DESIGN: kill -9 at any point of an install leaves a store that doctor calls clean.
    leftover_staging(stored)
    result = checkup.run(stored, full=True)
    assert _kinds(result) == set()
    assert [p["path"] for p in result["leftovers"]] == ["tmp/ingest-crashed"]
    assert any("staging leftover" in n for n in result["notes"])
    checkup.run(stored, full=True, repair=True)
    assert os.listdir(stored.tmp) == []
    imports_ok(stored, *BOTH)


# -- refetching from the recorded origin ------------------------------------------------------------


@pytest.fixture
def from_folder(store, wheel, wheelhouse, tmp_path, monkeypatch):
    """omt-app 1.0 (+ omt-lib) made from wheels a ``-f`` folder gave: their origin is that folder.
    pip itself can fetch nothing afterwards (no index, no find-links)."""
    from omnipkg_hook.store import file_sha256
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    folder = tmp_path / "folder"
    folder.mkdir()
    made = [wheel("omt-lib", "1.0", lib_files("1.0")),
            wheel("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib>=1"])]
    wheels = [shutil.copy(w, folder) for w in made]
    for w in made:
        os.unlink(w)
    bubble_from_wheels(store, wheels, "omt-app==1.0",
                       origins={w: {"url": (folder / os.path.basename(w)).as_uri(), "sha256": file_sha256(w)}
                                for w in wheels})
    for key in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("OMNIPKG_PINS", raising=False)
    store.folder = folder
    return store


def test_repair_copies_the_wheel_from_its_recorded_origin_when_pip_has_no_source(from_folder):
    delete_object_and_file(from_folder)
    result = checkup.run(from_folder, repair=True)
    assert result["clean"], result
    (restored,) = [a for a in result["actions"] if a["action"] == "restored"]
    assert "fetched again from its recorded origin (checked against its recorded sha256)" in restored["detail"]
    imports_ok(from_folder, "omt-app==1.0")


def test_an_origin_file_that_changed_since_is_not_used(from_folder):
    (path,) = from_folder.folder.glob("omt_app-*.whl")
    data = path.read_bytes()
    path.write_bytes(data + b"\0")  # other bytes under the same name
    delete_object_and_file(from_folder)
    result = checkup.run(from_folder, repair=True)
    assert not result["clean"]
    (failed,) = [a for a in result["actions"] if a["action"] == "could not fetch"]
    assert "sha256 differs" in failed["detail"], failed
    assert path.read_bytes() == data + b"\0"  # the origin is read, never written



def test_an_origin_file_that_changed_gives_way_to_the_index_when_it_has_the_right_wheel(from_folder, tmp_path,
                                                                                        monkeypatch):
    (path,) = from_folder.folder.glob("omt_app-*.whl")
    links = tmp_path / "links"
    links.mkdir()
    shutil.copy(path, links)  # the very wheel, where pip looks now
    path.write_bytes(path.read_bytes() + b"\0")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    delete_object_and_file(from_folder)
    result = checkup.run(from_folder, repair=True)
    assert result["clean"], result
    (restored,) = [a for a in result["actions"] if a["action"] == "restored"]
    assert "recorded origin" not in restored["detail"] and "checked against its recorded sha256" in restored["detail"]

def test_without_its_origin_file_repair_asks_pip_by_name_and_says_why_it_failed(from_folder):
    for w in from_folder.folder.iterdir():
        w.unlink()
    delete_object_and_file(from_folder)
    result = checkup.run(from_folder, repair=True)
    assert not result["clean"]
    (failed,) = [a for a in result["actions"] if a["action"] == "could not fetch"]
    assert failed["detail"].startswith("pip could not fetch it ("), failed



@pytest.fixture
def served(tmp_path):
    """A folder served over http on loopback (started and stopped here): its base URL."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()



def test_repair_fetches_an_http_origin_through_pip_when_no_index_is_configured(store, wheel, served, monkeypatch):
    from omnipkg_hook.store import file_sha256
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    folder, base = served
    made = [wheel("omt-lib", "1.0", lib_files("1.0")),
            wheel("omt-app", "1.0", app_files("omt-app", "1.0"), requires=["omt-lib>=1"])]
    wheels = [shutil.move(w, folder) for w in made]
    bubble_from_wheels(store, wheels, "omt-app==1.0",
                       origins={w: {"url": base + os.path.basename(w), "sha256": file_sha256(w)} for w in wheels})
    for key in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    delete_object_and_file(store)
    result = checkup.run(store, repair=True)
    assert result["clean"], result
    (restored,) = [a for a in result["actions"] if a["action"] == "restored"]
    assert "fetched again from its recorded origin (checked against its recorded sha256)" in restored["detail"]


def test_a_pyc_manifest_compiled_again_to_other_bytes_is_recorded_not_called_tampered(stored, monkeypatch):
    """marshal's bytes depend on what the compiling process holds (CPython 3.9, 3.10, 3.13): a
    .pyc compiled again by repair may differ from the one recorded when the bubble was made.
    Here the recompile is made to differ on purpose (marshal format 3, which Python loads)."""
    import marshal

    from omnipkg_pip.writers import bytecode

    damage_pyc_manifest(stored)
    bytecode._pyc_bytes("/dev/null", "x.py")  # makes the function once, then it is replaced
    made = bytecode._namespace["pyc_bytes"]
    monkeypatch.setitem(bytecode._namespace, "pyc_bytes", lambda src, dfile: made(src, dfile)[:16] + marshal.dumps(
        compile(open(src, "rb").read(), dfile, "exec", dont_inherit=True), 3))
    healed = checkup.run(stored, full=True, repair=True)
    assert healed["clean"], healed
    assert any(a["action"] == "recorded" for a in healed["actions"]), healed["actions"]
    assert _kinds(checkup.run(stored, full=True)) == set()
    imports_ok(stored, *BOTH)
