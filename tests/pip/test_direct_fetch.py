"""writers/download.py: the wheels pip planned, downloaded by pip-omni itself from a loopback index.

The index is a PEP 503 simple index served by ``http.server`` on 127.0.0.1 in a thread.
``http://127.0.0.1`` goes direct: pip treats loopback as a secure origin without
``--trusted-host`` (so the plan came from it with no setting), and the bytes are checked
against pip's sha256 either way. Each file request is logged with its User-Agent, so a
test tells pip's requests from pip-omni's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import store_state
from simple_index import index, venv  # noqa: F401 (fixtures)
from wheelmaker import make_wheel

from omnipkg_pip.writers import download


def _pip_commands(venv) -> list[str]:
    logs = Path(venv.env["OMNIPKG_STORE"]) / "logs"
    return [p.read_text().splitlines()[0] for p in sorted(logs.glob("pip-*.log"))] if logs.is_dir() else []


def _wheel_runs(venv) -> list[str]:
    return [c for c in _pip_commands(venv) if " -m pip " in c and " wheel " in c]


def _dist_manifest(venv, name, version) -> dict:
    base = Path(venv.env["OMNIPKG_STORE"]) / "dists" / name / version / "py3-none-any"
    (path,) = [p for p in base.iterdir() if p.name.endswith(".json") and "pyc" not in p.name]
    return json.loads(path.read_text())


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("how", ["planned", "-i"])
def test_a_cold_bubble_is_downloaded_directly_with_no_pip_wheel_run(venv, index, how):
    a = index.add("omt-da", "1.0", {"omt_da/__init__.py": "X = 1\n"}, requires=["omt-db>=2"])
    b = index.add("omt-db", "2.0", {"omt_db/__init__.py": "Y = 2\n"})
    if how == "planned":  # main's omt-db 1.0 would change: pip's plan sends omt-da to a bubble
        old = make_wheel(index.root / "main", "omt-db", "1.0", {"omt_db/__init__.py": "Y = 1\n"})
        venv.pip("install", "-q", "--no-index", str(old))
        proc = venv.run("install", "-v", "omt-da==1.0", env={"PIP_INDEX_URL": f"{index.url}/simple"})
        assert "would change main: omt-db 1.0 -> 2.0" in proc.stdout
    else:  # the command names a source: pip is asked, its plan compared with the store
        proc = venv.run("install", "-v", "--bubble", "-i", f"{index.url}/simple", "omt-da==1.0")

    assert f"{a.name} downloaded directly from {index.url}/files/{a.name} (sha256 as planned)" in proc.stderr
    assert f"{b.name} downloaded directly" in proc.stderr
    assert _wheel_runs(venv) == [] and len(_pip_commands(venv)) == 1  # pip's one run: the resolve
    assert len(index.ours(a.name)) == 1 and len(index.ours(b.name)) == 1
    for path, name, version in ((a, "omt-da", "1.0"), (b, "omt-db", "2.0")):
        manifest = _dist_manifest(venv, name, version)
        assert manifest["wheel_sha256"] == _sha(path.read_bytes())
        assert manifest["origin"] == f"{index.url}/files/{path.name}"
    assert venv.run("python", "-c", "import omt_da, omt_db; print(omt_da.X, omt_db.Y)",
                    env={"OMNIPKG_PINS": "omt-da==1.0"}).stdout == "1 2\n"


def test_direct_fetch_off_fetches_through_pip_wheel(venv, index):
    a = index.add("omt-dc", "1.0", {"omt_dc/__init__.py": "X = 1\n"})

    proc = venv.run("install", "-v", "--bubble", "-i", f"{index.url}/simple", "omt-dc==1.0",
                    env={"OMNIPKG_DIRECT_FETCH": "0"})

    assert f"{a.name} through pip: OMNIPKG_DIRECT_FETCH=0" in proc.stderr
    assert len(_wheel_runs(venv)) == 1 and index.ours(a.name) == []
    assert _dist_manifest(venv, "omt-dc", "1.0")["wheel_sha256"] == _sha(a.read_bytes())


def test_other_bytes_than_pip_planned_are_refused_in_one_line_and_the_store_is_unchanged(venv, index, tmp_path):
    index.add("omt-dk", "1.0", {"omt_dk/__init__.py": "K = 1\n"})
    venv.run("install", "--bubble", "-i", f"{index.url}/simple", "omt-dk==1.0")  # a store with content
    a = index.add("omt-dd", "1.0", {"omt_dd/__init__.py": "X = 1\n"})
    other = make_wheel(tmp_path, "omt-dd", "1.0", {"omt_dd/__init__.py": "X = 'not what pip planned'\n"})
    index.swapped[a.name], index.mode[a.name] = other.read_bytes(), "swap"
    before = store_state(venv.env["OMNIPKG_STORE"])

    proc = venv.run("install", "--bubble", "-i", f"{index.url}/simple", "omt-dd==1.0", check=False)

    assert proc.returncode == 1
    url = f"{index.url}/files/{a.name}"
    assert (f"{a.name!r} from {url!r} has sha256 {_sha(other.read_bytes())}, "
            f"not the {_sha(a.read_bytes())} pip planned") in proc.stderr.splitlines()[-2]
    assert "nothing was stored" in proc.stderr.splitlines()[-1]
    assert _wheel_runs(venv) == []  # refused, not handed to pip to fetch again
    after = store_state(venv.env["OMNIPKG_STORE"])
    outside_tmp = lambda state: {k: v for k, v in state.items() if k.split("/")[0] != "tmp"}  # noqa: E731
    assert outside_tmp(after) == outside_tmp(before) and not [k for k in after if k.startswith("tmp/")]


@pytest.mark.parametrize("mode", ["401", "404", "cut", "gzip"])
def test_a_failed_direct_download_falls_back_to_pip_and_still_works(venv, index, mode):
    a = index.add("omt-de", "1.0", {"omt_de/__init__.py": "X = 1\n"}, requires=["omt-df"])
    b = index.add("omt-df", "1.0", {"omt_df/__init__.py": "Y = 1\n"})
    index.mode[a.name] = mode

    proc = venv.run("install", "-v", "--bubble", "-i", f"{index.url}/simple", "omt-de==1.0")

    why = {"401": "HTTP Error 401", "404": "HTTP Error 404", "cut": "short read", "gzip": "Content-Encoding 'gzip'"}[mode]
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith(f"pip-omni: {a.name} through pip"))
    assert "the direct download failed" in line and why in line
    assert f"{b.name} downloaded directly" in proc.stderr
    (run,) = _wheel_runs(venv)
    assert a.name in run and b.name not in run  # pip fetched only the file that failed
    assert _dist_manifest(venv, "omt-de", "1.0")["wheel_sha256"] == _sha(a.read_bytes())
    assert venv.run("python", "-c", "import omt_de; print(omt_de.X)", env={"OMNIPKG_PINS": "omt-de==1.0"}).stdout == "1\n"


def test_a_file_gone_after_the_plan_fails_as_pip_fails_and_the_store_is_unchanged(venv, index):
    a = index.add("omt-dg", "1.0", {"omt_dg/__init__.py": "X = 1\n"})
    index.mode[a.name] = "gone"

    proc = venv.run("install", "--bubble", "-i", f"{index.url}/simple", "omt-dg==1.0", check=False)

    assert proc.returncode == 1, proc.stderr
    error, hint = proc.stderr.splitlines()[-2:]
    assert error.startswith("pip-omni: error: pip could not fetch omt-dg==1.0: ") and "404" in error
    assert hint.startswith("  hint: full pip output: ")
    assert _wheel_runs(venv)  # pip was asked, and failed as pip fails
    assert not (Path(venv.env["OMNIPKG_STORE"]) / "dists").exists()


def test_a_pip_proxy_in_a_config_file_sends_the_files_through_pip(venv, index, tmp_path):
    a = index.add("omt-dh", "1.0", {"omt_dh/__init__.py": "X = 1\n"})
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nproxy = {index.url}\n")  # the index answers proxy requests too

    proc = venv.run("install", "-v", "--bubble", "-i", f"{index.url}/simple", "omt-dh==1.0",
                    env={"PIP_CONFIG_FILE": str(conf)})

    assert f"pip-omni: {a.name} through pip: pip's proxy is set ({conf})" in proc.stderr
    assert index.ours(a.name) == [] and len(_wheel_runs(venv)) == 1
    assert any(p.startswith("http://") for p, _ in index.log)  # pip went through the proxy
    assert _dist_manifest(venv, "omt-dh", "1.0")["wheel_sha256"] == _sha(a.read_bytes())


# pip_settings: what sends the files through pip, read as pip finds it (pip not run)

@pytest.fixture
def clean_pip_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("PIP_") or key == download.ENV_OFF:
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(download, "_config_files", _only_tmp(download._config_files, tmp_path))
    return tmp_path


def _only_tmp(real, tmp_path):
    # /etc/pip.conf is the machine's: left out so these cases do not depend on it
    return lambda prefixes: [f for f in real(prefixes) if f.startswith(str(tmp_path)) or f == os.environ.get("PIP_CONFIG_FILE")]


@pytest.mark.parametrize("env, blocked", [
    ({}, None),
    ({"PIP_CERT": "/etc/ca.pem"}, None),
    ({"PIP_PROXY": "http://proxy:3128"}, "pip's proxy is set (PIP_PROXY)"),
    ({"PIP_CLIENT_CERT": "/c.pem"}, "pip's client-cert is set (PIP_CLIENT_CERT)"),
    ({"PIP_TRUSTED_HOST": "example.org"}, "pip's trusted-host is set (PIP_TRUSTED_HOST)"),
    ({"PIP_KEYRING_PROVIDER": "subprocess"}, "pip's keyring-provider is set (PIP_KEYRING_PROVIDER)"),
    ({"PIP_KEYRING_PROVIDER": "disabled"}, None),
    ({"PIP_EXTRA_INDEX_URL": "https://u:secret@idx.example/simple"},
     "pip's extra-index-url carries credentials (PIP_EXTRA_INDEX_URL)"),
    ({"PIP_INDEX_URL": "https://idx.example/simple"}, None),
    ({"OMNIPKG_DIRECT_FETCH": "0"}, "OMNIPKG_DIRECT_FETCH=0"),
])
def test_pip_settings_in_the_environment(clean_pip_env, monkeypatch, env, blocked):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = download.pip_settings([], [])
    assert settings.blocked == blocked
    assert settings.cert == ("/etc/ca.pem" if "PIP_CERT" in env else None)


@pytest.mark.parametrize("argv, blocked, cert", [
    (["--proxy", "http://p:1"], "pip's proxy is set (the command line)", None),
    (["--trusted-host=h"], "pip's trusted-host is set (the command line)", None),
    (["-ihttps://u:p@h/simple"], "pip's index-url carries credentials (the command line)", None),
    (["-f", "https://u@h/links"], "pip's find-links carries credentials (the command line)", None),
    (["--cert", "/my/ca.pem", "--no-deps"], None, "/my/ca.pem"),
    (["-i", "https://h/simple", "--no-cache-dir"], None, None),
])
def test_pip_settings_on_the_command_line(clean_pip_env, argv, blocked, cert):
    settings = download.pip_settings(argv, [])
    assert (settings.blocked, settings.cert) == (blocked, cert)


def test_pip_settings_in_config_files(clean_pip_env, monkeypatch):
    tmp = clean_pip_env
    user = tmp / "xdg" / "pip" / "pip.conf"
    user.parent.mkdir(parents=True)
    user.write_text("[global]\ncert = /ca/bundle.pem\n[install]\ntimeout = 60\n")
    assert (download.pip_settings([], []).blocked, download.pip_settings([], []).cert) == (None, "/ca/bundle.pem")
    site = tmp / "venvprefix"
    site.mkdir()
    (site / "pip.conf").write_text("[wheel]\nTrusted_Host = h.example\n")  # pip's key spelling is loose
    assert download.pip_settings([], [str(site)]).blocked == f"pip's trusted-host is set ({site / 'pip.conf'})"
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # pip reads no config file at all
    assert download.pip_settings([], [str(site)]).blocked is None
    bad = tmp / "bad.conf"
    bad.write_text("no section header\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(bad))
    assert download.pip_settings([], []).blocked == f"pip's config file {str(bad)!r} cannot be read here (MissingSectionHeaderError)"
    monkeypatch.setenv("PIP_CERT", "/other.pem")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(user))
    assert download.pip_settings([], []).blocked == "pip's cert is set to several bundles"


@pytest.mark.parametrize("url, why", [
    ("https://files.example/p/omt-1.0-py3-none-any.whl", None),
    ("http://127.0.0.1:8080/f/omt-1.0-py3-none-any.whl", None),
    ("http://[::1]/f/omt-1.0-py3-none-any.whl", None),
    ("http://files.example/p/omt-1.0-py3-none-any.whl", "a http:// URL"),
    ("https://u:p@files.example/p/omt-1.0-py3-none-any.whl", "the URL carries credentials"),
    ("https://files.example/p/omt-1.0.tar.gz", "not a wheel: pip builds it"),
    ("https://files.example/p/omt%00-1.0-py3-none-any.whl", "not a wheel: pip builds it"),
])
def test_which_planned_files_go_direct(url, why):
    assert download.why_not(url, "a" * 64, url.endswith(".whl")) == why


@pytest.mark.network
def test_a_real_cold_bubble_of_rich_pip_planned_is_downloaded_directly(network_venv):
    venv = network_venv
    venv.env.pop(download.ENV_OFF, None)
    venv.pip("install", "-q", "pygments==2.12.0")  # rich 13.4.2 wants >= 2.13: pip's plan sends it to a bubble

    proc = venv.run("install", "-v", "rich==13.4.2")

    assert "would change main: pygments 2.12.0 -> " in proc.stdout
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("pip-omni: rich-13.4.2-py3-none-any.whl "))
    assert line.startswith("pip-omni: rich-13.4.2-py3-none-any.whl downloaded directly from https://"), line
    assert line.endswith("(sha256 as planned)")
    assert _wheel_runs(venv) == []
    out = venv.run("python", "-c", "import rich, importlib.metadata as m; print(m.version('rich'))",
                   env={"OMNIPKG_PINS": "rich==13.4.2"}).stdout
    assert out == "13.4.2\n"


@pytest.fixture
def tls_index(index, tmp_path):
    """``index`` served over https with a self-signed certificate for 127.0.0.1 (``openssl``)."""
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the https case needs it to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    index.server.socket = context.wrap_socket(index.server.socket, server_side=True)
    index.url = index.url.replace("http://", "https://")
    index.cert = cert
    return index


def test_pips_cert_is_the_bundle_the_direct_download_trusts(tls_index, tmp_path):
    a = tls_index.add("omt-di", "1.0", {"omt_di/__init__.py": "X = 1\n"})
    url, sha = f"{tls_index.url}/files/{a.name}", _sha(a.read_bytes())
    trusted, untrusted = tmp_path / "t" / a.name, tmp_path / "u" / a.name
    trusted.parent.mkdir()
    untrusted.parent.mkdir()

    # the system's CAs do not know this certificate; pip's cert (PIP_CERT...) names it
    results = {**download.download_all([(url, sha, str(trusted))], str(tls_index.cert)),
               **download.download_all([(url, sha, str(untrusted))], None)}

    assert results[str(trusted)] is None and trusted.read_bytes() == a.read_bytes()
    assert "CERTIFICATE_VERIFY_FAILED" in str(results[str(untrusted)]) and not untrusted.exists()
    assert not list(untrusted.parent.iterdir())  # no partial file left
