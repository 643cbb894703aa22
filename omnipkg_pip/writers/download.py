"""The wheels pip planned, downloaded by pip-omni itself: the file pip chose, its sha256 checked.

pip resolves and chooses every file (``pip install --dry-run --report`` reads the index
with pip's own configuration and auth); what is left is to fetch those exact files. A
``pip wheel`` run for that costs a second pip start (~0.4 s of imports and setup, then
each URL through pip's session). So a planned wheel whose URL is https (or http on
loopback, which pip too treats as a secure origin) and whose sha256 pip reported is
downloaded here: in threads, over connections kept alive for the command
(:func:`connections`, :func:`open_url`: urllib's semantics, ``urlopen`` itself through a
proxy), streamed to a temporary file in the download dir, its sha256 computed while
streaming and compared with the plan's before anything uses the file. Other bytes than pip planned are refused in one line naming
both sha256 and the URL, and nothing is stored.

The fetch is the one pip would make, or pip makes it: :func:`pip_settings` reads
pip's settings the way pip finds them (environment, the global/user/site config files
and ``PIP_CONFIG_FILE`` with configparser, pip-omni's command line; pip is not run), and
any that could make pip fetch differently sends every file through ``pip wheel`` as
before: a proxy, a client certificate, a trusted host, a keyring provider, an index or
``--find-links`` URL that carries credentials, a config file that cannot be read.
``cert`` is honoured rather than a reason to fall back: pip trusts exactly that CA
bundle, and so does the download. ``https_proxy``/``no_proxy`` are honoured as urllib
(and pip's requests) read them. Any failure of a direct download (an HTTP error such as
401/403/404, TLS, a timeout, a short body) sends that file to pip too, silently except
at ``-v``. ``OMNIPKG_DIRECT_FETCH=0`` turns direct downloads off.
"""

from __future__ import annotations

import os
import sys

__all__ = ["Settings", "pip_settings", "why_not", "download_all", "Mismatch"]

ENV_OFF = "OMNIPKG_DIRECT_FETCH"
TIMEOUT = 15.0  # seconds per socket operation; pip's default --timeout
_PARALLEL = 4
_CHUNK = 1 << 16

# pip settings (config key, without "--") that change how pip fetches a URL: any of them -> pip fetches
_FALLBACK_KEYS = ("proxy", "client-cert", "trusted-host", "keyring-provider")
# settings whose URLs pip may hold credentials in, for the files' hosts too
_URL_KEYS = ("index-url", "extra-index-url", "find-links")


DEFAULT_INDEX = "https://pypi.org/simple/"


class Settings:
    """What pip's settings say for a direct download: ``blocked`` (the reason pip must fetch), ``cert``;
    and, for :mod:`.indexplan`, every setting found (``found``: ``(where, key, value, section)``, the
    command line first, then the environment, then the config files in pip's order) and the index URL
    pip would use (``index_url``)."""

    __slots__ = ("blocked", "cert", "found", "index_url")

    def __init__(self, blocked: str | None = None, cert: str | None = None, found=(),
                 index_url: str = DEFAULT_INDEX) -> None:
        self.blocked, self.cert = blocked, cert
        self.found, self.index_url = list(found), index_url


class Mismatch(Exception):
    """The bytes served are not the file pip planned (``got`` sha256)."""

    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def _has_credentials(value: str) -> bool:
    from urllib.parse import urlsplit

    for url in value.split():
        try:
            parts = urlsplit(url)
        except ValueError:
            return True  # pip may read it some way we do not: pip fetches
        if parts.username is not None or parts.password is not None:
            return True
    return False


