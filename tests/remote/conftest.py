"""Fixtures of the remote-store tests: an S3-compatible server on loopback (moto's server mode),
a ``file://`` remote, and stores with overlapping bubbles built from wheels in ``tmp_path``.

The moto server runs in a thread of the test process on 127.0.0.1 and a port the OS picks;
it is stopped when the session ends. Credentials are fake and the AWS config files are
pointed at nothing, so no test reads the machine's AWS setup or reaches AWS.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid

import pytest

from omnipkg_hook.store import Store

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_MOTO = importlib.util.find_spec("moto") is not None and importlib.util.find_spec("boto3") is not None
needs_moto = pytest.mark.skipif(not HAVE_MOTO, reason="moto[server] and boto3 (the test extra) are not installed")

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="session")
def moto_endpoint():
    """``http://127.0.0.1:PORT`` of a moto S3 server for this session."""
    if not HAVE_MOTO:
        pytest.skip("moto[server] and boto3 (the test extra) are not installed")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_endpoint, monkeypatch) -> dict:
    env = {**FAKE_AWS, "AWS_ENDPOINT_URL": moto_endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    return env


def s3_client(endpoint: str):
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name="us-east-1").client("s3", endpoint_url=endpoint)


@pytest.fixture(params=["file", "s3"])
def remote(request, tmp_path) -> str:
    """A remote store URL, once as a folder and once as a bucket prefix on the moto server."""
    if request.param == "file":
        return f"file://{tmp_path / 'remote'}"
    if not HAVE_MOTO:
        pytest.skip("moto[server] and boto3 (the test extra) are not installed")
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("aws_env")
    bucket = "omt-" + uuid.uuid4().hex[:12]
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/ci/cache"


def remote_put(url: str, key: str, data: bytes | None) -> None:
    """Replace (or with ``None`` delete) ``key`` on the remote behind pip-omni's back."""
    if url.startswith("file://"):
        path = os.path.join(url[len("file://"):], *key.split("/"))
        os.chmod(path, 0o644)
        if data is None:
            os.unlink(path)
        else:
            with open(path, "wb") as f:
                f.write(data)
        return
    bucket, prefix = url[len("s3://"):].split("/", 1)
    client = s3_client(os.environ["AWS_ENDPOINT_URL"])
    if data is None:
        client.delete_object(Bucket=bucket, Key=f"{prefix}/{key}")
    else:
        client.put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)


def lib_files(version: str) -> dict:
    return {"omt_lib/__init__.py": f"VERSION = {version!r}\n", "omt_lib/lazy.py": "WHO = 'lazy'\n"}


def app_files(name: str, version: str) -> dict:
    mod = name.replace("-", "_")
    return {f"{mod}/__init__.py": f"VERSION = {version!r}\nimport omt_lib\n",
            f"{mod}/sub.py": f"WHO = '{name} {version} sub'\n", f"{mod}/data.txt": f"{name} " * 50}


THREE = ("omt-app==1.0", "omt-tool==1.0", "omt-cli==1.0")


@pytest.fixture
def wheels(wheel) -> dict:
    """Wheels of three apps (``omt-cli`` has a console script) sharing ``omt-lib``."""
    out = {"omt-lib": wheel("omt-lib", "1.0", lib_files("1.0"))}
    for name in ("omt-app", "omt-tool", "omt-cli"):
        extra = {"entry_points": {"console_scripts": {"omt-cli": "omt_cli.sub:main"}}} if name == "omt-cli" else {}
        files = app_files(name, "1.0")
        if name == "omt-cli":
            files["omt_cli/sub.py"] += "def main():\n    print('omt-cli ran')\n"
        out[name] = wheel(name, "1.0", files, requires=["omt-lib>=1"], **extra)
    return out


def build(store: Store, wheels: dict, names=("omt-app", "omt-tool", "omt-cli")) -> Store:
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    for name in names:
        bubble_from_wheels(store, [wheels[name], wheels["omt-lib"]], f"{name}==1.0")
    return store


@pytest.fixture
def stored(store, wheels) -> Store:
    """The test's store with the three bubbles."""
    return build(store, wheels)


def child_env(root: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH", "OMNIPKG_REMOTE")}
    env["OMNIPKG_STORE"] = root
    env.update(extra)
    return env


def pip_omni(root: str, *args, check=None, timeout=300, cwd=None, **extra) -> subprocess.CompletedProcess:
    """``python -m omnipkg_pip args`` with the store at ``root`` (``extra``: environment)."""
    proc = subprocess.run([sys.executable, "-m", "omnipkg_pip", *args], capture_output=True, text=True,
                          env=child_env(root, **extra), timeout=timeout, cwd=cwd)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


IMPORT_CHECK = r"""
import sys, importlib, omnipkg_hook
for req in sys.argv[1:]:
    name, version = req.split("==")
    mod = name.replace("-", "_")
    omnipkg_hook.pin(req, replace=True)
    m = importlib.import_module(mod)
    assert m.VERSION == version, (m.VERSION, version)
    assert importlib.import_module(mod + ".sub").WHO == f"{name} {version} sub"
    import omt_lib.lazy
print("ok")
"""


def imports_ok(root: str, *reqs: str) -> None:
    """Pin each requirement in a fresh interpreter and import its package and a submodule."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK, *reqs], capture_output=True, text=True,
                          env=child_env(root), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
