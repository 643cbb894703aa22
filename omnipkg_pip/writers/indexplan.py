"""A cold bubble resolved from the index without pip, where the answer is pip's own.

A bubble with no plan from pip (``pip-omni install --bubble rich==13.4.2`` on an empty
store, every bubble ``pip-omni run`` makes on demand) used to start ``pip wheel`` just to
resolve: ~0.4 s of pip's start-up, then pip's resolver, which downloads whole wheels to
read their requirements from an index without PEP 658 metadata. :func:`plan` reads the
same simple index pages pip would (PEP 691 JSON, or PEP 503 HTML), picks per name what
pip's resolver picks, and returns the plan as :func:`.fetch.planned_from_report` would
from pip's report; :mod:`.fetch` then downloads those files, each sha256 checked.

It answers only when it can be sure the answer is pip's, and otherwise returns None
(pip resolves as before; ``-v`` says why):

- the settings (:func:`.download.pip_settings`: command line, environment, config
  files) name one remote index and nothing else that changes what pip resolves: a
  whitelist (``_HARMLESS``). Local sources are merged as pip merges them: a ``file://``
  extra index (a PEP 503 tree on disk) and a ``--find-links`` folder add their files to
  each project's candidates; the same file with the same sha256 in two sources counts
  once (the local copy is read); a constraint file of plain ``name specifier`` lines
  bounds the candidates of those names, as pip's ``-c`` does (anything else in it: pip).
- files: wheels this interpreter supports (``interpreter.supports``/``rank``, pip's
  tag order), ``requires-python`` (PEP 503 ``data-requires-python``), yanked files
  (PEP 592: only when the specifier pins them with ``==``/``===`` and every candidate is
  yanked). pip takes the newest allowed *version* first and then its best file; when
  that is an sdist (no wheel for this interpreter), pip would build it: None.
- resolution: :func:`.bubbles.resolve_closure` (greedy; pip backtracks, it does not: a
  conflict is None). Then every dist is checked against each requirement on it alone:
  the newest file each allows must be the one picked, so whatever order pip's resolver
  takes the names in, it pins the same files and never backtracks.
- requirements are read from PEP 658 metadata when the index offers it (its hash
  checked), else from a stored dist made from that very wheel (``wheel_sha256``), else
  from the wheel, downloaded into the download dir (sha256 checked while streaming),
  where :func:`.fetch.fetch` finds it and does not download it again. METADATA naming
  another project or version than its file name is refused in one line.

``OMNIPKG_INDEX_PLAN=0`` (``no``/``false``/``off``) turns it off: pip resolves every cold bubble.
Pages and wheels are fetched in a few threads, with the TLS and proxy handling of
:mod:`.download`. Nothing here writes to the store but the download dir.
"""

from __future__ import annotations

import os

from omnipkg_hook._pep440 import InvalidSpecifier, InvalidVersion, SpecifierSet, Version
from omnipkg_hook._requirements import Requirement
from omnipkg_hook.errors import InvalidPinError, WheelRejectedError
from omnipkg_hook.store import normalize

from . import bubbles, download, wheel_ready

__all__ = ["plan", "ENV_OFF", "Unsure"]

ENV_OFF = "OMNIPKG_INDEX_PLAN"
MAX_PAGE = 16 << 20  # bytes of one project page; a bigger one goes to pip
MAX_METADATA = 8 << 20
ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
_JSON = "application/vnd.pypi.simple.v1+json"
_PARALLEL = 8

# pip settings (config/environment keys) that do not change what pip resolves or from where
_HARMLESS = {"cert", "timeout", "default-timeout", "retries", "disable-pip-version-check", "no-input", "no-cache-dir",
             "cache-dir", "progress-bar", "no-color", "config-file", "index-url", "root-user-action",
             "require-virtualenv", "break-system-packages", "no-warn-script-location", "yes", "exists-action",
             "quiet", "verbose", "no-python-version-warning", "resume-retries", "find-links", "extra-index-url"}
# pip options on pip-omni's command line (``common``): those with a value, and flags
_CLI_VALUES = {"-i", "--index-url", "--cert", "--timeout", "--retries", "--progress-bar", "--exists-action",
               "--cache-dir", "--resume-retries"}