def _config_files(prefixes: list[str]) -> list[str]:
    """The config files pip reads (``pip config debug`` lists the same), in pip's order."""
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return []  # pip loads no config file at all
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [os.path.join(d, "pip", "pip.conf") for d in xdg_dirs.split(os.pathsep) if d]
    files.append("/etc/pip.conf")
    home = os.path.expanduser("~")
    files.append(os.path.join(home, ".pip", "pip.conf"))
    files.append(os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"), "pip", "pip.conf"))
    if sys.platform == "darwin":
        files.append(os.path.join(home, "Library", "Application Support", "pip", "pip.conf"))
    files += [os.path.join(p, "pip.conf") for p in prefixes if p]
    if env_file:
        files.append(env_file)
    return files


def pip_settings(common: list[str], prefixes: list[str]) -> Settings:
    """Read pip's settings for this run: ``common`` (pip's options on pip-omni's command line),
    the environment, and the config files of pip under the interpreters at ``prefixes``."""
    if os.environ.get(ENV_OFF, "").strip().lower() in ("0", "no", "false", "off"):
        return Settings(f"{ENV_OFF}={os.environ[ENV_OFF]}")
    certs: list[str] = []
    found: list[tuple[str, str, str, str]] = []  # (where, key, value, config section or "")
    i = 0
    while i < len(common):
        tok = common[i]
        i += 1
        if not tok.startswith("--") and tok[:2] not in ("-i", "-f"):
            continue
        name, eq, value = tok.partition("=")
        if tok[:2] in ("-i", "-f") and not tok.startswith("--"):
            name, value, eq = tok[:2], tok[2:], tok[2:]
        if not eq and i < len(common) and not common[i].startswith("-"):
            value = common[i]
        found.append(("the command line", {"-i": "index-url", "-f": "find-links"}.get(name, name[2:]), value, ""))
    for key, value in os.environ.items():
        if key.startswith("PIP_"):
            found.append((key, key[4:].lower().replace("_", "-"), value, ""))
    import configparser

    for path in _config_files(prefixes):
        if not os.path.isfile(path):
            continue
        parser = configparser.RawConfigParser()
        try:
            with open(path, encoding="utf-8") as f:
                parser.read_file(f)
        except (OSError, UnicodeDecodeError, configparser.Error) as e:
            return Settings(f"pip's config file {path!r} cannot be read here ({type(e).__name__})")
        for section in parser.sections():
            for key, value in parser.items(section):
                found.append((path, key, value, section))
    found = [(where, key.lower().replace("_", "-").lstrip("-"), value, section)  # as pip reads a config key
             for where, key, value, section in found]
    for where, key, value, _section in found:
        if key in _FALLBACK_KEYS and not (key == "keyring-provider" and value.strip() == "disabled"):
            return Settings(f"pip's {key} is set ({where})")
        if key in _URL_KEYS and _has_credentials(value):
            return Settings(f"pip's {key} carries credentials ({where})")
        if key == "cert" and value.strip():
            certs.append(os.path.expanduser(value.strip()))
    if len(set(certs)) > 1:
        return Settings("pip's cert is set to several bundles")
    return Settings(None, certs[0] if certs else None, found, _index_url(found))


def _index_url(found: list[tuple[str, str, str, str]]) -> str:
    """The index URL ``pip wheel`` uses: the command line's, else ``PIP_INDEX_URL``, else the
    last config file's (its ``[wheel]`` section over ``[global]``), else PyPI's."""
    for where, key, value, _section in found:
        if key == "index-url" and where == "the command line":
            return value
    for where, key, value, _section in found:
        if key == "index-url" and where.startswith("PIP_"):
            return value
    url = None
    files = [w for w, _k, _v, s in found if s]
    for path in dict.fromkeys(files):
        per = {s: v for w, k, v, s in found if w == path and k == "index-url"}
        url = per.get("wheel", per.get("global", url))
    return url or DEFAULT_INDEX


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wheel_name(url: str) -> str | None:
    """The wheel's file name in ``url`` (``%2B`` read as ``+``), None when it is not a plain one."""
    from urllib.parse import unquote, urlsplit

    try:
        name = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    except ValueError:
        return None
    ok = name.endswith(".whl") and name.count("-") >= 4 and "\\" not in name and not name.startswith(".")
    return name if ok and os.sep not in name and "\0" not in name else None


def why_not(url: str | None, sha256: str | None, is_wheel: bool) -> str | None:
    """Why this planned file is not downloaded directly, or None."""
    from urllib.parse import urlsplit

    if url is None:
        return "main's copy: pip finds it by name and version"
    if not is_wheel or wheel_name(url) is None:
        return "not a wheel: pip builds it"
    if not sha256:
        return "pip's plan gives no sha256"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "a URL urllib cannot read"
    if parts.username is not None or parts.password is not None:
        return "the URL carries credentials"
    if parts.scheme == "https" or (parts.scheme == "http" and _loopback(host)):
        return None
    return f"a {parts.scheme}:// URL"


class _Sharing:
    """Within :func:`sharing`: one TLS context per CA bundle, and each file downloaded once."""

    def __init__(self, keep: str | None) -> None:
        self.keep = keep  # a directory where each file downloaded keeps a link for the others
        self.contexts: dict = {}
        self.files: dict = {}  # (url, sha256) -> Future of the path it is kept at (None: failed)


_SHARED: _Sharing | None = None
_LOCK = None


def shared_lock():
    """The lock of what :func:`sharing` shares (made once, on first use)."""
    global _LOCK
    if _LOCK is None:
        import threading

        _LOCK = threading.RLock()  # RLock: indexplan makes its context while holding it
    return _LOCK


def sharing(keep: str | None = None):
    """``with download.sharing(keep):`` -- downloads inside (several bubbles of one command,
    made at once) make their TLS context once per CA bundle (loading it is ~50 ms of CPU), and
    a file asked for again (same URL, same sha256) is hard-linked from the first download, not
    fetched again. ``keep`` (a held download dir of the store) keeps a link to each file for
    the others, so one that asks after the first's download dir is gone still finds it; without
    it (or if that link cannot be made) the first's own file is linked while it lasts, and a
    file gone is downloaded again. The caller checks every sha256, as always. Inside, the
    requests keep their connections (:func:`connections`), and the TLS context :func:`warm`
    started (or starts now) is the first one taken."""
    import contextlib

    @contextlib.contextmanager
    def scope():
        global _SHARED, _EARLY
        shared_lock()
        if _SHARED is not None:
            yield
            return
        _SHARED = _Sharing(keep)
        warm()
        try:
            with connections():
                yield
        finally:
            _SHARED = _EARLY = None  # a context warm() made and no one took is not kept past the command

    return scope()


def _context(cert: str | None):
    shared = _SHARED
    if shared is None:
        return _new_context(cert)
    with shared_lock():  # the others wait for the first: loaded once
        if cert not in shared.contexts:
            shared.contexts[cert] = _early_context(cert) or _new_context(cert)
        return shared.contexts[cert]


_EARLY = None  # (cert, Future of its TLS context), started by warm() in a thread


def warm(common: list[str] = (), prefixes: list[str] = ()) -> None:
    """Start making the TLS context a command about to fetch from an index will need (loading the
    CA bundle is ~35 ms, mostly outside the GIL) in a thread, for the CA bundle pip's settings
    name (:func:`pip_settings` of ``common`` and ``prefixes``, with ``sys.prefix``): the first
    request within :func:`sharing` that trusts that same bundle takes it instead of making its
    own. Nothing when pip fetches instead (a proxy...), or one is under way already."""
    global _EARLY
    with shared_lock():
        if _EARLY is not None:
            return
        settings = pip_settings(list(common), [*prefixes, sys.prefix])
        if settings.blocked or any(key == "no-index" for _w, key, _v, _s in settings.found):
            return
        import threading
        from concurrent.futures import Future

        future: Future = Future()
        _EARLY = (settings.cert, future)

    def make() -> None:
        try:
            future.set_result(_new_context(settings.cert))
        except BaseException as e:  # made again where it is needed, and fails there as it would have
            future.set_exception(e)

    threading.Thread(target=make, name="pip-omni-tls", daemon=True).start()


def _early_context(cert: str | None):
    """The context :func:`warm` made for ``cert`` (waited for), once; None when it made none
    (the caller holds :func:`shared_lock`)."""
    global _EARLY
    if _EARLY is None or _EARLY[0] != cert:
        return None
    future, _EARLY = _EARLY[1], None
    try:
        return future.result()
    except Exception:
        return None


def _new_context(cert: str | None):
    import ssl

    if cert is None:
        return ssl.create_default_context()
    if os.path.isdir(cert):
        return ssl.create_default_context(capath=cert)
    return ssl.create_default_context(cafile=cert)


def _user_agent() -> str:
    """``pip-omni/<version>``, the version ``pip-omni --version`` says: not read through
    ``importlib.metadata``, whose import and scan of ``sys.path`` (~5-50 ms) would sit between
    the TLS context and the first request of every cold command."""
    from .. import __version__

    return f"pip-omni/{__version__}"


# Connections kept alive

_REDIRECTS = 10  # as urllib's HTTPRedirectHandler.max_redirections
_DRAIN = 1 << 16  # bytes of a redirect's or an error's body read so that its connection is used again


class _Pool:
    """Idle connections by ``(scheme, host[:port], TLS context)``; each is used by one request at
    a time, and given back only once its response was read to the end."""

    def __init__(self) -> None:
        import threading

        self.idle: dict = {}
        self.lock = threading.Lock()
        self.closed = False

    def take(self, key):
        with self.lock:
            idle = self.idle.get(key)
            return idle.pop() if idle else None

    def give(self, key, conn) -> None:
        with self.lock:
            if not self.closed:
                self.idle.setdefault(key, []).append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = [c for conns in self.idle.values() for c in conns], {}
        for conn in idle:
            conn.close()


_POOL: _Pool | None = None
_POOL_USERS = 0


def connections():
    """``with download.connections():`` -- the requests made inside (:func:`open_url`, from any
    thread) keep their connections alive and use them again: one TCP connection and one TLS
    handshake per host for a whole command, not per URL. Nested scopes share the outer one's;
    the connections are closed when the last ends. :func:`sharing` opens one."""
    import contextlib

    @contextlib.contextmanager
    def scope():
        global _POOL, _POOL_USERS
        with shared_lock():
            if _POOL is None:
                _POOL = _Pool()
            _POOL_USERS += 1
            pool = _POOL
        try:
            yield
        finally:
            with shared_lock():
                _POOL_USERS -= 1
                last = _POOL_USERS == 0
                if last:
                    _POOL = None
            if last:  # what is still in use is closed when given back
                pool.close()

    return scope()


def open_url(url: str, headers: dict, context, timeout: float = TIMEOUT):
    """GET ``url`` as ``urllib.request.urlopen`` does (redirects followed, ``HTTPError`` for a
    status it does not follow, ``URLError`` when it cannot be sent), through a kept connection
    within :func:`connections`. The response has ``headers``, ``read`` and ``geturl`` (the URL
    after redirects); close it (``with``) when done. A proxy (``getproxies``, ``no_proxy``), a
    scheme other than http(s), credentials in the URL, or no scope: ``urlopen`` itself."""
    import urllib.request

    pool = _POOL
    hops = 0
    while pool is not None:
        request = urllib.request.Request(url, headers=headers)
        if request.type not in ("http", "https") or "@" in request.host or _proxied(request):
            break
        response = _exchange(pool, request, context, timeout)
        status = response.status
        if status in (301, 302, 303, 307, 308) and ("location" in response.msg or "uri" in response.msg):
            url = _redirected(request, response, hops)
            hops += 1
            continue
        if not 200 <= status < 300:
            import urllib.error

            response.drain()
            raise urllib.error.HTTPError(request.full_url, status, response.reason, response.msg, None)
        return response
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout, context=context)


