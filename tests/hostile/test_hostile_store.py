"""Hostile input against what is stored: forged manifests, wheels that collide with the
store's own names, another build under a stored name, a symlink inside a dist, and a
standard-library name in a bubble. Each case builds the hostile input and asserts the one
line it gets, the exit code where a command is involved, and ``store_state`` (bytes, inode,
mode, links, owner of every entry) equal before and after.

``HOSTILE`` counts the hostile inputs these tests try (the report quotes it).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import store_state  # tests/conftest.py
from wheelmaker import make_wheel

import omnipkg_hook
from omnipkg_hook import distnames, finder, pins
from omnipkg_hook.errors import StoreCorruptError, WheelRejectedError
from omnipkg_hook.stdlib import stdlib_module_names
from omnipkg_hook.store import DIST_MANIFEST, interpreter_key, put_object, write_json_atomic
from omnipkg_pip.cli import main as cli_main
from omnipkg_pip.writers import bubbles

KEY = interpreter_key()
TAG = sys.implementation.cache_tag
PYC = distnames.pyc_manifest_name(TAG)


@pytest.fixture(autouse=True)
def clean_hook(monkeypatch):
    monkeypatch.delenv("OMNIPKG_PINS", raising=False)
    before = set(sys.modules)
    pins._state.__init__()
    finder.FINDER.set_routes({}, {})
    finder.FINDER.cache.clear()
    yield
    pins._state.__init__()
    finder.FINDER.set_routes({}, {})
    finder.FINDER.cache.clear()
    finder.uninstall()
    for name in [n for n in sys.modules if n not in before and n.startswith("omt")]:
        del sys.modules[name]


FILES = {"omt_h/__init__.py": "VERSION = '1.0'\n", "omt_h/data.txt": "payload\n"}


@pytest.fixture
def stored(store, wheelhouse):
    """A bubble of omt-h 1.0; returns its dist directory."""
    wheel = make_wheel(wheelhouse, "omt-h", "1.0", FILES)
    bubbles.bubble_from_wheels(store, [wheel], "omt-h==1.0")
    return os.path.join(store.dists, "omt-h", "1.0", "py3-none-any")


def _manifest(dist):
    with open(os.path.join(dist, DIST_MANIFEST), "rb") as f:
        return json.loads(f.read())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace(path: str, data: bytes) -> None:
    """Replace a file by a new one (a new inode: no object is touched)."""
    os.unlink(path)
    with open(path, "wb") as f:
        f.write(data)


def _forge(store, dist, add_files=(), drop=None) -> dict:
    """Replace the dist's manifest by one that also lists ``add_files`` (each linked to an
    existing object) -- what an attacker with write access to the dist directory could do."""
    m = _manifest(dist)
    victim = next(e for e in m["files"] if e["path"] == "omt_h/data.txt")
    for path in add_files:
        m["files"].append({**victim, "path": path})
    if drop:
        m["files"] = [e for e in m["files"] if e["path"] != drop]
    _replace(os.path.join(dist, DIST_MANIFEST), json.dumps(m, indent=1, sort_keys=True).encode())
    return victim


def _untouched(before: dict, after: dict) -> None:
    """Every object of ``before`` is still there with the same bytes, inode, mode and owner
    (a repair adds links to objects, in the rebuilt dist and the quarantine: only nlink moves)."""
    drop_nlink = lambda state: {k: v[:4] + v[5:] for k, v in state.items()}  # noqa: E731
    assert {k: v for k, v in drop_nlink(after).items() if k in before} == drop_nlink(before)


# -- 1. an existing object is never written again ------------------------------------------------

# Names a forged dist manifest lists so that a repair writing its own file there would
# write through a hard link into the object of omt_h/data.txt.
FORGED_NAMES = [PYC, DIST_MANIFEST, "omnipkg-pyc-cpython-399.json", "Omnipkg-Dist.json",
                f"omt_h/__pycache__/__init__.{TAG}.pyc", "_omnipkg_data/x", "_omnipkg_data/entry-point/x"]


@pytest.mark.parametrize("name", FORGED_NAMES)
def test_a_recorded_manifest_listing_a_store_name_is_never_repaired_through(store, stored, name):
    """Even when the bubble records the forged manifest (an archive made elsewhere), the pin's
    self-repair refuses it and the object it links stays as it was."""
    victim = _forge(store, stored, [name])
    with open(os.path.join(stored, DIST_MANIFEST), "rb") as f:
        forged = f.read()
    bubble_path = store.bubble_path("omt-h", "1.0", KEY)
    with open(bubble_path) as f:
        b = json.load(f)
    b["dists"]["omt-h"]["manifest"] = put_object(store, forged)
    write_json_atomic(store, bubble_path, b)
    os.unlink(os.path.join(stored, "omt_h", "data.txt"))  # a reason to repair
    before = store_state(store.root)

    with pytest.raises(StoreCorruptError) as caught:
        omnipkg_hook.pin("omt-h==1.0")

    assert re.fullmatch(r"cannot repair omt-h 1\.0: its manifest lists a name the store writes itself \(.+\)",
                        caught.value.message), caught.value.message
    assert name in caught.value.message and "\n" not in caught.value.message
    assert store_state(store.root) == before
    with open(store.object_path(victim["sha256"]), "rb") as f:
        assert f.read() == b"payload\n"


@pytest.mark.parametrize("name", FORGED_NAMES)
def test_doctor_reports_a_manifest_listing_a_store_name(store, stored, name, capsys):
    _forge(store, stored, [name])
    before = store_state(store.root)
    code = cli_main(["doctor", "--quick"])
    out = capsys.readouterr().out
    assert code == 1
    line = next(ln for ln in out.splitlines() if "dist-manifest" in ln)
    assert re.fullmatch(r"\s+dist-manifest\s+dists/omt-h/1\.0/py3-none-any: omnipkg-dist\.json: omnipkg-dist\.json "
                        r"lists a name the store writes itself \(.+\)", line), line
    assert store_state(store.root) == before


def test_doctor_repair_rebuilds_from_the_record_never_through_a_forged_name(store, stored, capsys):
    victim = _forge(store, stored, [PYC])
    objects_before = store_state(store.objects)
    code = cli_main(["doctor", "--repair"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"rebuilt dists/omt-h/1.0/py3-none-any: .*from objects and the bubble's record of it", out), out
    _untouched(objects_before, store_state(store.objects))
    with open(store.object_path(victim["sha256"]), "rb") as f:
        assert f.read() == b"payload\n"
    assert PYC not in {e["path"] for e in _manifest(stored)["files"]}


def test_a_symlink_in_a_dist_never_sends_compiled_files_out_of_the_store(store, stored, wheelhouse, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.unlink(os.path.join(stored, PYC))  # not compiled for this interpreter any more
    cache = os.path.join(stored, "omt_h", "__pycache__")
    shutil.rmtree(cache)
    os.symlink(outside, cache)
    before = store_state(store.root)

    with pytest.raises(StoreCorruptError) as caught:
        bubbles.bubble_from_wheels(store, [wheelhouse / "omt_h-1.0-py3-none-any.whl"], "omt-h==1.0")

    assert caught.value.message == f"cannot compile into {stored!r}: {cache!r} is not a directory (a symbolic link?)"
    assert os.listdir(outside) == []
    assert store_state(store.root) == before


def test_the_cli_refuses_a_wheel_with_a_store_name_and_exits_1(store, stored, wheelhouse, tmp_path, capsys):
    bad = tmp_path / "bad"
    make_wheel(bad, "omt-evil", "1.0", {"omt_evil/__init__.py": "", PYC: "{}"})
    before = store_state(store.root)
    code = cli_main(["install", "-q", "--bubble", "--no-index", "-f", str(bad), "omt-evil==1.0"])
    err = capsys.readouterr().err
    assert code == 1
    first = err.splitlines()[0]
    assert first == (f"pip-omni: error: rejected 'omt_evil-1.0-py3-none-any.whl': {PYC}: {PYC!r} is a name "
                     "pip-omni writes into every dist (its manifests)")
    assert err.splitlines()[1].startswith("  hint: ") and len(err.splitlines()) == 2
    assert store_state(store.root) == before


# -- 2. repair trusts only what was recorded when the bubble was made ---------------------------


def test_pin_time_repair_refuses_a_replaced_manifest(store, stored):
    recorded = store.load_bubble("omt-h", "1.0", KEY)["dists"]["omt-h"]["manifest"]
    _forge(store, stored, ["omt_h/evil.py"])
    os.unlink(os.path.join(stored, "omt_h", "data.txt"))
    with open(os.path.join(stored, DIST_MANIFEST), "rb") as f:
        found = _sha(f.read())
    before = store_state(store.root)

    with pytest.raises(StoreCorruptError) as caught:
        omnipkg_hook.pin("omt-h==1.0")

    assert caught.value.message == (
        f"omt-h 1.0 in the store was tampered with: its {DIST_MANIFEST} has sha256 {found}, not the {recorded} "
        f"recorded when its bubble was made ({stored!r}); not repaired"
    )
    assert caught.value.hint.startswith("run `pip-omni doctor` to see what changed")
    assert store_state(store.root) == before
    assert omnipkg_hook.pins() == []


def test_pin_time_repair_without_a_record_refuses(store, stored):
    bubble_path = store.bubble_path("omt-h", "1.0", KEY)
    with open(bubble_path) as f:
        b = json.load(f)
    del b["dists"]["omt-h"]["manifest"]
    write_json_atomic(store, bubble_path, b)
    os.unlink(os.path.join(stored, "omt_h", "data.txt"))
    before = store_state(store.root)
    with pytest.raises(StoreCorruptError, match=r"^cannot repair omt-h 1\.0 in the store: 'omt_h/data\.txt' is "
                                                r"missing, and its bubble does not record its manifest to check it against"):
        omnipkg_hook.pin("omt-h==1.0")
    assert store_state(store.root) == before


def test_a_pin_time_repair_uses_the_recorded_object_when_the_manifest_is_gone(store, stored, capsys):
    """The legitimate case still works: the recorded manifest is trusted, and only it."""
    os.unlink(os.path.join(stored, DIST_MANIFEST))
    omnipkg_hook.pin("omt-h==1.0")
    assert "repaired omt-h 1.0 in the store" in capsys.readouterr().err
    import omt_h

    assert omt_h.VERSION == "1.0"


@pytest.mark.parametrize("mode", ["--quick", "full"])
def test_doctor_reports_a_replaced_manifest_as_tampered(store, stored, capsys, mode):
    recorded = store.load_bubble("omt-h", "1.0", KEY)["dists"]["omt-h"]["manifest"]
    _forge(store, stored, drop="omt_h/data.txt")  # consistent with a directory an attacker trimmed
    os.unlink(os.path.join(stored, "omt_h", "data.txt"))
    with open(os.path.join(stored, DIST_MANIFEST), "rb") as f:
        found = _sha(f.read())
    before = store_state(store.root)

    code = cli_main(["doctor", *([mode] if mode != "full" else [])])

    lines = [ln for ln in capsys.readouterr().out.splitlines() if "dist-tampered" in ln]
    assert code == 1
    assert lines == [f"  dist-tampered   dists/omt-h/1.0/py3-none-any: {DIST_MANIFEST}: sha256 {found}, not the "
                     f"{recorded} recorded when bubbles/omt-h/1.0/{KEY}.json was made: replaced; not trusted "
                     "(`--repair` rebuilds the dist from the record)"]
    assert store_state(store.root) == before


def test_doctor_repair_rebuilds_a_tampered_dist_from_the_record(store, stored, capsys):
    _forge(store, stored, ["omt_h/evil.py"])
    with open(os.path.join(stored, "omt_h", "evil.py"), "w") as f:
        f.write("EVIL = 1\n")  # the forged list and the directory agree: only the record tells
    objects_before = store_state(store.objects)

    code = cli_main(["doctor", "--repair", "--json"])

    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["clean"], result
    assert "dist-tampered" in {p["kind"] for p in result["problems"]}
    rebuilt = next(a for a in result["actions"] if a["action"] == "rebuilt")
    assert rebuilt["detail"].startswith(f"its {DIST_MANIFEST} was replaced (tampered with, sha256 ")
    assert not os.path.exists(os.path.join(stored, "omt_h", "evil.py"))
    assert "omt_h/evil.py" not in {e["path"] for e in _manifest(stored)["files"]}
    _untouched(objects_before, store_state(store.objects))
    quarantined = [p for p in store_state(os.path.join(store.root, "quarantine")) if p.endswith("omt_h/evil.py")]
    assert quarantined, "the tampered directory is kept in the quarantine"


def test_doctor_repair_never_takes_a_quarantined_manifest_the_record_disagrees_with(store, stored, capsys):
    _forge(store, stored, ["omt_h/evil.py"])
    recorded = store.load_bubble("omt-h", "1.0", KEY)["dists"]["omt-h"]["manifest"]
    os.unlink(store.object_path(recorded))  # the record's object is gone too
    code = cli_main(["doctor", "--repair", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    failed = next(a for a in result["actions"] if a["action"] == "could not repair" and a["path"].startswith("dists/"))
    assert failed["detail"].startswith(f"its {DIST_MANIFEST} was replaced (tampered with) and ")
    assert os.path.exists(os.path.join(stored, DIST_MANIFEST))  # left where it was, not rebuilt from


# -- 3. a stored dist is the wheel it came from --------------------------------------------------


def _install(*args: str) -> list[str]:
    return ["install", "-q", "--bubble", "--no-index", *args, "--python", sys.executable]


@pytest.mark.parametrize("bubble_kept", [True, False], ids=["bubble-present", "dists-only"])
def test_another_build_in_another_find_links_folder_is_refused_naming_both_hashes(
        store, wheelhouse, tmp_path, capsys, bubble_kept):
    """Two different wheels with one name/version/tag in two -f folders: the stored one (and
    the bubble made of it) is never handed out for the other, whether the bubble is still
    there or only its dists (pip is asked whenever the command line names a source)."""
    dep = make_wheel(wheelhouse, "omt-hdep", "1.0", {"omt_hdep/__init__.py": "X = 1\n"})
    first = make_wheel(wheelhouse, "omt-h", "1.0", FILES, requires=["omt-hdep==1.0"])
    other_dir = tmp_path / "elsewhere"
    other = make_wheel(other_dir, "omt-h", "1.0", {**FILES, "omt_h/__init__.py": "VERSION = 'evil'\n"},
                       requires=["omt-hdep==1.0"])
    shutil.copy(dep, other_dir)  # the same dependency file in both folders
    assert cli_main(_install("-f", str(wheelhouse), "omt-h==1.0")) == 0
    if not bubble_kept:
        assert cli_main(["uninstall", "-y", "omt-h==1.0"]) == 0
    capsys.readouterr()
    before = store_state(store.root)

    code = cli_main(_install("-f", str(other_dir), "omt-h==1.0"))

    err = capsys.readouterr().err
    stored_sha, other_sha = _sha(first.read_bytes()), _sha(other.read_bytes())
    assert code == 1
    assert err.splitlines()[0] == (
        f"pip-omni: error: rejected 'omt_h-1.0-py3-none-any.whl': the store already holds omt-h 1.0 (py3-none-any) "
        f"made from another wheel with other files: 'omt_h-1.0-py3-none-any.whl' sha256 {stored_sha} "
        f"(from {first.as_uri()}) is stored, this one is sha256 {other_sha}")
    assert store_state(store.root) == before
    assert cli_main(["doctor", "-v"]) == 0  # where each stored dist came from
    out = capsys.readouterr().out.splitlines()
    assert f"  dists/omt-h/1.0/py3-none-any: omt_h-1.0-py3-none-any.whl sha256 {stored_sha} (from {first.as_uri()})" in out
    assert (f"  dists/omt-hdep/1.0/py3-none-any: omt_hdep-1.0-py3-none-any.whl sha256 {_sha(dep.read_bytes())} "
            f"(from {dep.as_uri()})") in out


def test_the_same_file_from_another_folder_is_the_stored_dist_and_is_not_fetched(store, wheelhouse, tmp_path,
                                                                                  capsys, monkeypatch):
    """pip plans the very file the store was made from: nothing is fetched, the bubble stays."""
    first = make_wheel(wheelhouse, "omt-h", "1.0", FILES)
    assert cli_main(_install("-f", str(wheelhouse), "omt-h==1.0")) == 0
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(first, mirror)
    capsys.readouterr()
    before = store_state(store.root)
    from omnipkg_pip import pip

    ran = []
    real = pip.run_pip
    monkeypatch.setattr(pip, "run_pip", lambda py, args, **kw: ran.append(args[0]) or real(py, args, **kw))

    assert cli_main(_install("--json", "-f", str(mirror), "omt-h==1.0")) == 0

    assert json.loads(capsys.readouterr().out)[0]["action"] == "present"
    assert ran == ["install"]  # the dry-run resolve only: no pip wheel
    assert store_state(store.root) == before


def test_another_build_with_other_files_is_refused_naming_both_hashes(store, stored, wheelhouse, tmp_path, capsys):
    first = wheelhouse / "omt_h-1.0-py3-none-any.whl"
    other = make_wheel(tmp_path / "elsewhere", "omt-h", "1.0", {**FILES, "omt_h/__init__.py": "VERSION = 'evil'\n"})
    before = store_state(store.root)

    with pytest.raises(WheelRejectedError) as caught:
        bubbles.bubble_from_wheels(store, [other], "omt-h==1.0")

    with open(first, "rb") as f:
        stored_sha = _sha(f.read())
    with open(other, "rb") as f:
        other_sha = _sha(f.read())
    assert caught.value.message == (
        f"rejected 'omt_h-1.0-py3-none-any.whl': the store already holds omt-h 1.0 (py3-none-any) made from another "
        f"wheel with other files: 'omt_h-1.0-py3-none-any.whl' sha256 {stored_sha} is stored, this one is sha256 "
        f"{other_sha}"
    )
    assert store_state(store.root) == before
    assert cli_main(["doctor", "-v"]) == 0  # where the stored one came from: made through the API, not recorded
    assert (f"  dists/omt-h/1.0/py3-none-any: omt_h-1.0-py3-none-any.whl sha256 {stored_sha} (origin not recorded)"
            in capsys.readouterr().out.splitlines())


def test_another_zip_of_the_same_files_is_the_same_dist(store, stored, tmp_path):
    """Two builds of one sdist differ only in the zip around the files: one dist for both."""
    import zipfile

    first = tmp_path / "wheels" / "omt_h-1.0-py3-none-any.whl"
    again = tmp_path / "rebuilt" / first.name
    again.parent.mkdir()
    with zipfile.ZipFile(first) as zin, zipfile.ZipFile(again, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            info.date_time = (2024, 5, 5, 5, 5, 6)
            zout.writestr(info, zin.read(info.filename))
    assert _sha(first.read_bytes()) != _sha(again.read_bytes())
    before = store_state(store.dists)
    m = bubbles.bubble_from_wheels(store, [again], "omt-h==1.0")
    assert m["dists"]["omt-h"]["path"] == "dists/omt-h/1.0/py3-none-any"
    assert store_state(store.dists) == before


# -- 8. a bubble cannot shadow the standard library ----------------------------------------------


def test_a_dist_providing_stdlib_names_is_never_routed_to_them(store, wheelhouse, capsys):
    wheel = make_wheel(wheelhouse, "omt-shadow", "1.0", {
        "json/__init__.py": "raise SystemExit('shadowed json')\n",
        "typing.py": "raise SystemExit('shadowed typing')\n",
        "omt_shadow/__init__.py": "OK = True\n",
    })
    m = bubbles.bubble_from_wheels(store, [wheel], "omt-shadow==1.0")
    err = capsys.readouterr().err
    version = ".".join(map(str, sys.version_info[:3]))
    assert err == (f"pip-omni: omt-shadow 1.0 provides 'json', 'typing', standard-library module(s) of Python "
                   f"{version}: not routed to the bubble (the standard library's is used, as in a plain install)\n")
    entry = m["dists"]["omt-shadow"]
    assert entry["top_level"] == ["omt_shadow"] and entry["stdlib_not_routed"] == ["json", "typing"]
    code = ("import omnipkg_hook, sys; omnipkg_hook.pin('omt-shadow==1.0'); import json, typing, omt_shadow; "
            "print(json.__file__.startswith(sys.base_prefix), typing.__file__.startswith(sys.base_prefix), omt_shadow.OK)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_a_forged_bubble_manifest_cannot_route_a_stdlib_name(store, wheelhouse):
    # bubbles.py never writes a stdlib name into top_level; a manifest edited to list one
    # (another user's store, a tampered archive) must not take `import json` away from the
    # standard library, at pin() and at start-up alike
    wheel = make_wheel(wheelhouse, "omt-shadow", "1.0", {
        "json/__init__.py": "raise SystemExit('shadowed json')\n",
        "omt_shadow/__init__.py": "OK = True\n",
    })
    bubbles.bubble_from_wheels(store, [wheel], "omt-shadow==1.0")
    path = store.bubble_path("omt-shadow", "1.0", interpreter_key())
    with open(path) as f:
        m = json.load(f)
    m["dists"]["omt-shadow"]["top_level"].append("json")
    write_json_atomic(store, path, m)
    code = "import sys, json, omt_shadow; print(json.__file__.startswith(sys.base_prefix), omt_shadow.OK)"
    for how, env in (("pin()", {}), ("OMNIPKG_PINS", {"OMNIPKG_PINS": "omt-shadow==1.0"})):
        run = code if env else "import omnipkg_hook; omnipkg_hook.pin('omt-shadow==1.0'); " + code
        out = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=60)
        assert out.returncode == 0 and out.stdout.split() == ["True", "True"], (how, out.stdout, out.stderr)


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_the_stdlib_table_matches_each_interpreter(version):
    exe = os.path.expanduser(f"~/.pyenv/versions/{version}")
    found = [os.path.join(os.path.dirname(exe), d, "bin", "python") for d in os.listdir(os.path.dirname(exe))
             if d.startswith(version + ".")] if os.path.isdir(os.path.dirname(exe)) else []
    if not found:
        pytest.skip(f"no Python {version} under ~/.pyenv/versions")
    probe = ("import sys, json, pkgutil, sysconfig, os\n"
             "n = getattr(sys, 'stdlib_module_names', None)\n"
             "if n is None:\n"
             "    std = sysconfig.get_paths()['stdlib']\n"
             "    n = set(sys.builtin_module_names) | {m.name for m in pkgutil.iter_modules([std, os.path.join(std, 'lib-dynload')])}\n"
             "print(json.dumps(sorted(n)))")
    names = set(json.loads(subprocess.run([found[0], "-I", "-c", probe], capture_output=True, text=True,
                                          check=True).stdout))
    table = stdlib_module_names(tuple(map(int, version.split("."))))
    if version == "3.9":  # no sys.stdlib_module_names: every module on disk, test modules aside
        tests = {n for n in names - table if n == "test" or n.startswith(("_test", "xx", "_xx", "_ctypes_test",
                                                                            "_sysconfigdata", "__"))}
        assert names - table == tests
        assert {"formatter", "parser", "symbol"} <= table and "tomllib" not in table
    else:
        assert table == names


HOSTILE = (
    2 * len(FORGED_NAMES)  # forged manifests listing a store name: pin-time repair, doctor
    + 1  # doctor --repair with a forged name
    + 1  # symlinked __pycache__
    + 1  # wheel with a store name through the CLI
    + 2  # replaced manifest at pin time; missing record
    + 2  # replaced manifest, doctor quick and full
    + 2  # doctor --repair of a tampered dist; with the record's object gone
    + 1  # another build with other files, through the API
    + 2  # another build in another -f folder, bubble present / dists only
    + 1  # stdlib names in a bubble
    + 1  # a forged stdlib top-level name
)