_CLI_FLAGS = {"--pre", "--no-cache-dir", "--disable-pip-version-check", "--no-input", "--no-color"}
_SDIST = (".tar.gz", ".zip", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma", ".tgz", ".tar")


class Unsure(Exception):
    """The index plan cannot be sure of pip's answer: pip resolves (the message says why)."""


class _LookFurther(Unsure):
    """A picked file's METADATA excludes this Python (its page did not say so: a local mirror
    often gives no ``data-requires-python``): pip tries the next candidate; the plan is made
    again without that file."""


_LOOK_FURTHER = 20  # files dropped that way before the plan leaves it to pip


class _File:
    __slots__ = ("filename", "url", "version", "key", "tag", "build", "sha256", "yanked", "python_ok", "meta_sha")

    def __init__(self, **kw) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def _off() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() in ("0", "no", "false", "off")


def _command_line(common: list[str]) -> tuple[str | None, bool]:
    """``(why not, --pre given)`` for pip's options on the command line."""
    pre = False
    i = 0
    while i < len(common):
        tok = common[i]
        i += 1
        name, eq, _v = tok.partition("=")
        if tok.startswith("-i") and not tok.startswith("--") and len(tok) > 2:
            continue
        if name in _CLI_VALUES:
            i += 0 if eq else 1
        elif tok in _CLI_FLAGS:
            pre = pre or tok == "--pre"
        else:
            return f"pip's {tok} on the command line", pre
    return None, pre


def _local_path(url: str) -> str | None:
    """The local path a find-links or index location names (a bare path or ``file://``), else None."""
    from urllib.parse import unquote, urlsplit

    if "://" not in url:
        return os.path.abspath(os.path.expanduser(url))
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" and parts.netloc in ("", "localhost") else None


class _Sources:
    """The index pip uses, the local sources beside it (``file://`` extra indexes and
    ``--find-links`` folders, read from disk), and pip's constraints.

    pip takes the best file of all its sources; so does the plan. Where two sources offer
    equally good files of other bytes, pip's order among them decides, and the plan is
    unsure (:func:`pip_choice`)."""

    def __init__(self, index_url: str, links: list[str], extra: list[str], constraints=None) -> None:
        self.index_url = index_url.rstrip("/") + "/"
        self.links, self.extra = links, extra
        self.constraints: dict = constraints or {}
        self._listed: dict[str, list[str]] = {}

    def local(self, name: str) -> list[dict]:
        """Page entries (as :func:`parse_page` gives them) of ``name`` in the local sources."""
        from urllib.request import pathname2url

        out = []
        for path in self.extra:  # a PEP 503 tree on disk: <path>/<name>/index.html (pip reads it so)
            page = os.path.join(path, name)
            html = os.path.join(page, "index.html") if os.path.isdir(page) else page
            if not os.path.isfile(html):
                continue  # pip: "ignored: it is neither a file nor a directory"
            try:
                with open(html, "rb") as f:
                    body = f.read(MAX_PAGE + 1)
            except OSError as e:
                raise Unsure(f"the extra index page {html!r} cannot be read: {e.strerror}") from None
            if len(body) > MAX_PAGE:
                raise Unsure(f"the extra index page {html!r} is over pip-omni's {MAX_PAGE} bytes")
            base = "file://" + pathname2url(page) + ("/" if os.path.isdir(page) else "")
            out += [raw for raw in parse_page(body, "text/html", base) if raw["url"].startswith("file:")]
        for path in self.links:
            if path not in self._listed:
                try:
                    self._listed[path] = sorted(os.listdir(path)) if os.path.isdir(path) else []
                except OSError:
                    self._listed[path] = []
            for fname in self._listed[path]:
                if normalize(fname.split("-", 1)[0]) == name or normalize(fname).startswith(name + "-"):
                    full = os.path.join(path, fname)
                    out.append({"url": "file://" + pathname2url(full), "sha256": _file_sha256(full),
                                "requires_python": None, "yanked": False, "meta_sha": None, "meta": False})
        return out


def _file_sha256(path: str) -> str | None:
    from omnipkg_hook.store import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return None


def _local_file(url: str) -> str | None:
    """The path of a ``file://`` URL on this machine, else None."""
    return _local_path(url) if url.startswith("file:") else None


def sources(settings, common: list[str]) -> tuple[_Sources | None, str | None, bool]:
    """``(sources, why not, prereleases)`` from pip's settings and command line."""
    why, pre = _command_line(common)
    if why:
        return None, why, pre
    links, extra = [], []
    constraints: dict[str, SpecifierSet] = {}
    for where, key, value, _section in settings.found:
        if where == "the command line":  # read above, as pip parses it
            continue
        if key == "constraint":
            why = _read_constraints(value, constraints, where)
            if why:
                return None, why, pre
            continue
        if key not in _HARMLESS:
            return None, f"pip's {key} is set ({where})", pre
        if key in ("find-links", "extra-index-url"):
            for url in value.split():
                path = _local_path(url)
                if path is None:
                    return None, f"pip's {key} {url!r} is another source ({where})", pre
                (links if key == "find-links" else extra).append(path)
    url = settings.index_url
    if _local_path(url) is not None or download.why_not(url + "x-1-py3-none-any.whl", "x", True) is not None:
        return None, f"the index {url!r} is not an https (or loopback http) URL", pre
    return _Sources(url, links, extra, constraints), None, pre


def _read_constraints(value: str, into: dict, where: str) -> str | None:
    """Add the constraint files ``value`` names (pip's ``constraint`` setting, whitespace
    separated) to ``into`` (``{name: SpecifierSet}``); why not, when a file has anything but
    plain ``name specifier`` lines (a marker, an extra, a URL, an option: pip reads it)."""
    from .. import reqfiles

    for path in value.split():
        try:
            parsed = reqfiles.read([], [path])
        except (OSError, InvalidPinError) as e:
            return f"pip's constraint file {path!r} cannot be read here ({where}): {e}"
        if parsed.opaque or parsed.options or parsed.requirements or parsed.editables:
            return f"pip's constraint file {path!r} has more than name and version lines ({where})"
        for line in parsed.constraints:
            try:
                req = Requirement(line)
            except InvalidPinError:
                return f"pip's constraint {line!r} in {path!r} is not one pip-omni reads ({where})"
            if req.url or req.extras or req.marker is not None:
                return f"pip's constraint {line!r} in {path!r} has a URL, extra or marker ({where})"
            key = normalize(req.name)
            into[key] = into[key] & req.specifier if key in into else req.specifier
    return None


# Pages

class _Links:
    """PEP 503: the ``<a>`` elements of a page and its ``<base href>``."""

    def __init__(self) -> None:
        from html.parser import HTMLParser

        self.anchors: list[dict] = []
        self.base: str | None = None
        outer = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                if tag == "a":
                    outer.anchors.append(dict(attrs))
                elif tag == "base" and outer.base is None:
                    outer.base = dict(attrs).get("href")

        self.parser = Parser(convert_charrefs=True)


def _hash_of(value) -> str | None:
    """``sha256=HEX`` (PEP 503 fragment or attribute) or ``{"sha256": HEX}`` -> HEX."""
    if isinstance(value, dict):
        value = value.get("sha256")
        return value.lower() if isinstance(value, str) and len(value) == 64 else None
    if isinstance(value, str) and value.startswith("sha256="):
        value = value[len("sha256="):]
        return value.lower() if len(value) == 64 else None
    return None


def parse_page(body: bytes, content_type: str, page_url: str) -> list[dict]:
    """The files of a project page as ``{"url", "sha256", "requires_python", "yanked", "meta_sha"}``;
    :class:`Unsure` when it is neither PEP 691 JSON nor PEP 503 HTML."""
    import json
    from urllib.parse import urljoin, urlsplit

    ctype = content_type.split(";", 1)[0].strip().lower()
    out = []
    if ctype == _JSON:
        try:
            data = json.loads(body)
            version = str(data["meta"]["api-version"])
            files = data["files"]
            if not version.startswith("1.") or not isinstance(files, list):
                raise ValueError(version)
            for f in files:
                meta = f.get("core-metadata", f.get("dist-info-metadata", False))
                yanked = f.get("yanked", False)
                url = f["url"]
                out.append({"url": url if _plain_absolute(url) else urljoin(page_url, url),
                            "sha256": _hash_of(f.get("hashes") or {}),
                            "requires_python": f.get("requires-python"),
                            "yanked": yanked is True or isinstance(yanked, str),
                            "meta_sha": _hash_of(meta) if meta is not False else None, "meta": meta is not False})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise Unsure(f"the page {page_url!r} is not PEP 691 JSON ({type(e).__name__})") from None
        return out
    if ctype != "text/html":
        raise Unsure(f"the page {page_url!r} is {ctype!r}, neither PEP 691 JSON nor PEP 503 HTML")
    links = _Links()
    try:
        links.parser.feed(body.decode("utf-8"))
        links.parser.close()
    except (UnicodeDecodeError, ValueError, AssertionError) as e:
        raise Unsure(f"the page {page_url!r} does not parse as HTML ({type(e).__name__})") from None
    base = urljoin(page_url, links.base) if links.base else page_url
    for a in links.anchors:
        href = a.get("href")
        if not href:
            continue
        url = urljoin(base, href)
        fragment = urlsplit(url).fragment
        meta = a.get("data-core-metadata", a.get("data-dist-info-metadata"))
        out.append({"url": url.split("#", 1)[0], "sha256": _hash_of(fragment), "requires_python": a.get("data-requires-python"),
                    "yanked": "data-yanked" in a, "meta_sha": _hash_of(meta), "meta": meta not in (None, "false")})
    return out


def _plain_absolute(url) -> bool:
    """A URL ``urljoin`` returns as it is and whose last part is its file name as it is
    (``https://host/path/name``: no query, fragment, escapes or dot segments), as PyPI's JSON
    pages give them: hundreds a page, so the parsing is skipped for these."""
    return (isinstance(url, str) and url.startswith(("https://", "http://")) and url.count("/") >= 3
            and not url.endswith("/") and not any(c in url for c in "?#%\\ ") and "/." not in url
            and url.isascii() and url.isprintable())


def _filename(url: str) -> str:
    """pip's ``Link.filename``: the URL path's last part, then unquoted; :class:`Unsure` when unsafe."""
    from urllib.parse import unquote, urlsplit

    if _plain_absolute(url):
        name = url.rsplit("/", 1)[-1]
    else:
        name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    if "/" in name or "\\" in name or "\0" in name or name.startswith("."):
        raise Unsure(f"the file name {name!r} in {url!r} is not a plain file name")
    return name


def _file(project: str, raw: dict, interpreter) -> _File | None:
    """One page entry as a candidate of ``project``, None where pip ignores it (another
    project, a format pip does not install, a version that does not parse)."""
    fname = _filename(raw["url"])
    tag = build = None
    if fname.endswith(".whl"):
        parts = fname[:-4].split("-")
        if len(parts) not in (5, 6) or normalize(parts[0]) != project:
            return None
        if len(parts) == 6:
            digits = len(parts[2]) - len(parts[2].lstrip("0123456789"))
            if not digits:
                return None
            build = (int(parts[2][:digits]), parts[2][digits:])
        version, tag = parts[1], "-".join(parts[-3:])
        if not interpreter.supports(tag):
            return None
    else:
        ext = next((e for e in _SDIST if fname.lower().endswith(e)), None)
        if ext is None:
            return None
        stem = fname[: -len(ext)]
        version = next((stem[i + 1:] for i, c in enumerate(stem) if c == "-" and normalize(stem[:i]) == project), None)
        if version is None:
            return None
    try:
        key = Version(version)
    except InvalidVersion:
        return None
    ok = True
    rp = raw.get("requires_python")
    if rp:
        ok = _python_ok(str(rp), interpreter.version)
        if ok is None:
            raise Unsure(f"{fname!r} has a requires-python pip-omni cannot read: {rp!r}")
    return _File(filename=fname, url=raw["url"], version=version, key=key, tag=tag, build=build or (),
                 sha256=raw.get("sha256"), yanked=bool(raw.get("yanked")), python_ok=ok,
                 meta_sha=raw.get("meta_sha") if raw.get("meta") else None)


_PYTHON_OK: dict = {}  # (requires-python, Python version) -> whether it holds; None: unreadable


def _python_ok(requires_python: str, version: str) -> bool | None:
    """Whether ``version`` satisfies ``requires_python`` (None: not a specifier), read once per
    text: a page lists the same few for hundreds of files (pygments: 613 files, 9 texts)."""
    key = (requires_python, version)
    ok = _PYTHON_OK.get(key)
    if ok is None and key not in _PYTHON_OK:
        try:
            ok = SpecifierSet(requires_python).contains(version, prereleases=True)
        except InvalidSpecifier:
            ok = None
        _PYTHON_OK[key] = ok
    return ok


def _one_copy(files: list[_File]) -> list[_File]:
    """``files`` with each file that several sources offer with the same bytes (a local
    mirror beside the index: same name, same sha256) once, the local copy first (it reads
    fastest). Which copy pip takes changes nothing but where the bytes are read from; copies
    of other bytes all stay, and :func:`pip_choice` leaves that choice to pip."""
    out: dict = {}
    for f in sorted(files, key=lambda f: _local_file(f.url) is None):
        key = (f.filename, f.sha256) if f.sha256 else (f.url,)
        out.setdefault(key, f)
    return list(out.values())


def _read_limited(resp, limit: int, what: str) -> bytes:
    length = resp.headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise Unsure(f"{what} is {int(length)} bytes, over pip-omni's {limit}")
    body = resp.read(limit + 1)
    if len(body) > limit:
        raise Unsure(f"{what} is over pip-omni's {limit} bytes")
    return body


class _Shared:
    """The pages, METADATA and requirements read for one interpreter from one set of sources,
    with the threads and TLS context that read them: one plan's, or (in :func:`sharing`)
    every plan's of the command."""

    def __init__(self, settings) -> None:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        self.context, self.agent = download._context(settings.cert), download._user_agent()
        self.pool = ThreadPoolExecutor(max_workers=_PARALLEL, thread_name_prefix="pip-omni-index")
        # a pool of its own: its tasks wait for pages, which never wait (no deadlock)
        self.ahead = ThreadPoolExecutor(max_workers=_PARALLEL // 2, thread_name_prefix="pip-omni-ahead")
        self.pages: dict = {}
        self.texts: dict = {}  # file URL -> Future of its METADATA text, read ahead
        self.requires: dict[str, list[str]] = {}
        self.lock = threading.Lock()

    def close(self) -> None:
        """Stop: the downloads read ahead are waited for (they write to a download dir), pages are not."""
        for fut in [*self.pages.values(), *self.texts.values()]:
            fut.cancel()
        self.ahead.shutdown(wait=True)
        self.pool.shutdown(wait=False)


_SHARING: dict | None = None  # within sharing(): {(sources, interpreter): _Shared}


def sharing(keep: str | None = None):
    """``with indexplan.sharing(keep):`` -- the plans made inside (several bubbles of one command,
    planned at once in threads) share what they read: each project page and each file's
    METADATA is fetched once, through one TLS context, and a file is downloaded once
    (:func:`.download.sharing`, which keeps its links in ``keep``). Each plan is still the
    one it would be alone."""
    import contextlib

    @contextlib.contextmanager
    def scope():
        global _SHARING
        if _SHARING is not None:
            yield
            return
        _SHARING = {}
        try:
            with download.sharing(keep):
                yield
        finally:
            caches, _SHARING = list(_SHARING.values()), None
            for cache in caches:
                cache.close()

    return scope()


def _shared(srcs: _Sources, settings, interpreter) -> _Shared | None:
    """The :class:`_Shared` of these sources and interpreter within :func:`sharing`, else None."""
    caches = _SHARING
    if caches is None:
        return None
    key = (srcs.index_url, tuple(srcs.links), tuple(srcs.extra),
           tuple(sorted((k, str(v)) for k, v in srcs.constraints.items())), interpreter.key, settings.cert)
    with download.shared_lock():
        if key not in caches:
            caches[key] = _Shared(settings)
        return caches[key]


class _Session:
    """The pages, metadata and wheels of one plan, fetched in a few threads (``shared``:
    those of :func:`sharing`, which other plans read too)."""

    def __init__(self, store, srcs: _Sources, settings, interpreter, work, shared: _Shared | None = None) -> None:
        self.store, self.srcs, self.interpreter, self.work = store, srcs, interpreter, work
        self.own = shared is None
        self.shared = shared = shared or _Shared(settings)
        self.context, self.agent = shared.context, shared.agent
        self.cert = settings.cert
        self.pool, self.ahead = shared.pool, shared.ahead
        self.pages, self.texts, self.requires = shared.pages, shared.texts, shared.requires
        self.lock = shared.lock
        self.mine: list = []  # what this plan submitted ahead (it may download into self.work)
        self.names: set[str] = set()  # the projects whose pages this plan read
        self.downloaded: list[str] = []
        self.stored = bubbles.StoreIndex(store)
        self.prereleases = None

    def _get(self, url: str, accept: str, limit: int, what: str) -> tuple[bytes, str, str]:
        import http.client

        headers = {"User-Agent": self.agent, "Accept": accept, "Accept-Encoding": "identity"}
        try:
            with download.open_url(url, headers, self.context) as resp:
                if resp.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                    raise Unsure(f"{what} is served with Content-Encoding {resp.headers['Content-Encoding']!r}")
                return _read_limited(resp, limit, what), resp.headers.get("Content-Type", ""), resp.geturl()
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise Unsure(f"{what} could not be fetched: {e}") from None

    def _page(self, name: str) -> list[_File]:
        from urllib.parse import quote

        url = self.srcs.index_url + quote(name) + "/"
        body, ctype, final = self._get(url, ACCEPT, MAX_PAGE, f"the page {url!r}")
        raws = [*parse_page(body, ctype, final), *self.srcs.local(name)]
        files = [f for f in (_file(name, raw, self.interpreter) for raw in raws) if f]
        files = _one_copy(files)
        limit = self.srcs.constraints.get(name)
        if limit is not None:  # pip's -c: only versions the constraint allows are candidates
            files = [f for f in files if limit.contains(f.version, prereleases=True)]
        return files

    def _page_future(self, name: str):
        self.names.add(name)
        with self.lock:
            if name not in self.pages:
                self.pages[name] = self.pool.submit(self._page, name)
            return self.pages[name]

    def page(self, name: str) -> list[_File]:
        return self._page_future(name).result()

    def prefetch(self, name: str, spec: SpecifierSet, prereleases) -> None:
        """Fetch ``name``'s page and read ahead the METADATA of the file ``spec`` alone picks
        (usually the one the resolution picks: it checks that each requirement alone picks it)."""
        page = self._page_future(name)

        def ahead() -> None:
            try:
                f = pip_choice(page.result(), spec, self.interpreter, prereleases)
            except BaseException:  # the resolution meets it again and says so
                return
            if f.sha256 and not self._stored(name, f):
                self._text_future(f)

        fut = self.ahead.submit(ahead)
        with self.lock:
            self.mine.append(fut)

    def _text_future(self, f: _File):
        """The Future of ``f``'s METADATA text: one read of each file, whoever asks first."""
        with self.lock:
            if f.url not in self.texts:
                self.texts[f.url] = self.ahead.submit(self._text, f)
                self.mine.append(self.texts[f.url])
            return self.texts[f.url]

    def _stored(self, project: str, f: _File) -> list[dict]:
        return [m for m in self.stored(project) if m.get("wheel_sha256") == f.sha256]

    def _text(self, f: _File) -> str:
        return self._metadata(f) if f.meta_sha else self._from_wheel(f)

    def requires_of(self, project: str, f: _File) -> list[str]:
        """``Requires-Dist`` of ``f``: from PEP 658 metadata, a stored dist of that wheel, or the wheel."""
        if f.url in self.requires:
            return self.requires[f.url]
        if not f.sha256:
            raise Unsure(f"{f.filename!r} has no sha256 on the index page")
        stored = self._stored(project, f)
        if stored:
            lines = list(stored[0].get("requires_dist", []))
            meta = {"requires-python": stored[0].get("requires_python")}
        else:
            text = self._text_future(f).result()
            meta, lines = _parse_metadata(text, project, f)
        rp = meta.get("requires-python")
        if rp:
            try:
                ok = SpecifierSet(rp).contains(self.interpreter.version, prereleases=True)
            except InvalidSpecifier:
                raise Unsure(f"{f.filename!r} has a Requires-Python pip-omni cannot read: {rp!r}") from None
            if not ok:  # pip drops this candidate and takes the next one; so does the plan
                f.python_ok = False
                raise _LookFurther(f"{f.filename!r} requires Python {rp} in its METADATA")
        self.requires[f.url] = lines
        for line in lines:  # the next level's pages and metadata, while this level is read
            req = Requirement(line)
            if bubbles._applies(req, self.interpreter.markers, set()):
                self.prefetch(normalize(req.name), req.specifier, self.prereleases)
        return lines

    def _metadata(self, f: _File) -> str:
        import hashlib

        body, _ctype, _url = self._get(f.url + ".metadata", "*/*", MAX_METADATA, f"the metadata of {f.filename!r}")
        got = hashlib.sha256(body).hexdigest()
        if got != f.meta_sha:
            raise WheelRejectedError(f"the metadata of {f.filename!r} from {f.url + '.metadata'!r} has sha256 {got}, "
                                     f"not the {f.meta_sha} its index page gives",
                                     "the index served other bytes than it lists; nothing was stored")
        return body.decode("utf-8", errors="replace")

    def _from_wheel(self, f: _File) -> str:
        local = _local_file(f.url)
        if local is not None:  # read where it lies; fetch copies it, its sha256 checked
            if _file_sha256(local) != f.sha256:
                raise WheelRejectedError(f"{f.filename!r} at {local!r} has other bytes than the sha256 {f.sha256} "
                                         "its index page gives", "the local index is out of date; nothing was stored")
            wheel_ready(local)
            return _wheel_metadata(local, f)
        dest = os.path.join(self.work.path, download.wheel_name(f.url) or f.filename)
        if download.why_not(f.url, f.sha256, True) is not None or download.wheel_name(f.url) != f.filename:
            raise Unsure(f"{f.filename!r} cannot be downloaded directly: {download.why_not(f.url, f.sha256, True)}")
        err = download.download_all([(f.url, f.sha256, dest)], self.cert)[dest]
        if isinstance(err, download.Mismatch):
            raise WheelRejectedError(
                f"{f.filename!r} from {f.url!r} has sha256 {err.got}, not the {f.sha256} its index page gives",
                "the index served other bytes than it lists; nothing was stored; run the command again")
        if err is not None:
            raise Unsure(f"{f.filename!r} could not be downloaded: {err}")
        self.downloaded.append(dest)
        wheel_ready(dest)
        return _wheel_metadata(dest, f)

    def discard(self, keep=()) -> None:
        """Remove what was downloaded but ``keep``: pip's run starts from an empty download dir,
        and :func:`.fetch.fetch` finds only the planned wheels there."""
        for path in self.downloaded:
            if path not in keep:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def close(self) -> None:
        """Stop: the downloads read ahead are waited for (they write to the download dir), pages are
        not. Shared, what this plan asked for is waited for, not cancelled (another plan may need it)."""
        if self.own:
            self.shared.close()
            return
        from concurrent.futures import wait

        while True:  # what it waits for may read ahead more
            with self.lock:
                pending = [f for f in self.mine if not f.done()]
            if not pending:
                return
            wait(pending)


def _wheel_metadata(path: str, f: _File) -> str:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            found = [i for i in z.infolist() if i.filename.count("/") == 1
                     and i.filename.endswith(".dist-info/METADATA")]
            if len(found) != 1 or found[0].file_size > MAX_METADATA:
                raise Unsure(f"{f.filename!r} has {len(found)} .dist-info/METADATA: pip says what is wrong")
            return z.read(found[0]).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise Unsure(f"{f.filename!r} is not a readable zip ({e}): pip says what is wrong") from None


def _parse_metadata(text: str, project: str, f: _File) -> tuple[dict, list[str]]:
    from email.parser import HeaderParser

    msg = HeaderParser().parsestr(text)
    name, version = msg.get("Name"), msg.get("Version")
    try:
        same = normalize(name or "") == project and Version(version or "") == f.key
    except InvalidVersion:
        same = False
    if not same:
        raise WheelRejectedError(
            f"{f.filename!r} from {f.url!r} says it is {name!r} {version!r} in its METADATA, "
            f"not {project} {f.version} as its file name says",
            "the index serves a file that is not what it claims to be; nothing was stored")
    return {"requires-python": msg.get("Requires-Python")}, list(msg.get_all("Requires-Dist") or [])


# Resolution

def _rank(interpreter, f: _File) -> tuple:
    """pip's preference among the files of one version (higher is better): best tag, then build tag."""
    if f.tag is None:
        return (float("-inf"), ())
    return (-(interpreter.rank(f.tag) or 0), f.build)


def pip_choice(files: list[_File], spec: SpecifierSet, interpreter, prereleases) -> _File:
    """The file pip takes for ``spec``: newest allowed version, then its best file (as
    pip's ``find_best_candidate`` and the resolver's reversed walk of it)."""
    usable = [f for f in files if f.python_ok]
    allowed = set(spec.filter({f.version for f in usable}, prereleases=prereleases))
    usable = [f for f in usable if f.version in allowed]
    if not (bubbles._pinned(spec) and usable and all(f.yanked for f in usable)):
        usable = [f for f in usable if not f.yanked]
    if not usable:
        raise Unsure(f"no file matches {str(spec) or 'any version'}: pip says what it says")
    top = max(f.key for f in usable)
    best = [f for f in usable if f.key == top]
    rank = max(_rank(interpreter, f) for f in best)
    best = [f for f in best if _rank(interpreter, f) == rank]
    if best[0].tag is None:
        raise Unsure(f"the newest match, {best[0].filename!r}, is an sdist (no wheel for this Python): pip builds it")
    if len({f.url for f in best}) > 1:
        raise Unsure(f"{len(best)} equally good files of {best[0].version}: pip's choice depends on their order")
    return best[0]


def _resolve(session: _Session, root: Requirement, interpreter, prereleases) -> dict:
    from .fetch import Planned

    def available(name: str) -> list[dict]:
        return [{"name": name, "version": f.version, "tag": f.tag, "yanked": f.yanked, "file": f}
                for f in session.page(name) if f.tag is not None and f.python_ok]

    def requires(m: dict) -> list[str]:
        return session.requires_of(m["name"], m["file"])

    try:
        picked = bubbles.resolve_closure(root, available, interpreter, prereleases=prereleases, requires=requires)
    except bubbles.ClosureError as e:
        raise Unsure(f"{e}: pip backtracks, pip-omni does not") from None
    # Each requirement on a dist, alone, must allow no better file than the one picked
    on: dict[str, list[SpecifierSet]] = {normalize(root.name): [root.specifier]}
    for p in picked.values():
        for line in requires(p.manifest):
            req = Requirement(line)
            if bubbles._applies(req, interpreter.markers, p.extras):
                on.setdefault(normalize(req.name), []).append(req.specifier)
    out = {}
    for name, p in picked.items():
        combined = SpecifierSet()
        for s in on[name]:
            combined &= s
        for spec in [combined, *on[name]]:
            best = pip_choice(session.page(name), spec, interpreter, prereleases)
            if best is not p.manifest["file"]:
                raise Unsure(f"{name}: {str(spec) or 'any version'} alone allows {best.filename!r}, "
                             f"not the {p.manifest['file'].filename!r} picked: pip's order decides")
        f = p.manifest["file"]
        if not f.sha256:
            raise Unsure(f"{f.filename!r} has no sha256 on the index page")
        out[name] = Planned(name, f.version, f.url, f.sha256, requires(p.manifest))
    return out


def plan(store, root, interpreter, common: list[str], work, verbose: int = 0):
    """``{name: fetch.Planned}`` for ``root`` (a named Requirement), as ``pip wheel`` would
    resolve it, or None (and why, at ``-v``) when pip must resolve."""
    from .. import progress
    from .fetch import _settings

    def why_pip(why: str) -> None:
        if verbose:
            progress.say(f"pip-omni: resolving {root} through pip: {why}")

    if _off():
        return why_pip(f"{ENV_OFF}={os.environ[ENV_OFF]}")
    if root.url is not None:
        return why_pip("a URL requirement")
    settings = _settings(interpreter, common)
    if settings.blocked:
        return why_pip(settings.blocked)
    srcs, why, pre = sources(settings, common)
    if srcs is None:
        return why_pip(why)
    session = _Session(store, srcs, settings, interpreter, work, _shared(srcs, settings, interpreter))
    session.prereleases = True if pre else None
    planned = None
    try:
        # one connection per host for the plan's pages, METADATA and wheels (the command's, in sharing())
        with download.connections(), progress.step(f"resolve {root} from {srcs.index_url}", verbose=verbose):
            session.prefetch(normalize(root.name), root.specifier, session.prereleases)
            for attempt in range(_LOOK_FURTHER + 1):
                try:
                    planned = _resolve(session, root, interpreter, session.prereleases)
                    break
                except _LookFurther as e:
                    if attempt == _LOOK_FURTHER:
                        raise Unsure(f"{e}, and {_LOOK_FURTHER} more like it") from None
    except (Unsure, InvalidPinError) as e:  # InvalidPinError: a Requires-Dist line pip may read otherwise
        return why_pip(str(e))
    finally:
        session.close()
        from .download import wheel_name

        session.discard([os.path.join(work.path, wheel_name(p.url) or "") for p in (planned or {}).values()])
    if verbose:
        pages = [session.pages[n] for n in session.names]
        files = sum(len(p.result()) for p in pages if p.done() and not p.cancelled() and p.exception() is None)
        progress.say(f"pip-omni: resolved {root} from the index without pip ({len(pages)} pages, {files} files)")
    return planned