def _proxied(request) -> bool:
    """Whether urllib would send ``request`` through a proxy (any proxy setting for its scheme)."""
    import urllib.request

    proxies = urllib.request.getproxies()
    if not (proxies.get(request.type) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(request.host)


def _redirected(request, response, hops: int) -> str:
    """The URL a redirect sends ``request`` to, as urllib's ``HTTPRedirectHandler`` reads it."""
    import string
    import urllib.error
    from urllib.parse import quote, urljoin, urlparse, urlunparse

    headers = response.msg
    response.drain()
    if hops >= _REDIRECTS:
        raise urllib.error.HTTPError(request.full_url, response.status,
                                     "The HTTP server returned a redirect error that would lead to an infinite "
                                     f"loop.\nThe last 30x error message was:\n{response.reason}", headers, None)
    newurl = headers["location"] if "location" in headers else headers["uri"]
    parts = urlparse(newurl)
    if parts.scheme not in ("http", "https", "ftp", ""):
        raise urllib.error.HTTPError(newurl, response.status,
                                     f"{response.reason} - Redirection to url '{newurl}' is not allowed", headers, None)
    if not parts.path and parts.netloc:
        parts = parts._replace(path="/")
    newurl = quote(urlunparse(parts), encoding="iso-8859-1", safe=string.punctuation)
    return urljoin(request.full_url, newurl)


def _exchange(pool: _Pool, request, context, timeout: float) -> _Kept:
    """Send ``request`` on a kept connection (or a new one) and read its status and headers.
    A kept connection the server closed meanwhile fails before any response: that one request
    is sent again once, on a new connection (a GET changes nothing)."""
    import http.client
    import ssl
    import urllib.error

    gone = (ConnectionError, http.client.BadStatusLine, ssl.SSLEOFError, ssl.SSLZeroReturnError)
    https = request.type == "https"
    key = (request.type, request.host, context if https else None)
    conn = pool.take(key)
    kept = conn is not None
    while True:
        if conn is None:
            conn = (http.client.HTTPSConnection(request.host, timeout=timeout, context=context) if https
                    else http.client.HTTPConnection(request.host, timeout=timeout))
        sent = False
        try:
            conn.request("GET", request.selector, headers=dict(request.header_items()))
            sent = True
            return _Kept(conn.getresponse(), conn, key, pool, request.full_url)
        except BaseException as e:
            conn.close()
            if kept and isinstance(e, gone):
                conn, kept = None, False
                continue
            if not sent and isinstance(e, OSError):
                raise urllib.error.URLError(e) from None  # as urlopen says it
            raise


class _Kept:
    """A response on a kept connection; closing it gives the connection back when the body was
    read to its end (and the server keeps it open), else closes it."""

    def __init__(self, response, conn, key, pool: _Pool, url: str) -> None:
        self.response, self.conn, self.key, self.pool, self.url = response, conn, key, pool, url
        self.status, self.reason, self.msg = response.status, response.reason, response.msg
        self.headers = response.msg

    def read(self, amt: int | None = None) -> bytes:
        return self.response.read(amt)

    def geturl(self) -> str:
        return self.url

    def drain(self) -> None:
        """Read what is left of a small body (a redirect's, an error's), then close."""
        import http.client

        try:
            left = _DRAIN
            while left > 0 and not self.response.isclosed():
                chunk = self.response.read(min(left, _CHUNK))
                if not chunk:
                    break
                left -= len(chunk)
        except (OSError, ValueError, http.client.HTTPException):
            pass
        self.close()

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        r = self.response
        if r.isclosed() and not r.will_close and not r.length:  # read to its end; length: None (chunked) or 0
            self.pool.give(self.key, conn)
        else:
            r.close()
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _download(url: str, sha256: str, dest: str, context, agent: str) -> None:
    """Stream ``url`` to ``dest``; :class:`Mismatch` when its sha256 is not ``sha256``, else any
    ``OSError``/``ValueError`` of the transfer (``dest`` is then removed)."""
    import hashlib

    partial = dest + ".part"
    digest = hashlib.sha256()
    try:
        # identity, as pip asks: the sha256 is of the file, not of a compressed transfer of it
        headers = {"User-Agent": agent, "Accept-Encoding": "identity"}
        with open_url(url, headers, context) as resp, open(partial, "wb") as out:
            if resp.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                raise OSError(f"served with Content-Encoding {resp.headers['Content-Encoding']!r}")
            length = resp.headers.get("Content-Length")
            total = 0
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                total += len(chunk)
            if length is not None and length.strip().isdigit() and int(length) != total:
                raise OSError(f"short read: {total} of {length} bytes")
        got = digest.hexdigest()
        if got != sha256:
            raise Mismatch(got)
        os.replace(partial, dest)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


def download_all(items: list[tuple[str, str, str]], cert: str | None) -> dict[str, BaseException | None]:
    """Download each ``(url, sha256, dest)`` at once (a few threads); ``{dest: None or the error}``.

    The error is a :class:`Mismatch` (other bytes than planned) or the transfer's failure.
    """
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    context, agent = _context(cert), _user_agent()

    def one(item):
        url, sha256, dest = item
        try:
            _download_once(url, sha256, dest, context, agent)
        except (Mismatch, OSError, ValueError, http.client.HTTPException) as e:
            return dest, e
        return dest, None

    if len(items) == 1:
        return dict([one(items[0])])
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(items)), thread_name_prefix="pip-omni-fetch") as pool:
        return dict(pool.map(one, items))


