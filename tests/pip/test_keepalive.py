"""writers/download.py: connections kept alive within one command (``download.connections``).

Loopback servers started here count the TCP connections they accept: the pages and files
of a plan go over one connection, not one each; redirects are followed as urllib follows
them; a kept connection the server has closed is sent again once, on a new connection; a
server that keeps failing gives the error urlopen gives; a proxy sends every request through
urlopen, as before.
"""

from __future__ import annotations

import hashlib
import http.server
import ssl
import threading
import urllib.error
import urllib.request

import pytest
from simple_index import index, venv  # noqa: F401 (fixtures)

from omnipkg_pip.writers import download, indexplan

HEADERS = {"User-Agent": "pip-omni-test", "Accept-Encoding": "identity"}
CONTEXT = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # as the command's: urlopen builds its opener (and reads proxies) each time


def _count_connections(server) -> list:
    """Make ``server`` log each connection it accepts; the list it appends to."""
    accepted: list = []
    get_request = server.get_request

    def counting():
        conn, addr = get_request()
        accepted.append(addr)
        return conn, addr

    server.get_request = counting
    return accepted


class Server:
    """A loopback HTTP/1.1 server: ``routes[path] = (status, headers, body)``; ``close_after``:
    close each connection after one response without saying so; ``hang_up``: close every
    connection as soon as a request arrives, with no response."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.close_after = self.hang_up = False
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.paths.append(self.path)
                if outer.hang_up:
                    self.close_connection = True
                    return
                status, headers, body = outer.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                if outer.close_after:  # no "Connection: close": the client believes it is kept
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.accepted = _count_connections(self.server)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def servers():
    made: list[Server] = []

    def make() -> Server:
        s = Server()
        s.thread.start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.server.shutdown()
        s.server.server_close()
        s.thread.join()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "no_proxy",
                "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(key, raising=False)


def _get(url: str) -> tuple[bytes, str]:
    with download.open_url(url, HEADERS, CONTEXT) as resp:
        return resp.read(), resp.geturl()


def test_the_pages_and_files_of_one_plan_go_over_one_connection(venv, index):
    accepted = _count_connections(index.server)
    index.add("omt-ka", "1.0", requires=["omt-kb"])
    index.add("omt-kb", "1.0", requires=["omt-kc"])
    index.add("omt-kc", "1.0")

    proc = venv.run("install", "-v", "--bubble", "omt-ka", env={"PIP_INDEX_URL": f"{index.url}/simple"})

    assert "from the index without pip" in proc.stderr, proc.stderr
    ours = [p for p, ua in index.log if ua.startswith("pip-omni")]
    assert len(ours) == 6, ours  # three pages, three wheels read for their requirements
    assert len(accepted) == 1, accepted  # urlopen: one connection per request


def test_several_files_in_a_scope_share_a_connection_and_each_is_read_whole(servers, tmp_path):
    s = servers()
    blobs = {f"/f/{i}.whl": bytes([i]) * (100_000 + i) for i in range(3)}
    for path, body in blobs.items():
        s.routes[path] = (200, {}, body)
    # refused before its body is read; a connection used again unread would take its body for the next response
    s.routes["/f/z.whl"] = (200, {"Content-Encoding": "gzip"}, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwrong")

    with download.connections():
        results = {}
        for path in [*blobs, "/f/z.whl", *blobs]:
            dest = str(tmp_path / f"{len(results)}.whl")
            sha = hashlib.sha256(blobs.get(path, b"")).hexdigest()
            results[dest] = (path, download.download_all([(s.url(path), sha, dest)], None)[dest])

    assert [type(e).__name__ if e else None for _p, e in results.values()] == [None] * 3 + ["OSError"] + [None] * 3
    for dest, (path, _e) in results.items():
        if path in blobs:
            assert open(dest, "rb").read() == blobs[path]
    # the one refused before its body was read is closed, not used again: a second connection
    assert len(s.accepted) == 2 and len(s.paths) == 7


def test_a_redirect_to_another_host_is_followed_and_its_url_is_the_pages_base(servers):
    a, b = servers(), servers()
    page = b'<html><body><a href="../../files/omt_r-1.0-py3-none-any.whl#sha256=' + b"0" * 64 + b'">x</a></body></html>'
    b.routes["/mirror/omt-r/"] = (200, {"Content-Type": "text/html"}, page)
    a.routes["/simple/omt-r/"] = (302, {"Location": "/moved/omt-r/"}, b"see there")  # relative: same host
    a.routes["/moved/omt-r/"] = (301, {"Location": b.url("/mirror/omt-r/", host="localhost")}, b"")

    with download.connections():
        with download.open_url(a.url("/simple/omt-r/"), HEADERS, CONTEXT) as resp:
            body, final, ctype = resp.read(), resp.geturl(), resp.headers["Content-Type"]
        again, _ = _get(b.url("/mirror/omt-r/", host="localhost"))

    assert final == b.url("/mirror/omt-r/", host="localhost") and body == page == again
    (entry,) = indexplan.parse_page(body, ctype, final)
    assert entry["url"] == b.url("/files/omt_r-1.0-py3-none-any.whl", host="localhost")
    assert a.paths == ["/simple/omt-r/", "/moved/omt-r/"] and len(a.accepted) == 1  # both hops, one connection
    assert len(b.accepted) == 1 and len(b.paths) == 2


def test_too_many_redirects_and_a_bad_scheme_are_urllibs_errors(servers):
    s = servers()
    s.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    s.routes["/file"] = (302, {"Location": "file:///etc/passwd"}, b"")
    with download.connections():
        for path in ("/loop", "/file"):
            with pytest.raises(urllib.error.HTTPError) as ours:
                _get(s.url(path))
            with pytest.raises(urllib.error.HTTPError) as theirs:
                urllib.request.urlopen(s.url(path), timeout=5, context=CONTEXT)
            assert str(ours.value) == str(theirs.value)


def test_a_kept_connection_the_server_closed_is_sent_again_once(servers):
    s = servers()
    s.routes["/p/"] = (200, {}, b"page")
    s.close_after = True

    with download.connections():
        got = [_get(s.url("/p/"))[0] for _ in range(3)]

    assert got == [b"page"] * 3
    assert len(s.accepted) == 3  # each request after the first: the kept one fails, a new one works


def test_a_server_that_keeps_failing_gives_the_error_urlopen_gives(servers):
    s = servers()
    s.routes["/p/"] = (200, {}, b"page")
    with download.connections():
        assert _get(s.url("/p/"))[0] == b"page"
        s.hang_up = True
        with pytest.raises(OSError) as ours:
            _get(s.url("/p/"))
    assert len(s.accepted) == 2  # the kept connection, then one new one: no more retries
    with pytest.raises(OSError) as theirs:
        urllib.request.urlopen(s.url("/p/"), timeout=5, context=CONTEXT)
    assert str(ours.value) == str(theirs.value) == "Remote end closed connection without response"

    s.hang_up = False
    with download.connections():
        with pytest.raises(urllib.error.HTTPError) as missing:
            _get(s.url("/nothing"))
        assert _get(s.url("/p/"))[0] == b"page"  # the 404's body was read: its connection is used again
    assert str(missing.value) == "HTTP Error 404: Not Found"
    assert len(s.accepted) == 4  # the urlopen one, then one for both requests


def test_a_refused_connection_is_urlopens_error():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/p/"
    with download.connections():
        with pytest.raises(urllib.error.URLError) as ours:
            _get(url)
    with pytest.raises(urllib.error.URLError) as theirs:
        urllib.request.urlopen(url, timeout=5, context=CONTEXT)
    assert str(ours.value) == str(theirs.value)


def test_a_proxy_sends_every_request_through_urlopen(servers, monkeypatch):
    proxy = servers()
    proxy.routes["http://omt-nowhere.invalid/p/"] = (200, {}, b"through the proxy")
    monkeypatch.setenv("http_proxy", proxy.url(""))

    with download.connections():
        body, _final = _get("http://omt-nowhere.invalid/p/")

    assert body == b"through the proxy" and proxy.paths == ["http://omt-nowhere.invalid/p/"]


def test_no_proxy_for_the_host_keeps_the_connection(servers, monkeypatch):
    s = servers()
    s.routes["/p/"] = (200, {}, b"page")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "127.0.0.1")

    with download.connections():
        got = [_get(s.url("/p/"))[0] for _ in range(2)]

    assert got == [b"page"] * 2 and len(s.accepted) == 1


def test_the_connections_are_closed_when_the_scope_ends(servers):
    s = servers()
    s.routes["/p/"] = (200, {}, b"page")
    with download.connections():
        with download.connections():  # nested: the outer one's
            _get(s.url("/p/"))
        pool = download._POOL
        assert pool is not None and sum(map(len, pool.idle.values())) == 1
    assert download._POOL is None and pool.closed and not pool.idle
    _get(s.url("/p/"))  # no scope: urlopen, a connection of its own
    assert len(s.accepted) == 2


@pytest.fixture
def quiet_pip(monkeypatch, tmp_path):
    """No pip settings but what the test sets."""
    import os

    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setattr(download, "_EARLY", None)


def test_warm_makes_the_context_in_a_thread_and_the_command_takes_it(quiet_pip, monkeypatch, tmp_path):
    made = []
    real = download._new_context

    def recording(cert):
        made.append((cert, threading.current_thread().name))
        return real(cert)

    monkeypatch.setattr(download, "_new_context", recording)
    cas = tmp_path / "cas"  # pip's cert, a directory of CAs (an empty one is loaded as fast)
    cas.mkdir()
    monkeypatch.setenv("PIP_CERT", str(cas))

    with download.sharing():
        first = download._context(str(cas))
        assert download._context(str(cas)) is first
        other = download._context(None)  # another bundle than warm() guessed: made here
    assert made == [(str(cas), "pip-omni-tls"), (None, threading.current_thread().name)]
    assert other is not first and download._EARLY is None


@pytest.mark.parametrize("env", [{"PIP_NO_INDEX": "1"}, {"PIP_PROXY": "http://127.0.0.1:9"},
                                 {download.ENV_OFF: "0"}])
def test_warm_makes_nothing_for_a_command_that_will_not_fetch(quiet_pip, monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    download.warm()
    assert download._EARLY is None


def test_a_run_warms_the_tls_context_only_when_it_has_bubbles_to_make(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from omnipkg_pip.run import ondemand

    warmed, made = [], []
    monkeypatch.setattr(download, "warm", lambda *a: warmed.append(a))

    class Making:  # what would make the bubbles: not started here
        def __init__(self, *a) -> None:
            made.append(a)
            self.thread = SimpleNamespace(start=lambda: None)

    monkeypatch.setattr(ondemand, "Making", Making)
    monkeypatch.setattr(ondemand, "_LATER", [])
    py = SimpleNamespace(prefix=str(tmp_path / "py"), executable=str(tmp_path / "py" / "python"), version="3.11")
    store = SimpleNamespace(root=str(tmp_path / "store"))

    assert ondemand.start(store, [(py, [])], offline=False, index=[]) is None  # warm: nothing to make
    assert warmed == [] and made == []
    ondemand.start(store, [(py, ["rich==13.4.2"])], offline=False, index=["--index-url", "https://example.org/s/"])
    assert warmed == [(["--index-url", "https://example.org/s/"], [py.prefix])] and len(made) == 1
