"""writers/indexplan.py: a cold bubble resolved from the index without pip, exactly as pip would.

Every parity case runs ``pip-omni install --bubble`` against a loopback simple index and
compares the bubble's (name, version, URL) set with what ``pip install --dry-run
--ignore-installed --report`` says for the same requirement in the same venv; pip must
not have run for the bubble (pip-omni logs every pip run in the store's ``logs``).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import store_state
from simple_index import index, venv  # noqa: F401 (fixtures)
from wheelmaker import make_wheel

PY = f"py{sys.version_info[0]}{sys.version_info[1]}"


def _pip_commands(venv) -> list[str]:
    logs = Path(venv.env["OMNIPKG_STORE"]) / "logs"
    return [p.read_text().splitlines()[0] for p in sorted(logs.glob("pip-*.log"))] if logs.is_dir() else []


def _env(index, **extra) -> dict:
    return {"PIP_INDEX_URL": f"{index.url}/simple", **extra}


def _pip_report(venv, index, req: str, *extra) -> set:
    proc = venv.pip("install", "-q", "--dry-run", "--ignore-installed", "--report", "-", *extra, req,
                    env=_env(index))
    return {(e["metadata"]["name"].lower().replace("_", "-"), e["metadata"]["version"], e["download_info"]["url"])
            for e in json.loads(proc.stdout)["install"]}


def _bubble_set(venv, name: str) -> set:
    store = Path(venv.env["OMNIPKG_STORE"])
    (manifest,) = (store / "bubbles" / name).glob("*/*.json")
    out = set()
    for dep, entry in json.loads(manifest.read_text())["dists"].items():
        base = store / entry["path"]
        (dist,) = [p for p in base.iterdir() if p.name.endswith(".json") and "pyc" not in p.name]
        out.add((dep, entry["version"], json.loads(dist.read_text()).get("origin")))
    return out


def _install(venv, index, req: str, *extra, env=None, check=True):
    return venv.run("install", "-v", "--bubble", *extra, req, env=_env(index, **(env or {})), check=check)


def _assert_without_pip(venv, index, req: str, root: str, proc, *pip_extra) -> set:
    assert "from the index without pip" in proc.stderr, proc.stderr
    assert _pip_commands(venv) == []  # no pip run at all for the bubble
    got = _bubble_set(venv, root)
    assert got == _pip_report(venv, index, req, *pip_extra)
    return got


def test_transitive_dependencies_are_pips_choice(venv, index):
    index.add("omt-ta", "1.0", requires=["omt-tb>=1"])
    index.add("omt-ta", "1.1", requires=["omt-tb>=1,<3", "omt-tc"])
    for v in ("1.0", "2.0", "3.0"):
        index.add("omt-tb", v, requires=["omt-tc>=1.5"])
    index.add("omt-tc", "1.0")
    index.add("omt-tc", "2.0")

    proc = _install(venv, index, "omt-ta")

    got = _assert_without_pip(venv, index, "omt-ta", "omt-ta", proc)
    assert {(n, v) for n, v, _u in got} == {("omt-ta", "1.1"), ("omt-tb", "2.0"), ("omt-tc", "2.0")}
    assert venv.run("python", "-c", "import omt_ta, omt_tb; print(omt_tb.__version__)",
                    env={"OMNIPKG_PINS": "omt-ta==1.1"}).stdout == "2.0\n"


def test_markers_python_version_and_sys_platform(venv, index):
    index.add("omt-ma", "1.0", requires=['omt-mb; python_version < "3"', f'omt-mc; sys_platform == "{sys.platform}"',
                                         'omt-md; sys_platform == "no-such-os"', 'omt-me; python_version >= "3.9"'])
    for n in ("omt-mb", "omt-mc", "omt-md", "omt-me"):
        index.add(n, "1.0")

    proc = _install(venv, index, "omt-ma==1.0")

    got = _assert_without_pip(venv, index, "omt-ma==1.0", "omt-ma", proc)
    assert {n for n, _v, _u in got} == {"omt-ma", "omt-mc", "omt-me"}


def test_extras_on_the_root_and_on_a_dependency(venv, index):
    index.add("omt-xa", "1.0", requires=["omt-xb[fast]"], extras={"cli": ["omt-xc>=2"]})
    index.add("omt-xb", "1.0", extras={"fast": ["omt-xd"], "slow": ["omt-xe"]})
    for n in ("omt-xc", "omt-xd", "omt-xe"):
        index.add(n, "1.0")
    index.add("omt-xc", "2.0")

    proc = _install(venv, index, "omt-xa[cli]==1.0")

    got = _assert_without_pip(venv, index, "omt-xa[cli]==1.0", "omt-xa", proc)
    assert {(n, v) for n, v, _u in got} == {("omt-xa", "1.0"), ("omt-xb", "1.0"), ("omt-xc", "2.0"), ("omt-xd", "1.0")}


def test_requires_python_excluding_the_newest(venv, index):
    index.add("omt-ra", "1.0")
    new = index.add("omt-ra", "2.0")
    index.attrs[new.name] = {"data-requires-python": ">=3.99"}

    proc = _install(venv, index, "omt-ra")

    assert {v for _n, v, _u in _assert_without_pip(venv, index, "omt-ra", "omt-ra", proc)} == {"1.0"}


@pytest.mark.parametrize("req, want", [("omt-ya", "1.0"), ("omt-ya==2.0", "2.0")])
def test_a_yanked_newest_is_used_only_when_pinned(venv, index, req, want):
    index.add("omt-ya", "1.0")
    new = index.add("omt-ya", "2.0")
    index.attrs[new.name] = {"data-yanked": "broken"}

    proc = _install(venv, index, req)

    assert {v for _n, v, _u in _assert_without_pip(venv, index, req, "omt-ya", proc)} == {want}


@pytest.mark.parametrize("versions, want", [(["1.0rc1"], "1.0rc1"), (["1.0", "2.0b1"], "1.0")])
def test_pre_releases_only_when_no_final_fits(venv, index, versions, want):
    for v in versions:
        index.add("omt-pa", v)

    proc = _install(venv, index, "omt-pa")

    assert {v for _n, v, _u in _assert_without_pip(venv, index, "omt-pa", "omt-pa", proc)} == {want}


def test_pre_on_the_command_line_takes_the_pre_release(venv, index):
    index.add("omt-pb", "1.0")
    index.add("omt-pb", "2.0b1")

    proc = _install(venv, index, "omt-pb", "--pre")

    assert {v for _n, v, _u in _assert_without_pip(venv, index, "omt-pb", "omt-pb", proc, "--pre")} == {"2.0b1"}


def test_the_best_tag_of_several_wheels_of_one_version(venv, index):
    index.add("omt-wa", "1.0", tag="py3-none-any")
    best = index.add("omt-wa", "1.0", tag=f"{PY}-none-any")
    index.add("omt-wa", "2.0", tag="py2-none-any")  # newer, but not for this Python

    proc = _install(venv, index, "omt-wa")

    got = _assert_without_pip(venv, index, "omt-wa", "omt-wa", proc)
    assert {u.rsplit("/", 1)[-1] for _n, _v, u in got} == {best.name}


def test_pep_691_json_with_pep_658_metadata_downloads_only_the_picked_wheels(venv, index):
    a = index.add("omt-ja", "1.0", requires=["omt-jb"])
    b = index.add("omt-jb", "1.0")
    index.json = True
    for w in (a, b):
        with zipfile.ZipFile(w) as z:
            index.metadata[w.name] = z.read(next(n for n in z.namelist() if n.endswith("METADATA")))

    proc = _install(venv, index, "omt-ja")

    _assert_without_pip(venv, index, "omt-ja", "omt-ja", proc)
    assert any(p.endswith(a.name + ".metadata") and ua.startswith("pip-omni") for p, ua in index.log)
    assert len(index.ours(a.name)) == 1 and len(index.ours(b.name)) == 1  # each wheel once, for the bubble


def test_a_wheel_read_for_its_requirements_is_not_downloaded_twice(venv, index):
    a = index.add("omt-da2", "1.0", requires=["omt-db2"])
    b = index.add("omt-db2", "1.0")

    _install(venv, index, "omt-da2")

    assert len(index.ours(a.name)) == 1 and len(index.ours(b.name)) == 1
    assert not [p for p, ua in index.log if p.endswith((a.name, b.name)) and not ua.startswith("pip-omni")]


# Fallback: pip resolves, and the bubble is pip's


def _sdist(name: str, version: str) -> bytes:
    """An sdist pip can build with no index: an in-tree PEP 517 backend that writes the wheel."""
    dist = name.replace("-", "_")
    backend = f'''
import base64, hashlib, os, zipfile
def _meta():
    return "Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
def get_requires_for_build_wheel(config_settings=None):
    return []
def prepare_metadata_for_build_wheel(d, config_settings=None):
    info = os.path.join(d, "{dist}-{version}.dist-info")
    os.makedirs(info)
    open(os.path.join(info, "METADATA"), "w").write(_meta())
    return "{dist}-{version}.dist-info"
def build_wheel(d, config_settings=None, metadata_directory=None):
    fname = "{dist}-{version}-py3-none-any.whl"
    files = {{"{dist}/__init__.py": "BUILT = True\\n", "{dist}-{version}.dist-info/METADATA": _meta(),
             "{dist}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}}
    record = []
    with zipfile.ZipFile(os.path.join(d, fname), "w") as z:
        for p, c in files.items():
            z.writestr(p, c)
            h = base64.urlsafe_b64encode(hashlib.sha256(c.encode()).digest()).rstrip(b"=").decode()
            record.append(f"{{p}},sha256={{h}},{{len(c)}}")
        record.append("{dist}-{version}.dist-info/RECORD,,")
        z.writestr("{dist}-{version}.dist-info/RECORD", "\\n".join(record) + "\\n")
    return fname
'''
    members = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": backend,
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p, c in members.items():
            data = c.encode()
            info = tarfile.TarInfo(f"{dist}-{version}/{p}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _assert_through_pip(venv, index, req, root, proc, why, *pip_extra, extra_env=None):
    assert "from the index without pip" not in proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if " through pip: " in ln and "resolving" in ln)
    assert why in line, line
    assert [c for c in _pip_commands(venv) if " wheel " in c]  # pip resolved the bubble
    got = {(n, v) for n, v, _u in _bubble_set(venv, root)}
    want = {(n, v) for n, v, _u in _pip_report(venv, index, req, *pip_extra)}
    assert got == want
    return got


@pytest.mark.parametrize("first, then, why", [
    # the greedy walk meets omt-cd's bare requirement first, takes 2.0, then "<2": a conflict
    ("omt-cd", "omt-cd<2", "pip backtracks"),
    # the greedy walk gets 1.0 with no conflict, but pip's resolver may pin omt-cd for the bare
    # requirement first (2.0) and backtrack: which it ends with is its order's business
    ("omt-cd<2", "omt-cd", "alone allows 'omt_cd-2.0-py3-none-any.whl'"),
])
def test_a_dependency_another_requirement_holds_back_goes_to_pip(venv, index, first, then, why):
    index.add("omt-ca", "1.0", requires=["omt-cb", "omt-cc"])
    index.add("omt-cb", "1.0", requires=[first])
    index.add("omt-cc", "1.0", requires=[then])
    index.add("omt-cd", "1.0")
    index.add("omt-cd", "2.0")

    proc = _install(venv, index, "omt-ca")

    got = _assert_through_pip(venv, index, "omt-ca", "omt-ca", proc, why)
    assert ("omt-cd", "1.0") in got


def test_an_sdist_only_newest_version_goes_to_pip_which_builds_it(venv, index):
    index.add("omt-sa", "1.0")
    index.add_file("omt_sa-2.0.tar.gz", _sdist("omt-sa", "2.0"), "omt-sa")

    proc = _install(venv, index, "omt-sa")

    got = _assert_through_pip(venv, index, "omt-sa", "omt-sa", proc, "is an sdist")
    assert got == {("omt-sa", "2.0")}


def test_another_remote_extra_index_goes_to_pip(venv, index, tmp_path):
    """(Local extra indexes and --find-links folders are merged: test_index_plan_sources.py.)"""
    index.add("omt-ea", "1.0")
    proc = _install(venv, index, "omt-ea", env={"PIP_EXTRA_INDEX_URL": f"{index.url}/other"})
    _assert_through_pip(venv, index, "omt-ea", "omt-ea", proc, "pip's extra-index-url")


def test_a_local_find_links_folder_without_the_project_adds_nothing(venv, index, tmp_path):
    links = tmp_path / "links"
    make_wheel(links, "omt-other", "1.0")
    index.add("omt-fa", "1.0")

    proc = _install(venv, index, "omt-fa", env={"PIP_FIND_LINKS": str(links)})

    _assert_without_pip(venv, index, "omt-fa", "omt-fa", proc, "-f", str(links))


def test_a_proxy_in_pip_config_or_the_knob_off_goes_to_pip(venv, index, tmp_path):
    index.add("omt-ka", "1.0")
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nproxy = {index.url}\n")
    proc = _install(venv, index, "omt-ka", env={"PIP_CONFIG_FILE": str(conf)})
    _assert_through_pip(venv, index, "omt-ka", "omt-ka", proc, f"pip's proxy is set ({conf})")

    index.add("omt-kb", "1.0")
    proc = _install(venv, index, "omt-kb", env={"OMNIPKG_INDEX_PLAN": "off"})
    _assert_through_pip(venv, index, "omt-kb", "omt-kb", proc, "OMNIPKG_INDEX_PLAN=off")


# Hostile input: one clear line, or pip, and the store as it was


def _outside_tmp(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.split("/")[0] != "tmp"}


@pytest.fixture
def stored(venv, index):
    """A store with content, and its state."""
    index.add("omt-hk", "1.0")
    _install(venv, index, "omt-hk")
    return lambda: _outside_tmp(store_state(venv.env["OMNIPKG_STORE"]))


@pytest.mark.parametrize("page", ["text", "huge", "traversal"])
def test_a_page_pip_omni_cannot_use_goes_to_pip(venv, index, stored, page):
    w = index.add("omt-hp", "1.0")
    if page == "text":
        index.page["omt-hp"] = (b"omt_hp-1.0-py3-none-any.whl\n", "text/plain")
    elif page == "huge":
        from omnipkg_pip.writers import indexplan

        links = index._html([w.name])
        index.page["omt-hp"] = (links + b" " * (indexplan.MAX_PAGE + 1 - len(links)), "text/html")
    else:
        index.href[w.name] = f"../../files/..%2F..%2F{w.name}"
    before = stored()

    proc = _install(venv, index, "omt-hp", check=False)

    why = {"text": "is 'text/plain', neither PEP 691 JSON nor PEP 503 HTML", "huge": "over pip-omni's",
           "traversal": "is not a plain file name"}[page]
    line = next(ln for ln in proc.stderr.splitlines() if "resolving omt-hp through pip" in ln)
    assert why in line, line
    assert [c for c in _pip_commands(venv) if " wheel " in c and "omt-hp" in c]  # pip was asked
    if page == "huge":  # pip reads it and makes the bubble
        assert proc.returncode == 0 and {n for n, _v, _u in _bubble_set(venv, "omt-hp")} == {"omt-hp"}
    else:  # pip finds nothing it can use either, and says so
        assert proc.returncode == 1 and "pip could not fetch omt-hp" in proc.stderr
        assert stored() == before


def test_a_wheel_with_other_bytes_than_the_page_lists_is_refused(venv, index, stored):
    w = index.add("omt-hs", "1.0")
    index.listed_sha[w.name] = "0" * 64
    before = stored()

    proc = _install(venv, index, "omt-hs", check=False)

    assert proc.returncode == 1
    error = proc.stderr.splitlines()[-2]
    got = hashlib.sha256(w.read_bytes()).hexdigest()
    assert error == (f"pip-omni: error: {w.name!r} from '{index.url}/files/{w.name}' has sha256 {got}, "
                     f"not the {'0' * 64} its index page gives"), error
    assert _pip_commands(venv) == [] and stored() == before


def test_metadata_naming_another_project_is_refused(venv, index, stored):
    w = index.add("omt-hm", "1.0", metadata_name="omt-other")
    before = stored()

    proc = _install(venv, index, "omt-hm", check=False)

    assert proc.returncode == 1
    error = proc.stderr.splitlines()[-2]
    assert error.startswith(f"pip-omni: error: {w.name!r} from ") and "'omt-other' '1.0' in its METADATA" in error
    assert _pip_commands(venv) == [] and stored() == before


def test_a_zip_without_metadata_goes_to_pip(venv, index, stored):
    w = index.add("omt-hz", "1.0")
    buf = io.BytesIO()
    with zipfile.ZipFile(w) as src, zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            if not info.filename.endswith("METADATA"):
                dst.writestr(info, src.read(info))
    index.files[w.name] = buf.getvalue()
    before = stored()

    proc = _install(venv, index, "omt-hz", check=False)

    line = next(ln for ln in proc.stderr.splitlines() if "resolving omt-hz through pip" in ln)
    assert "has 0 .dist-info/METADATA" in line
    assert proc.returncode == 1 and stored() == before  # pip refuses it too


@pytest.mark.network
def test_real_rich_resolved_from_the_index_is_pips_choice(network_venv):
    venv = network_venv
    venv.env["PIP_CONFIG_FILE"] = "/dev/null"  # this machine's local mirrors would send it to pip
    for key in [k for k in venv.env if k.startswith("PIP_") and k != "PIP_CONFIG_FILE"]:
        venv.env.pop(key)

    proc = venv.run("install", "-v", "--bubble", "rich==13.4.2")

    assert "resolved rich==13.4.2 from the index without pip" in proc.stderr, proc.stderr
    assert _pip_commands(venv) == []
    report = venv.pip("install", "-q", "--dry-run", "--ignore-installed", "--report", "-", "rich==13.4.2")
    want = {(e["metadata"]["name"].lower(), e["metadata"]["version"], e["download_info"]["url"])
            for e in json.loads(report.stdout)["install"]}
    assert _bubble_set(venv, "rich") == want
    out = venv.run("python", "-c", "import rich, importlib.metadata as m; print(m.version('rich'))",
                   env={"OMNIPKG_PINS": "rich==13.4.2"}).stdout
    assert out == "13.4.2\n"


@pytest.mark.parametrize("common, found, why", [
    ([], [], None),
    (["--pre", "--no-cache-dir", "--timeout", "5", "-ihttps://h.example/simple"], [], None),
    (["-c", "c.txt"], [], "pip's -c on the command line"),
    (["--no-deps"], [], "pip's --no-deps on the command line"),
    (["--only-binary", ":all:"], [], "pip's --only-binary on the command line"),
    (["--require-hashes"], [], "pip's --require-hashes on the command line"),
    ([], [("PIP_NO_INDEX", "no-index", "1", "")], "pip's no-index is set (PIP_NO_INDEX)"),
    ([], [("PIP_PREFER_BINARY", "prefer-binary", "1", "")], "pip's prefer-binary is set (PIP_PREFER_BINARY)"),
    ([], [("/etc/pip.conf", "extra-index-url", "https://other.example/simple", "global")],
     "pip's extra-index-url 'https://other.example/simple' is another source (/etc/pip.conf)"),
    ([], [("PIP_FIND_LINKS", "find-links", "/some/dir file:///other/dir", "")], None),
    ([], [("PIP_CERT", "cert", "/ca.pem", ""), ("PIP_DEFAULT_TIMEOUT", "default-timeout", "60", "")], None),
])
def test_which_settings_the_index_plan_mirrors(common, found, why):
    from omnipkg_pip.writers import download, indexplan

    srcs, got, pre = indexplan.sources(download.Settings(None, None, found, "https://pypi.org/simple/"), common)
    assert got == why
    assert (srcs is None) == (why is not None)
    assert pre == ("--pre" in common)


def test_the_index_url_pip_would_use(monkeypatch, tmp_path):
    from omnipkg_pip.writers import download

    for key in [k for k in __import__("os").environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setattr(download, "_config_files", lambda prefixes: [str(tmp_path / "a.conf"), str(tmp_path / "b.conf")])
    assert download.pip_settings([], []).index_url == "https://pypi.org/simple/"
    (tmp_path / "a.conf").write_text("[global]\nindex-url = https://a.example/simple\n")
    assert download.pip_settings([], []).index_url == "https://a.example/simple"
    (tmp_path / "b.conf").write_text("[wheel]\nindex-url = https://b-wheel.example/simple\n"
                                     "[global]\nindex-url = https://b.example/simple\n")
    assert download.pip_settings([], []).index_url == "https://b-wheel.example/simple"  # pip wheel's section
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    assert download.pip_settings([], []).index_url == "https://env.example/simple"
    assert download.pip_settings(["-i", "https://cli.example/simple"], []).index_url == "https://cli.example/simple"
