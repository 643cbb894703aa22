"""``pip-omni store export`` / ``import``: a portable archive of bubbles, verified on import."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from conftest import store_state, tree_digest  # tests/conftest.py

from omnipkg_hook.store import Store, interpreter_key
from omnipkg_pip import pip
from omnipkg_pip.cli import main as cli_main
from omnipkg_pip.integrity import checkup, mainenv
from omnipkg_pip.writers import archive

from .conftest import imports_ok

KEY = interpreter_key()
BOTH = ("omt-app==1.0", "omt-tool==1.0")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("import ran pip")

    monkeypatch.setattr(pip, "run_pip", refuse)
    monkeypatch.setattr(mainenv, "check_main", lambda store: ([], []))


def _clean(store):
    result = checkup.run(store, full=True)
    assert result["problems"] == [], result["problems"]


def test_round_trip_into_an_empty_store_with_no_network(stored, tmp_path, no_network):
    path = str(tmp_path / "bubbles.tar.gz")
    index = archive.export(stored, path)
    assert index["bubbles"] == sorted(f"bubbles/{n}/1.0/{KEY}.json" for n in ("omt-app", "omt-tool"))
    assert index["dists"] == [f"dists/{n}/1.0/py3-none-any" for n in ("omt-app", "omt-lib", "omt-tool")]

    other = Store(str(tmp_path / "other"))
    result = archive.import_archive(other, path)

    assert len(result["bubbles"]) == 2 and len(result["dists"]) == 3 and result["present"] == []
    assert result["objects"] == index["objects"] > 0
    _clean(other)
    imports_ok(other, *BOTH)

    before = tree_digest(other.root)  # idempotent: the second import changes nothing
    again = archive.import_archive(other, path)
    assert again["objects"] == 0 and again["dists"] == [] and again["bubbles"] == []
    assert len(again["present"]) == 5
    assert tree_digest(other.root) == before


def test_export_chosen_bubbles_and_the_same_bytes_twice(stored, tmp_path):
    a, b = str(tmp_path / "a.tar"), str(tmp_path / "b.tar")
    index = archive.export(stored, a, ["omt-app==1.0"])
    archive.export(stored, b, ["omt-app==1.0"])
    assert open(a, "rb").read() == open(b, "rb").read()
    assert index["bubbles"] == [f"bubbles/omt-app/1.0/{KEY}.json"]
    assert index["dists"] == ["dists/omt-app/1.0/py3-none-any", "dists/omt-lib/1.0/py3-none-any"]
    with pytest.raises(archive.ArchiveError) as e:
        archive.export(stored, a, ["omt-app==9"])
    assert e.value.message == f"no bubble 'omt-app==9' for {KEY} to export"


def test_importing_into_a_store_that_has_part_of_it(stored, tmp_path, no_network):
    path = str(tmp_path / "all.tar")
    archive.export(stored, path)
    other = Store(str(tmp_path / "other"))
    app_only = str(tmp_path / "app.tar")
    archive.export(stored, app_only, ["omt-app==1.0"])
    archive.import_archive(other, app_only)
    result = archive.import_archive(other, path)
    assert result["bubbles"] == [f"bubbles/omt-tool/1.0/{KEY}.json"]
    assert result["dists"] == ["dists/omt-tool/1.0/py3-none-any"]
    _clean(other)
    imports_ok(other, *BOTH)


# -- tampered archives: rejected with a clear error, the target store unchanged ------------------


def _members(path):
    with tarfile.open(path) as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf]


def _write(path, members, extra=()):
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)


def _flip_object(members):
    out, done = [], False
    for name, data in members:
        if name.startswith("objects/") and not done and len(data) > 4:
            data, done = data[:-1] + bytes([data[-1] ^ 1]), True
        out.append((name, data))
    return out, ()


def _drop_object(members):
    objs = [n for n, _ in members if n.startswith("objects/")]
    return [(n, d) for n, d in members if n != objs[0]], ()


def _escape(name):
    return lambda members: (members + [(name, b"boom")], ())


def _symlink(members):
    info = tarfile.TarInfo("objects/aa/" + "b" * 62)
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    return members, (info,)


def _bubble_outside(members):
    out = []
    for name, data in members:
        if name.startswith("bubbles/"):
            m = json.loads(data)
            next(iter(m["dists"].values()))["path"] = "dists/../../../etc"
            data = json.dumps(m).encode()
        out.append((name, data))
    return out, ()


def _manifest_lies(members):
    out = []
    for name, data in members:
        if name.endswith("omt-lib/1.0/py3-none-any/omnipkg-dist.json"):
            m = json.loads(data)
            m["files"][0]["size"] += 1
            data = json.dumps(m).encode()
        out.append((name, data))
    return out, ()


def _duplicate(members):
    return members + [members[-1]], ()


TAMPER = [
    (_flip_object, r"objects/[0-9a-f]{2}/[0-9a-f]+': its bytes do not match its name"),
    (_drop_object, r"its object objects/\S+ is neither in the archive nor in the store"),
    (_escape("../evil.py"), r"'\.\./evil\.py': not a path an archive may hold \(escapes the store or unknown\)"),
    (_escape("/tmp/evil.py"), r"'/tmp/evil\.py': not a path an archive may hold"),
    (_escape("objects/../../evil.py"), r"'objects/\.\./\.\./evil\.py': not a path an archive may hold"),
    (_escape("dists/x/1/py3-none-any/evil.py"), r"not a path an archive may hold"),
    (_symlink, r"not a regular file \(links and devices are refused\)"),
    (_bubble_outside, r"names the dist path 'dists/\.\./\.\./\.\./etc', outside dists/"),
    (_manifest_lies, r"is \d+ bytes, the manifest says \d+"),
    (_duplicate, r"appears twice"),
]


@pytest.mark.parametrize("tamper, message", TAMPER, ids=[t[1][:30] for t in TAMPER])
def test_a_tampered_archive_is_rejected_and_the_store_is_unchanged(stored, tmp_path, wheel, no_network, tamper, message):
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    good = str(tmp_path / "good.tar")
    archive.export(stored, good)
    members, extra = tamper(_members(good))
    bad = str(tmp_path / "bad.tar")
    _write(bad, members, extra)
    target = Store(str(tmp_path / "target"))  # a store with something else in it
    bubble_from_wheels(target, [wheel("omt-other", "1.0")], "omt-other==1.0")
    before = store_state(target.root)  # bytes, inodes, modes, links, owners
    assert not os.path.exists(tmp_path / "evil.py")

    with pytest.raises(archive.ArchiveError, match=r"^rejected the archive 'bad\.tar': .*" + message) as e:
        archive.import_archive(target, bad)

    assert e.value.hint == "nothing was imported; export it again from a sound store (`pip-omni doctor` there)"
    assert store_state(target.root) == before
    assert not os.path.exists(tmp_path / "evil.py") and not os.path.exists("/tmp/evil.py")
    empty = Store(str(tmp_path / "empty"))
    os.makedirs(empty.root)
    with pytest.raises(archive.ArchiveError):
        archive.import_archive(empty, bad)
    assert sorted(os.listdir(empty.root)) == [".lock"]  # nothing but the writer lock file


def test_not_an_archive(stored, tmp_path):
    path = tmp_path / "junk.tar"
    path.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(archive.ArchiveError, match=r"^cannot read the archive 'junk\.tar': "):
        archive.import_archive(stored, str(path))


def test_cli_export_import_and_info(stored, tmp_path, capsys, no_network, monkeypatch):
    path = str(tmp_path / "x.tgz")
    assert cli_main(["store", "export", path, "omt-tool==1.0"]) == 0
    assert capsys.readouterr().out == f"exported 1 bubble, 2 dists, {archive.export(stored, path + '2', ['omt-tool==1.0'])['objects']} objects to {path}\n"
    monkeypatch.setenv("OMNIPKG_STORE", str(tmp_path / "fresh"))
    assert cli_main(["store", "import", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["bubbles"] == [f"bubbles/omt-tool/1.0/{KEY}.json"]
    assert cli_main(["store", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bubbles"] == 1
    assert cli_main(["store", "import", str(tmp_path / "nothing.tar")]) == 1
    assert "pip-omni: error: cannot read the archive 'nothing.tar'" in capsys.readouterr().err
    assert cli_main(["store", "export"]) == 1