def _download_once(url: str, sha256: str, dest: str, context, agent: str) -> None:
    """:func:`_download`; within :func:`sharing`, a file another download of this process
    fetched (or is fetching) is linked from there instead."""
    shared = _SHARED
    if shared is None:
        return _download(url, sha256, dest, context, agent)
    from concurrent.futures import Future

    key = (url, sha256)
    with shared_lock():
        first = shared.files.get(key)
        if first is None:
            mine = shared.files[key] = Future()
    if first is not None:
        path = first.result()
        if path is not None and _link(path, dest):
            return None
        return _download(url, sha256, dest, context, agent)
    try:
        _download(url, sha256, dest, context, agent)
    except BaseException:
        with shared_lock():
            shared.files.pop(key, None)  # the next one tries again
        mine.set_result(None)
        raise
    kept = os.path.join(shared.keep, f"{sha256}.whl") if shared.keep else None
    mine.set_result(kept if kept is not None and _link(dest, kept) else dest)
    return None


def _link(path: str, dest: str) -> bool:
    """Hard-link the downloaded ``path`` at ``dest`` (both in the store's ``tmp``); False if it is gone."""
    if os.path.abspath(path) == os.path.abspath(dest):
        return os.path.isfile(dest)
    try:
        if os.path.lexists(dest):
            os.unlink(dest)
        os.link(path, dest)
        return True
    except OSError:
        return False
