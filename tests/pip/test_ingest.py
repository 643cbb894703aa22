"""ingest_wheel / bubble_from_wheels in-process: what a wheel becomes in the store.

A good wheel becomes a dist of hard links to read-only objects, a manifest that
says what is there, a RECORD that matches the files and hash-based ``.pyc``.
A broken or malicious wheel is rejected with a message naming the wheel and the
bad member, and the store is byte-identical afterwards: the corpus below runs
against a store that already holds a bubble (so ``.lock``, ``tmp/``, objects and
dists exist before and are compared strictly, ``.lock`` included).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import json
import marshal
import os
import py_compile
import re
import stat
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
from conftest import store_state, tree_digest
from wheelmaker import make_wheel, record_line

from omnipkg_hook.errors import WheelRejectedError
from omnipkg_hook.store import DIST_MANIFEST, WriteLock, read_manifest
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles, ingest
from omnipkg_pip.writers.bytecode import pyc_manifest_name

CURRENT = interp.current()
CACHE_TAG = sys.implementation.cache_tag
PYC_MANIFEST = pyc_manifest_name(CACHE_TAG)
EXT = "cpython-311-x86_64-linux-gnu.so"


def _ingest(store, wheel_path) -> tuple[dict, Path]:
    with WriteLock(store):
        manifest = ingest.ingest_wheel(store, str(wheel_path), CURRENT)
    return manifest, Path(store.dist_path(manifest["name"], manifest["version"], manifest["tag"]))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _objects(store) -> dict[str, Path]:
    """object file name (sha256 + optional "x") -> path, for every object in the store."""
    root = Path(store.objects)
    return {p.parent.name + p.name: p for p in root.glob("*/*")} if root.exists() else {}


# -- a good wheel ----------------------------------------------------------------------

GOOD_FILES = {
    "goodpkg/__init__.py": "from .core import answer\n",
    "goodpkg/core.py": "def answer():\n    return 42\n",
    "goodpkg/table.csv": "a,b\n1,2\n",
    "goodpkg/run.sh": "#!/bin/sh\necho hi\n",  # executable
    "goodpkg/same-bytes.txt": "#!/bin/sh\necho hi\n",  # the same bytes, not executable
    "good-1.0.data/scripts/good-tool": "#!python\nprint('tool')\n",  # executable
    "good-1.0.data/data/share/good/readme.txt": "read me\n",
    "good-1.0.data/headers/good.h": "#define GOOD 1\n",
}
GOOD_EXECUTABLE = {"goodpkg/run.sh", "good-1.0.data/scripts/good-tool"}
GOOD_ENTRY_POINTS = {"console_scripts": {"good": "goodpkg:main"}, "gui_scripts": {"goodw": "goodpkg:gui"}}
# where each wheel member lands inside the dist
GOOD_PATHS = {
    "goodpkg/__init__.py": "goodpkg/__init__.py",
    "goodpkg/core.py": "goodpkg/core.py",
    "goodpkg/table.csv": "goodpkg/table.csv",
    "goodpkg/run.sh": "goodpkg/run.sh",
    "goodpkg/same-bytes.txt": "goodpkg/same-bytes.txt",
    "good-1.0.data/scripts/good-tool": "_omnipkg_data/scripts/good-tool",
    "good-1.0.data/data/share/good/readme.txt": "_omnipkg_data/data/share/good/readme.txt",
    "good-1.0.data/headers/good.h": "_omnipkg_data/headers/good.h",
}


@pytest.fixture
def good(store, wheelhouse):
    wheel = make_wheel(
        wheelhouse, "good", "1.0", GOOD_FILES, requires=["dep>=1", 'winonly; sys_platform == "win32"'],
        requires_python=">=3.9", entry_points=GOOD_ENTRY_POINTS, executable=GOOD_EXECUTABLE,
    )
    manifest, dist = _ingest(store, wheel)
    return wheel, manifest, dist


def test_good_manifest_says_what_the_dist_is(good):
    wheel, manifest, _dist = good
    files = {f["path"]: f for f in manifest["files"]}
    assert {k: v for k, v in manifest.items() if k != "files"} == {
        "format": 1,
        "name": "good",
        "project_name": "good",
        "version": "1.0",
        "tag": "py3-none-any",
        "wheel": "good-1.0-py3-none-any.whl",
        "wheel_sha256": _sha(wheel.read_bytes()),
        "dist_info": "good-1.0.dist-info",
        "top_level": ["goodpkg"],
        "namespaces": [],
        "requires_dist": ["dep>=1", 'winonly; sys_platform == "win32"'],
        "requires_python": ">=3.9",
        "entry_points": GOOD_ENTRY_POINTS,
    }
    assert [f["path"] for f in manifest["files"]] == sorted(files)
    dist_info = {f"good-1.0.dist-info/{n}" for n in ("METADATA", "WHEEL", "entry_points.txt", "RECORD", "INSTALLER")}
    assert set(files) == set(GOOD_PATHS.values()) | dist_info
    with zipfile.ZipFile(wheel) as zf:
        for member, path in GOOD_PATHS.items():
            data = zf.read(member)
            assert files[path] == {
                "path": path, "sha256": _sha(data), "size": len(data),
                "mode": 0o755 if member in GOOD_EXECUTABLE else 0o644,
            }


def test_good_every_file_is_a_hard_link_to_a_read_only_object(store, good):
    _wheel, manifest, dist = good
    pyc = read_manifest(str(dist / PYC_MANIFEST))
    entries = manifest["files"] + pyc["files"]
    for entry in entries:
        path = dist / entry["path"]
        executable = bool(entry["mode"] & 0o111)
        obj = Path(store.object_path(entry["sha256"], executable))
        assert obj.name.endswith("x") == executable, entry
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode), entry
        assert st.st_ino == obj.stat().st_ino, entry
        assert stat.S_IMODE(st.st_mode) == (0o555 if executable else 0o444), entry
        assert st.st_size == entry["size"]
        assert _sha(path.read_bytes()) == entry["sha256"]
    # Same bytes with and without the executable bit are two objects, never one.
    run, same = (next(f for f in manifest["files"] if f["path"] == p) for p in ("goodpkg/run.sh", "goodpkg/same-bytes.txt"))
    assert run["sha256"] == same["sha256"]
    assert (dist / "goodpkg/run.sh").stat().st_ino != (dist / "goodpkg/same-bytes.txt").stat().st_ino
    # A fresh store holds exactly the objects the dist uses: its files and its two
    # manifests, which are objects too (linked, so bubbles can record them at no cost).
    used = {e["sha256"] + ("x" if e["mode"] & 0o111 else "") for e in entries}
    manifests = {_sha((dist / name).read_bytes()) for name in (DIST_MANIFEST, PYC_MANIFEST)}
    for name in (DIST_MANIFEST, PYC_MANIFEST):
        assert (dist / name).stat().st_ino == Path(store.object_path(_sha((dist / name).read_bytes()))).stat().st_ino
    assert set(_objects(store)) == used | manifests
    # Nothing in the dist directory is outside the two manifests but the manifests themselves.
    on_disk = {str(p.relative_to(dist)) for p in dist.rglob("*") if p.is_file()}
    assert on_disk == {e["path"] for e in entries} | {DIST_MANIFEST, PYC_MANIFEST}


def test_good_record_in_the_dist_matches_its_files(good):
    _wheel, manifest, dist = good
    record = dist / "good-1.0.dist-info" / "RECORD"
    rows = {row[0]: row[1:] for row in csv.reader(record.read_text().splitlines())}
    assert rows.pop("good-1.0.dist-info/RECORD") == ["", ""]
    assert set(rows) == {f["path"] for f in manifest["files"]} - {"good-1.0.dist-info/RECORD"}
    for path, (hash_text, size) in rows.items():
        data = (dist / path).read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        assert (hash_text, size) == (f"sha256={digest}", str(len(data))), path
    assert (dist / "good-1.0.dist-info" / "INSTALLER").read_text() == "pip-omni\n"


def test_good_data_lands_under_omnipkg_data_and_entry_points_are_not_written(good):
    _wheel, manifest, dist = good
    data = dist / "_omnipkg_data"
    assert sorted(p.name for p in data.iterdir()) == ["data", "headers", "scripts"]
    tool = data / "scripts" / "good-tool"
    assert tool.read_text() == "#!python\nprint('tool')\n"  # kept as shipped; launchers are per bubble
    assert tool.stat().st_mode & 0o111
    assert (data / "data" / "share" / "good" / "readme.txt").read_text() == "read me\n"
    assert (data / "headers" / "good.h").read_text() == "#define GOOD 1\n"
    assert not any(p.name in ("good", "goodw", "entry-point") for p in dist.rglob("*") if p.is_file())
    assert "good-1.0.data" not in os.listdir(dist)
    assert manifest["entry_points"] == GOOD_ENTRY_POINTS
    assert "[console_scripts]\ngood = goodpkg:main" in (dist / "good-1.0.dist-info" / "entry_points.txt").read_text()


def test_ingesting_a_stored_dist_again_changes_nothing(store, good):
    wheel, manifest, _dist = good
    before = tree_digest(store.root, skip=())
    again, _ = _ingest(store, wheel)
    assert again == manifest
    assert tree_digest(store.root, skip=()) == before


# name, import-side files, wheel tag, top_level, namespaces
TOP_LEVEL_CASES = [
    ("package", "pkgonly", {"pkgonly/__init__.py": ""}, "py3-none-any", ["pkgonly"], []),
    ("single module", "solo", {"solo.py": "X = 1\n"}, "py3-none-any", ["solo"], []),
    ("extension module", "fastext", {f"fast.{EXT}": b"\x7fELF"}, "cp311-cp311-linux_x86_64", ["fast"], []),
    ("extension __init__", "extpkg", {f"extpkg/__init__.{EXT}": b"\x7fELF"}, "cp311-cp311-linux_x86_64",
     ["extpkg"], []),
    ("windows extension", "winext", {"winfast.cp311-win_amd64.pyd": b"MZ"}, "cp311-cp311-win_amd64",
     ["winfast"], []),
    ("namespace without __init__", "ns-plugin", {"nsroot/plugin/__init__.py": ""}, "py3-none-any",
     ["nsroot"], ["nsroot"]),
    ("several top-level names", "multi",
     {"alpha/__init__.py": "", "beta.py": "", f"_gamma.{EXT}": b"\x7fELF", "delta/sub/__init__.py": ""},
     "cp311-cp311-linux_x86_64", ["_gamma", "alpha", "beta", "delta"], ["delta"]),
    ("dist name is not the import name", "PyYAML-lite", {"yaml/__init__.py": ""}, "py3-none-any", ["yaml"], []),
    ("names that cannot be imported are left out", "oddnames",
     {"odd/__init__.py": "", "not-a-module.py": "", "README.txt": "", "odd-data/x.txt": ""}, "py3-none-any",
     ["odd"], []),
    ("data only", "dataonly", {"dataonly-1.0.data/data/share/x.txt": ""}, "py3-none-any", [], []),
]


@pytest.mark.parametrize(
    "name, files, tag, top_level, namespaces", [c[1:] for c in TOP_LEVEL_CASES], ids=[c[0] for c in TOP_LEVEL_CASES]
)
def test_top_level_and_namespaces_are_inferred(store, wheelhouse, name, files, tag, top_level, namespaces):
    manifest, dist = _ingest(store, make_wheel(wheelhouse, name, "1.0", files, tag=tag))
    assert (manifest["top_level"], manifest["namespaces"]) == (top_level, namespaces)
    assert manifest["tag"] == tag
    for path in files:
        if ".data/" not in path:
            assert (dist / path).is_file()


# -- .pyc ------------------------------------------------------------------------------


def _pyc_path(rel: str) -> str:
    head, _, name = rel.rpartition("/")
    return f"{head}/__pycache__/{name[:-3]}.{CACHE_TAG}.pyc"


def _flags(data: bytes) -> int:
    return int.from_bytes(data[4:8], "little")


def test_pyc_are_unchecked_hash_for_this_interpreter_and_listed(store, good):
    _wheel, manifest, dist = good
    sources = sorted(f["path"] for f in manifest["files"] if f["path"].endswith(".py"))
    assert sources == ["goodpkg/__init__.py", "goodpkg/core.py"]
    listed = read_manifest(str(dist / PYC_MANIFEST))
    assert listed["cache_tag"] == CACHE_TAG
    assert [f["path"] for f in listed["files"]] == [_pyc_path(s) for s in sources]
    for src, entry in zip(sources, listed["files"]):
        data = (dist / entry["path"]).read_bytes()
        source = (dist / src).read_bytes()
        assert data[:4] == importlib.util.MAGIC_NUMBER
        assert _flags(data) == 0b01  # hash-based, not checked against the source
        assert data[8:16] == importlib.util.source_hash(source)
        assert marshal.loads(data[16:]).co_filename == src  # the path inside the dist: dedupes
        assert entry == {"path": entry["path"], "sha256": _sha(data), "size": len(data), "mode": 0o644}
        assert (dist / entry["path"]).stat().st_ino == os.stat(store.object_path(entry["sha256"])).st_ino


def test_same_source_at_the_same_path_in_two_versions_is_one_pyc_object(store, wheelhouse):
    shared = "def shared(x):\n    return x * 2\n"
    dists = []
    for version in ("1.0", "2.0"):
        files = {"dd/__init__.py": f"V = {version!r}\n", "dd/same.py": shared, "dd/copy.py": shared}
        dists.append(_ingest(store, make_wheel(wheelhouse, "dd", version, files))[1])
    one, two = dists
    assert (one / _pyc_path("dd/same.py")).stat().st_ino == (two / _pyc_path("dd/same.py")).stat().st_ino
    assert (one / _pyc_path("dd/__init__.py")).read_bytes() != (two / _pyc_path("dd/__init__.py")).read_bytes()
    # Same source at another path: one .py object, but a pyc of its own (its file name is in the code).
    assert (one / "dd/same.py").stat().st_ino == (one / "dd/copy.py").stat().st_ino
    assert (one / _pyc_path("dd/same.py")).read_bytes() != (one / _pyc_path("dd/copy.py")).read_bytes()


def test_a_syntax_error_gets_no_pyc_and_does_not_stop_the_ingest(store, wheelhouse):
    files = {"sx/__init__.py": "OK = 1\n", "sx/broken.py": "def broken(:\n    pass\n"}
    manifest, dist = _ingest(store, make_wheel(wheelhouse, "sx", "1.0", files))
    assert "sx/broken.py" in {f["path"] for f in manifest["files"]}
    assert (dist / "sx/broken.py").read_text() == files["sx/broken.py"]
    assert [f["path"] for f in read_manifest(str(dist / PYC_MANIFEST))["files"]] == [_pyc_path("sx/__init__.py")]
    assert sorted(os.listdir(dist / "sx" / "__pycache__")) == [f"__init__.{CACHE_TAG}.pyc"]


def test_many_modules_are_compiled_in_parallel_the_same_way(store, wheelhouse):
    # 64 or more sources are split between this process and a compiler subprocess.
    files = {"many/__init__.py": ""} | {f"many/m{i:02d}.py": f"VALUE = {i}\n" for i in range(70)}
    _manifest, dist = _ingest(store, make_wheel(wheelhouse, "many", "1.0", files))
    listed = read_manifest(str(dist / PYC_MANIFEST))["files"]
    assert sorted(f["path"] for f in listed) == sorted(_pyc_path(p) for p in files)
    for f in listed:
        data = (dist / f["path"]).read_bytes()
        assert _flags(data) == 0b01 and _sha(data) == f["sha256"]


def test_no_timestamp_pyc_enters_the_store_even_when_the_wheel_ships_one(store, wheelhouse, tmp_path):
    source = "X = 1\n"
    (tmp_path / "mod.py").write_text(source)
    stamped = tmp_path / "mod.pyc"
    py_compile.compile(str(tmp_path / "mod.py"), str(stamped), "ts/mod.py", doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    assert _flags(stamped.read_bytes()) == 0
    files = {"ts/__init__.py": "", "ts/mod.py": source, f"ts/__pycache__/mod.{CACHE_TAG}.pyc": stamped.read_bytes()}
    with pytest.warns(RuntimeWarning, match="__pycache__"):  # installer skips it, and says so
        _manifest, dist = _ingest(store, make_wheel(wheelhouse, "ts", "1.0", files))
    assert _flags((dist / _pyc_path("ts/mod.py")).read_bytes()) == 0b01
    pycs = [p for p in _objects(store).values() if p.read_bytes()[:4] == importlib.util.MAGIC_NUMBER]
    assert len(pycs) == 2
    assert [_flags(p.read_bytes()) for p in pycs] == [0b01, 0b01]


# -- broken and malicious wheels --------------------------------------------------------

EVIL = {"evil/__init__.py": "X = 1\n"}


def _evil(directory, files=None, **kw) -> Path:
    return make_wheel(directory, "evil", "1.0", {**EVIL, **(files or {})}, **kw)


def _rewrite(wheel: Path, change) -> Path:
    """Rewrite ``wheel`` member by member: ``change(info, data)`` returns the (info, data) pairs to write."""
    with zipfile.ZipFile(wheel) as zf:
        members = [(info, zf.read(info)) for info in zf.infolist()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are written on purpose
        with zipfile.ZipFile(wheel, "w") as zf:
            for info, data in members:
                for new_info, new_data in change(info, data):
                    zf.writestr(new_info, new_data)
    return wheel


def _symlink(d):
    def change(info, data):
        if info.filename == "evil/link":
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        yield info, data

    return _rewrite(_evil(d, {"evil/link": "/etc/passwd"}), change)


def _duplicate(d):
    def change(info, data):
        yield info, data
        if info.filename == "evil/__init__.py":
            yield info, b"X = 2\n"

    return _rewrite(_evil(d), change)


def _bzip2(member):
    def change(info, data):
        if info.filename == member:
            info.compress_type = zipfile.ZIP_BZIP2
        yield info, data

    return change


def _zip_bomb(d):
    return _rewrite(_evil(d, {"evil/zeros.bin": bytes(8 << 20)}), _bzip2("evil/zeros.bin"))


def _metadata_bomb(d):
    # Caught from the archive's directory, before METADATA is read into memory and parsed.
    return _rewrite(_evil(d, metadata_override="\0" * (8 << 20)), _bzip2("evil-1.0.dist-info/METADATA"))


def _not_a_zip(d):
    Path(d).mkdir()
    path = Path(d) / "evil-1.0-py3-none-any.whl"
    path.write_bytes(b"#!/bin/sh\necho this is no zip archive\n")
    return path


def _bad_name(d):
    return _evil(d).rename(Path(d) / "evil.whl")


BIG = bytes(range(256)) * 20  # 5120 bytes that do not compress much

# id, build(directory) -> wheel, ingest limits patched for the case, message after "rejected '<wheel>': "
CORPUS = [
    ("path traversal", lambda d: _evil(d, {"../evil.py": "x"}), {},
     "../evil.py: path escapes the distribution directory or is reserved"),
    ("traversal inside .data", lambda d: _evil(d, {"evil-1.0.data/data/../../evil.py": "x"}), {},
     "evil-1.0.data/data/../../evil.py: path escapes the distribution directory or is reserved"),
    ("absolute path", lambda d: _evil(d, {"/etc/evil": "x"}), {},
     "/etc/evil: path escapes the distribution directory or is reserved"),
    ("backslash path", lambda d: _evil(d, {"evil\\..\\..\\evil.py": "x"}), {},
     "evil\\..\\..\\evil.py: path escapes the distribution directory or is reserved"),
    ("drive path", lambda d: _evil(d, {"C:/evil.py": "x"}), {},
     "C:/evil.py: path escapes the distribution directory or is reserved"),
    ("our dist manifest", lambda d: _evil(d, {DIST_MANIFEST: "{}"}), {},
     f"{DIST_MANIFEST}: {DIST_MANIFEST!r} is a name pip-omni writes into every dist (its manifests)"),
    ("our dist manifest, in another case", lambda d: _evil(d, {"Omnipkg-Dist.JSON": "{}"}), {},
     "Omnipkg-Dist.JSON: 'Omnipkg-Dist.JSON' is a name pip-omni writes into every dist (its manifests)"),
    ("our pyc manifest", lambda d: _evil(d, {PYC_MANIFEST: "{}"}), {},
     f"{PYC_MANIFEST}: {PYC_MANIFEST!r} is a name pip-omni writes into every dist (its manifests)"),
    ("another interpreter's pyc manifest", lambda d: _evil(d, {"omnipkg-pyc-cpython-399.json": "{}"}), {},
     "omnipkg-pyc-cpython-399.json: 'omnipkg-pyc-cpython-399.json' is a name pip-omni writes into every dist"),
    ("our pyc manifest through .data/purelib",
     lambda d: _evil(d, {f"evil-1.0.data/purelib/{PYC_MANIFEST}": "{}"}), {},
     f"{PYC_MANIFEST}: {PYC_MANIFEST!r} is a name pip-omni writes into every dist (its manifests)"),
    ("our data directory", lambda d: _evil(d, {"_omnipkg_data/scripts/x": "x"}), {},
     "_omnipkg_data/scripts/x: '_omnipkg_data' is where pip-omni keeps a wheel's .data files"),
    ("our data directory, in another case", lambda d: _evil(d, {"_OMNIPKG_DATA/scripts/x": "x"}), {},
     "_OMNIPKG_DATA/scripts/x: '_OMNIPKG_DATA' is where pip-omni keeps a wheel's .data files"),
    ("a file named __pycache__", lambda d: _evil(d, {"evil/__pycache__": "x"}), {},
     "evil/__pycache__: files in a __pycache__ directory are pip-omni's own (compiled .pyc)"),
    ("a __PYCACHE__ directory", lambda d: _evil(d, {"evil/__PYCACHE__/x.pyc": "x"}), {},
     "evil/__PYCACHE__/x.pyc: files in a __pycache__ directory are pip-omni's own (compiled .pyc)"),
    ("a file where a directory must be", lambda d: _evil(d, {"evil/a": "x", "evil/a/b.py": "y"}), {},
     "evil/a/b.py: 'evil/a' is a file, not a directory"),
    ("symlink member", _symlink, {}, "evil/link: is a symbolic link"),
    ("RECORD hash mismatch",
     lambda d: _evil(d, record_override={"evil/__init__.py": record_line("evil/__init__.py", b"X = 2\n")}), {},
     "evil/__init__.py: contents do not match the hash in RECORD"),
    ("RECORD size mismatch",
     lambda d: _evil(d, record_override={"evil/__init__.py": record_line("evil/__init__.py", b"X = 1\n")[:-1] + "99"}),
     {}, "evil/__init__.py: size 6 does not match RECORD (99)"),
    ("file missing from RECORD", lambda d: _evil(d, {"evil/sneak.py": "x"}, skip_record={"evil/sneak.py"}), {},
     "evil/sneak.py is not mentioned in RECORD"),
    ("no RECORD", lambda d: _evil(d, no_record=True), {}, "Unable to retrieve `RECORD` from "),
    ("METADATA without Name", lambda d: _evil(d, metadata_override="Metadata-Version: 2.1\nVersion: 1.0\n"), {},
     "METADATA has no Name"),
    ("METADATA without Version", lambda d: _evil(d, metadata_override="Metadata-Version: 2.1\nName: evil\n"), {},
     "METADATA has no Version"),
    ("METADATA names another project", lambda d: _evil(d, metadata_name="other"), {},
     "METADATA says other 1.0, the file name says evil 1.0"),
    ("METADATA has another version",
     lambda d: _evil(d, metadata_override="Metadata-Version: 2.1\nName: evil\nVersion: 2.0\n"), {},
     "METADATA says evil 2.0, the file name says evil 1.0"),
    ("duplicate zip entry", _duplicate, {}, "evil/__init__.py: duplicate entry in the archive"),
    ("zip bomb", _zip_bomb, {}, "evil/zeros.bin: compression ratio is that of a zip bomb"),
    ("zip bomb in METADATA", _metadata_bomb, {},
     "evil-1.0.dist-info/METADATA: compression ratio is that of a zip bomb"),
    ("member too large", lambda d: _evil(d, {"evil/big.bin": BIG}), {"MAX_MEMBER_BYTES": 4096},
     "evil/big.bin: too large (5120 bytes uncompressed)"),
    ("wheel too large", lambda d: _evil(d, {"evil/a.bin": BIG, "evil/b.bin": BIG}), {"MAX_WHEEL_BYTES": 8192},
     "evil/b.bin: too large (the wheel's files add up to 10246 bytes uncompressed)"),
    ("not a zip", _not_a_zip, {}, "not a readable zip archive (File is not a zip file)"),
    ("invalid wheel file name", _bad_name, {}, "Invalid wheel filename (wrong number of parts): 'evil'"),
]


@pytest.mark.parametrize("build, limits, expected", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_wheel_is_rejected_and_the_store_is_byte_identical(store, tmp_path, monkeypatch, build, limits, expected):
    bubbles.bubble_from_wheels(store, [make_wheel(tmp_path / "good", "keeper", "1.0")], "keeper")
    before = store_state(store.root)
    assert os.path.exists(store.lock) and os.listdir(store.tmp) == []
    wheel = build(tmp_path / "bad")
    for name, value in limits.items():
        monkeypatch.setattr(ingest, name, value)

    with pytest.raises(WheelRejectedError) as caught:
        bubbles.bubble_from_wheels(store, [wheel], "evil")

    assert caught.value.message.startswith(f"rejected {wheel.name!r}: {expected}")
    assert "\n" not in caught.value.message
    assert store_state(store.root) == before  # bytes, inodes, modes, links, owners


def test_every_problem_of_a_wheel_is_reported_at_once(store, wheelhouse):
    wheel = _evil(wheelhouse, {"evil/a.py": "A = 1\n", "evil/b.py": "B = 1\n"}, record_override={
        "evil/a.py": record_line("evil/a.py", b"A = 2\n"), "evil/b.py": record_line("evil/b.py", b"B = 2\n"),
    })
    with pytest.raises(WheelRejectedError, match=re.escape(
        "rejected 'evil-1.0-py3-none-any.whl': evil/a.py: contents do not match the hash in RECORD; "
        "evil/b.py: contents do not match the hash in RECORD\n"
        "  hint: nothing was stored; the wheel is damaged or malicious, get it from a trusted source"
    )):
        _ingest(store, wheel)


def test_a_malicious_wheel_cannot_rewrite_an_object_another_dist_uses(store, wheelhouse):
    # The object of victim's data.json has the bytes the evil wheel ships under a name
    # pip-omni writes itself; the write must never go through the shared hard link.
    _ingest(store, make_wheel(wheelhouse, "victim", "1.0", {"victim/__init__.py": "", "victim/data.json": "{}"}))
    before = tree_digest(store.root, skip=())
    with pytest.raises(WheelRejectedError, match=re.escape(PYC_MANIFEST)):
        _ingest(store, _evil(wheelhouse, {PYC_MANIFEST: "{}"}))
    assert tree_digest(store.root, skip=()) == before
    assert Path(store.object_path(_sha(b"{}"))).read_bytes() == b"{}"


def test_bad_wheel_through_the_cli_is_one_error_and_stores_nothing(omni_venv, wheelhouse):
    _evil(wheelhouse, {"../evil.py": "x"})
    site_before = tree_digest(omni_venv.site, omni_venv.path / "bin")

    proc = omni_venv.run("install", "-q", "--bubble", "--no-index", "-f", str(wheelhouse), "evil", check=False)

    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        "pip-omni: error: rejected 'evil-1.0-py3-none-any.whl': "
        "../evil.py: path escapes the distribution directory or is reserved",
        "  hint: nothing was stored; the wheel is damaged or malicious, get it from a trusted source",
    ]
    assert proc.stdout == ""
    store = Path(omni_venv.env["OMNIPKG_STORE"])
    # The writer's lock file and an empty staging directory are all a rejected wheel leaves
    # (pip's log and the interpreter cache sit beside the store's content, not in it).
    assert sorted(set(os.listdir(store)) - {"logs", "cache"}) == [".lock", "tmp"] and os.listdir(store / "tmp") == []
    assert tree_digest(omni_venv.site, omni_venv.path / "bin") == site_before
    assert json.loads(omni_venv.run("list", "--json").stdout)["bubbles"] == []
