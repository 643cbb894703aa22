"""Hostile archives for ``pip-omni store import`` (issue 9, item 6): objects no manifest
references, more than the size cap, manifest names the store itself uses, members that are
not files -- each rejected in one line with the store byte-identical, as root and as a normal
user. And import/export stream: a big object is never held whole in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tracemalloc

import pytest
from conftest import store_state
from reliability.test_archive import _members as members_of  # tests/ is on sys.path
from reliability.test_archive import _write as write_tar
from tc_support import (
    NOBODY,
    build_store,
    chown_tree,
    cli,
    nobody_dir,
    nobody_python,
    one_error,
    tried,
)

from omnipkg_hook.store import Store, interpreter_key
from omnipkg_pip.writers import archive

PYC = f"omnipkg-pyc-{__import__('sys').implementation.cache_tag}.json"


def _obj_name(data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    return f"objects/{sha[:2]}/{sha[2:]}"


def _edit_dist(members, name, edit):
    out = []
    for n, data in members:
        if n == f"dists/{name}/1.0/py3-none-any/omnipkg-dist.json":
            m = json.loads(data)
            edit(m)
            data = json.dumps(m).encode()
        out.append((n, data))
    return out


# each: (members, extra, target store) -> (members, extra); and the message expected
def unreferenced(members, extra, target):
    payload = b"#!/bin/sh\necho an object no manifest names\n"
    return members + [(_obj_name(payload), payload)], extra


def reserved_name(members, extra, target):
    # omt-lib's file list claims a file named like the store's own pyc manifest, backed by an
    # object the target store already has: publishing would write that manifest through the
    # hard link, into the existing object.
    existing = next(o for o in _objects(target) if not o.endswith("x"))
    with open(existing, "rb") as f:
        size = len(f.read())
    sha = os.path.basename(os.path.dirname(existing)) + os.path.basename(existing)
    return _edit_dist(members, "omt-lib", lambda m: m["files"].append(
        {"path": PYC, "sha256": sha, "size": size, "mode": 0o644})), extra


def pyc_clash(members, extra, target):
    dist = next(json.loads(d) for n, d in members if n.endswith("omt-lib/1.0/py3-none-any/omnipkg-dist.json"))
    out = []
    for n, data in members:
        if n == f"dists/omt-lib/1.0/py3-none-any/{PYC}":
            m = json.loads(data)
            m["files"].append(dict(dist["files"][0]))
            data = json.dumps(m).encode()
        out.append((n, data))
    return out, extra


def pyc_names_the_dist_manifest(members, extra, target):
    # the .pyc manifest claims the dist's own manifest name: linking it would replace the
    # manifest every check trusts with an object of the archive's choosing
    out = []
    for n, data in members:
        if n == f"dists/omt-lib/1.0/py3-none-any/{PYC}":
            m = json.loads(data)
            m["files"].append(dict(m["files"][0], path="omnipkg-dist.json"))
            data = json.dumps(m).encode()
        out.append((n, data))
    return out, extra


def device_member(members, extra, target):
    info = tarfile.TarInfo("objects/aa/" + "c" * 62)
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 5
    return members, (*extra, info)


def hardlink_member(members, extra, target):
    info = tarfile.TarInfo("objects/aa/" + "d" * 62)
    info.type = tarfile.LNKTYPE
    info.linkname = members[0][0]
    return members, (*extra, info)


def truncated(members, extra, target):
    return members, extra  # cut after writing (see _hostile)


CASES = {
    "an object no manifest references": (unreferenced, r"': no manifest in the archive references it"),
    "a file named like the store's pyc manifest": (reserved_name, rf"lists a name the store writes itself \({PYC}: "),
    "a pyc manifest listing a file of the dist": (pyc_clash, r"'dists/[^']+/omnipkg-pyc-[^']+': [^ ]+: not a \.pyc for [^ ]+ in a __pycache__ directory$"),
    "a pyc manifest naming the dist manifest": (pyc_names_the_dist_manifest,
                                                r"omnipkg-dist\.json: not a \.pyc for [^ ]+ in a __pycache__ directory"),
    "a device member": (device_member, r"not a regular file \(links and devices are refused\)"),
    "a hard-link member": (hardlink_member, r"not a regular file \(links and devices are refused\)"),
    "a truncated archive": (truncated, r"the archive is truncated or damaged"),
}


def _objects(store: Store):
    for d, _dirs, files in os.walk(store.objects):
        for f in files:
            yield os.path.join(d, f)


@pytest.fixture
def source(store, wheel):
    return build_store(store, wheel)


@pytest.fixture
def target(tmp_path, wheel):
    """A store that already holds something (omt-lib 1.0's objects among it)."""
    from tc_support import app_files, lib_files

    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    t = Store(str(tmp_path / "target"))
    lib = wheel("omt-lib", "1.0", lib_files("1.0"))
    bubble_from_wheels(t, [wheel("omt-other", "1.0", app_files("omt-other", "1.0"), requires=["omt-lib"]), lib],
                       "omt-other==1.0")
    # omt-lib's dist directory is gone (its objects stay): the archive's copy would be published
    import shutil

    shutil.rmtree(os.path.join(t.dists, "omt-lib"))
    return t


def _hostile(source, tmp_path, target, case) -> str:
    make, _ = CASES[case]
    good = str(tmp_path / "good.tar")
    archive.export(source, good)
    members, extra = make(members_of(good), (), target)
    bad = str(tmp_path / "bad.tar")
    write_tar(bad, members, extra)
    if case == "a truncated archive":  # compressed, cut in the middle of a member
        import gzip

        with open(bad, "rb") as f, gzip.open(bad + ".gz", "wb") as z:
            z.write(f.read())
        os.unlink(bad)
        bad += ".gz"
        with open(bad, "r+b") as f:
            f.truncate(os.path.getsize(bad) // 2)
    return bad


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_archive_is_one_line_and_the_store_is_byte_identical(source, target, tmp_path, case):
    bad = _hostile(source, tmp_path, target, case)
    tried(f"archive: {case}")
    before = store_state(target.root)

    message, hint = one_error(cli(target.root, "store", "import", bad))

    assert message.startswith(f"rejected the archive {os.path.basename(bad)!r}: "), message
    import re

    assert re.search(CASES[case][1], message), message
    assert hint == "nothing was imported; export it again from a sound store (`pip-omni doctor` there)"
    assert store_state(target.root) == before


def test_more_than_the_size_cap_is_refused_and_max_size_raises_it(source, target, tmp_path):
    good = str(tmp_path / "good.tar")
    index = archive.export(source, good)
    total = sum(len(d) for _n, d in members_of(good))
    tried("archive: unpacks to more than --max-size")
    before = store_state(target.root)

    message, hint = one_error(cli(target.root, "store", "import", good, "--max-size", str(total // 2)))
    assert message.startswith("rejected the archive 'good.tar': unpacked, it is more than "
                              f"{total // 2} bytes (at '"), message
    assert message.endswith("'); `pip-omni store import --max-size` raises the limit")
    assert store_state(target.root) == before

    bad_size = cli(target.root, "store", "import", good, "--max-size", "lots")
    assert one_error(bad_size)[0] == "--max-size 'lots' is not a size"

    ok = cli(target.root, "store", "import", good, "--max-size", "1M", "--json")
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["bubbles"]) == len(index["bubbles"])


def test_a_manifest_larger_than_its_cap_is_refused(source, target, tmp_path, monkeypatch):
    good = str(tmp_path / "good.tar")
    archive.export(source, good)
    monkeypatch.setattr(archive, "MAX_MANIFEST_BYTES", 64)
    tried("archive: a manifest over its size cap")
    before = store_state(target.root)
    with pytest.raises(archive.ArchiveError, match=r"too large \(\d+ bytes; at most 64\)"):
        archive.import_archive(target, good)
    assert store_state(target.root) == before


def test_import_and_export_stream_a_big_object(store, wheel, tmp_path):
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    big = os.urandom(1 << 20) * 24  # 24 MiB
    bubble_from_wheels(store, [wheel("omt-big", "1.0", {"omt_big/__init__.py": "", "omt_big/blob.bin": big})],
                       "omt-big==1.0")
    out = str(tmp_path / "big.tar")
    tracemalloc.start()
    try:
        archive.export(store, out)
        _, export_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        other = Store(str(tmp_path / "other"))
        result = archive.import_archive(other, out)
        _, import_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["bubbles"] == [f"bubbles/omt-big/1.0/{interpreter_key()}.json"]
    assert export_peak < 8 << 20 and import_peak < 8 << 20, (export_peak, import_peak)  # never the 24 MiB whole
    blob = os.path.join(other.dists, "omt-big", "1.0", "py3-none-any", "omt_big", "blob.bin")
    with open(blob, "rb") as f:
        assert f.read() == big


# -- as a normal user ---------------------------------------------------------------------------


NOBODY_CASES = ["an object no manifest references", "a file named like the store's pyc manifest", "a device member"]


def test_as_a_normal_user_a_rejected_archive_leaves_their_store_byte_identical(source, tmp_path, wheel):
    nobody_python()  # skips, saying why, where no other user can run this checkout
    from tc_support import app_files, lib_files

    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    base = nobody_dir("omt-user-")
    theirs = Store(os.path.join(base, "store"))
    bubble_from_wheels(theirs, [wheel("omt-other", "1.0", app_files("omt-other", "1.0"), requires=["omt-lib"]),
                                wheel("omt-lib", "1.0", lib_files("1.0"))], "omt-other==1.0")
    import shutil

    shutil.rmtree(os.path.join(theirs.dists, "omt-lib"))
    chown_tree(theirs.root, NOBODY)
    try:
        for case in NOBODY_CASES:
            bad = _hostile(source, tmp_path, theirs, case)
            mine = os.path.join(base, f"bad-{NOBODY_CASES.index(case)}.tar")
            shutil.copyfile(bad, mine)
            os.chmod(mine, 0o644)
            tried(f"archive as a normal user: {case}")
            before = store_state(theirs.root)
            message, _hint = one_error(cli(theirs.root, "store", "import", mine, user=NOBODY))
            assert message.startswith(f"rejected the archive {os.path.basename(mine)!r}: "), message
            assert store_state(theirs.root) == before
        good = os.path.join(base, "good.tar")
        archive.export(source, good)
        os.chmod(good, 0o644)
        ok = cli(theirs.root, "store", "import", good, "--json", user=NOBODY)  # and a sound one imports
        assert ok.returncode == 0, ok.stderr
        assert {os.lstat(p).st_uid for p in _objects(theirs)} == {NOBODY}
    finally:
        shutil.rmtree(base, ignore_errors=True)
