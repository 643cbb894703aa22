"""A loopback simple index for tests: PEP 503 HTML (and PEP 691 JSON when asked), on 127.0.0.1.

Served by ``http.server`` in a thread; ``http://127.0.0.1`` is a secure origin for pip
without ``--trusted-host``. Each request is logged with its User-Agent, so a test tells
pip's requests from pip-omni's. Fixtures: ``index`` (the server) and ``venv`` (``omni_venv``
whose pip may use an index).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
from wheelmaker import make_wheel

from omnipkg_hook.store import normalize
from omnipkg_pip.writers import download


class Index:
    """A loopback simple index. ``mode``: filename -> how pip-omni's own requests are served:
    ``"401"``/``"404"`` (an HTTP error), ``"cut"`` (half the body, then the connection closed),
    ``"swap"`` (other bytes than the first request got), ``"gzip"`` (compressed, though pip-omni
    asks for identity), ``"gone"`` (404 for everyone after the first).

    ``attrs``: filename -> extra ``<a>`` attributes (``data-requires-python``, ``data-yanked``...);
    ``listed_sha``: filename -> the sha256 the page gives instead of the file's; ``json``: answer
    PEP 691 JSON to a client that asks for it (pip does), with ``core-metadata`` for the files in
    ``metadata``; ``page``: project -> ``(bytes, content type)`` served as its page instead."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, bytes] = {}
        self.project: dict[str, str] = {}  # filename -> normalized project name
        self.swapped: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self.listed_sha: dict[str, str] = {}
        self.href: dict[str, str] = {}  # filename -> the href the page gives instead of ../../files/NAME
        self.metadata: dict[str, bytes] = {}
        self.page: dict[str, tuple[bytes, str]] = {}
        self.json = False
        self.log: list[tuple[str, str]] = []  # (path as sent, User-Agent)
        self.served: dict[str, int] = {}
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                agent = self.headers.get("User-Agent", "")
                index.log.append((self.path, agent))
                path = self.path.split("://", 1)[-1].split("/", 1)[-1] if "://" in self.path else self.path[1:]
                parts = path.split("?")[0].strip("/").split("/")
                if parts[0] == "simple" and len(parts) == 2:
                    if parts[1] in index.page:
                        body, ctype = index.page[parts[1]]
                        return self._send(200, body, ctype)
                    names = [f for f in index.files if index.project[f] == parts[1]]
                    if index.json and "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", ""):
                        return self._send(200, index._json(parts[1], names), "application/vnd.pypi.simple.v1+json")
                    return self._send(200, index._html(names), "text/html")
                if parts[0] == "files" and len(parts) == 2 and parts[1].endswith(".metadata"):
                    data = index.metadata.get(parts[1][: -len(".metadata")])
                    return self._send(200, data) if data is not None else self._send(404, b"not found")
                if parts[0] == "files" and len(parts) == 2 and parts[1] in index.files:
                    name = parts[1]
                    body = index.files[name]
                    count = index.served[name] = index.served.get(name, 0) + 1
                    mode = index.mode.get(name)
                    ours = agent.startswith("pip-omni")
                    if mode == "gone" and count > 1:
                        return self._send(404, b"gone")
                    if mode in ("401", "404") and ours:
                        return self._send(int(mode), b"no")
                    if mode == "swap" and count > 1:
                        body = index.swapped[name]
                    if mode == "gzip" and ours:  # not asked for (identity), sent anyway
                        import gzip

                        self.send_response(200)
                        self.send_header("Content-Encoding", "gzip")
                        data = gzip.compress(body)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return None
                    if mode == "cut" and ours:
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.send_header("Connection", "close")
                        self.end_headers()
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return None
                    return self._send(200, body, "application/octet-stream")
                return self._send(404, b"not found")

            def _send(self, code, body, ctype="text/plain"):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def sha(self, fname: str) -> str:
        return self.listed_sha.get(fname) or hashlib.sha256(self.files[fname]).hexdigest()

    def _html(self, names: list[str]) -> bytes:
        from html import escape

        links = ""
        for f in names:
            attrs = "".join(f' {k}="{escape(v)}"' for k, v in self.attrs.get(f, {}).items())
            href = self.href.get(f, f"../../files/{f}")
            links += f'<a href="{href}#sha256={self.sha(f)}"{attrs}>{f}</a>\n'
        return f"<html><body>\n{links}</body></html>".encode()

    def _json(self, project: str, names: list[str]) -> bytes:
        files = []
        for f in names:
            a = self.attrs.get(f, {})
            entry = {"filename": f, "url": self.href.get(f, f"../../files/{f}"), "hashes": {"sha256": self.sha(f)},
                     "requires-python": a.get("data-requires-python"), "yanked": "data-yanked" in a}
            if f in self.metadata:
                entry["core-metadata"] = {"sha256": hashlib.sha256(self.metadata[f]).hexdigest()}
            files.append(entry)
        return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": files}).encode()

    def add(self, name, version, files=None, **kw) -> Path:
        path = make_wheel(self.root, name, version, files, **kw)
        self.add_file(path.name, path.read_bytes(), name)
        return path

    def add_file(self, fname: str, data: bytes, project: str) -> None:
        self.files[fname] = data
        self.project[fname] = normalize(project)

    def ours(self, fname: str) -> list[str]:
        """The User-Agents of the requests pip-omni itself made for ``fname``."""
        return [a for p, a in self.log if p.endswith("/files/" + fname) and a.startswith("pip-omni")]


@pytest.fixture
def index(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    idx = Index(root)
    idx.thread.start()
    yield idx
    idx.server.shutdown()
    idx.server.server_close()
    idx.thread.join()


@pytest.fixture
def venv(omni_venv, tmp_path):
    """``omni_venv`` whose pip may use an index (no ``PIP_NO_INDEX``), no proxy, no pip cache."""
    omni_venv.env.pop("PIP_NO_INDEX", None)
    omni_venv.env.pop(download.ENV_OFF, None)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        omni_venv.env.pop(key, None)
    omni_venv.env.update({"PIP_NO_CACHE_DIR": "1",
                          "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")})
    return omni_venv
