"""A bubble from pip's plan: pip resolves once, pip-omni fetches only what the store lacks.

pip's installation report (``pip install --dry-run --report``) names, per dist, the
version and the very file pip chose (``download_info``: URL and sha256). From it,
:func:`plan_bubble` takes the root's closure (a dist the report leaves out because main
already satisfies it is main's version, its requirements read from main's
``METADATA``) and sorts each dist:

- **stored from that file**: the store has the name/version/tag made from a wheel with
  that sha256 (``wheel_sha256``, or ``origin_sha256`` for a wheel pip built from that
  sdist). Used as it is, not fetched.
- **stored from another file** (another index, a ``-f`` folder with another build):
  fetched again, so ingest compares the two (``ingest._check_same_wheel``): the same
  files are one dist, other files are refused naming both sha256. A stored dist is never
  handed out as a wheel it is not.
- **not stored**: fetched.

:func:`fetch` fetches what is left in one ``pip wheel --no-deps`` of exactly those files (the
URL with ``#sha256=``, which pip checks; if pip cannot fetch the URL itself, e.g. an
index whose credentials only its own URL carries, ``name==version`` through the index,
and the sha256 compared here). Before that run, a planned wheel that is a local file (a ``-f``
folder, a ``file://`` index) is copied, and one at an https URL with a sha256 in the plan is
downloaded by pip-omni itself (:mod:`.download`), both checked against pip's sha256; only
what is left, or what pip's settings or a failed download send back, goes to ``pip wheel``.
pip resolves and chooses every file, with its configuration and auth; pip-omni only
downloads the file pip chose and checks its sha256. No second resolve runs. The URL each
wheel came from is recorded in its dist manifest (``origin``); ``doctor -v`` shows it.

A plan that is not files (a directory, a VCS checkout) or a closure it cannot complete
is None, and the caller lets ``pip wheel`` resolve as before.
"""

from __future__ import annotations

import os
import shutil

from omnipkg_hook._pep440 import InvalidVersion, Version
from omnipkg_hook.errors import OmnipkgError, PipError
from omnipkg_hook.store import normalize

from .. import pip
from . import bubbles, wheel_ready

__all__ = ["Planned", "planned_from_report", "plan_bubble", "fetch", "BubblePlan"]


class Planned:
    """One dist of the plan: the file pip chose (``url`` None: main's copy, not in the report)."""

    __slots__ = ("name", "version", "url", "sha256", "requires_dist")

    def __init__(self, name: str, version: str, url: str | None, sha256: str | None, requires_dist=()) -> None:
        self.name, self.version, self.url, self.sha256 = name, version, url, sha256
        self.requires_dist = list(requires_dist)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1] if self.url else ""

    @property
    def tag(self) -> str | None:
        """The wheel tag of the planned file; None for an sdist or main's copy."""
        if not self.filename.endswith(".whl"):
            return None
        return "-".join(self.filename[:-4].split("-")[-3:])

    def requirement(self) -> str:
        """What ``pip wheel --no-deps`` is given: the exact file, its hash checked by pip."""
        if self.url is None:
            return f"{self.name}=={self.version}"
        return f"{self.url}#sha256={self.sha256}" if self.sha256 else self.url


def planned_from_report(report: dict) -> dict[str, Planned] | None:
    """``{name: Planned}`` of pip's report; None when an item is not a file (a directory, VCS)."""
    out = {}
    for entry in report.get("install", []):
        info = entry.get("download_info") or {}
        archive = info.get("archive_info")
        if archive is None or not info.get("url"):
            return None
        hashes = archive.get("hashes") or {}
        sha = hashes.get("sha256")
        if sha is None and str(archive.get("hash", "")).startswith("sha256="):
            sha = archive["hash"][len("sha256="):]
        meta = entry["metadata"]
        name = normalize(meta["name"])
        out[name] = Planned(name, meta["version"], info["url"], sha, meta.get("requires_dist") or ())
    return out


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


class BubblePlan:
    """The root's closure as pip planned it: what the store has, what to fetch."""

    def __init__(self) -> None:
        self.stored: dict[str, list[dict]] = {}  # name -> [the stored dist manifest used]
        self.fetch: list[Planned] = []
        self.replaced: list[tuple[Planned, dict]] = []  # stored from another file: fetched to compare

    def paths(self, store) -> dict[str, str]:
        """``{name: dist path}`` of the stored dists used (all of them when nothing is fetched)."""
        return {n: store.dist_relpath(ms[0]["name"], ms[0]["version"], ms[0]["tag"]) for n, ms in self.stored.items()}


def _main_requires(directory: str, name: str, version: str) -> list[str] | None:
    """``Requires-Dist`` of main's ``name`` ``version`` in ``directory`` (its METADATA, read as text)."""
    from email.parser import HeaderParser

    try:
        entries = os.listdir(directory)
    except OSError:
        return None
    for entry in entries:
        if not entry.endswith(".dist-info"):
            continue
        dist, _, ver = entry[: -len(".dist-info")].rpartition("-")
        if normalize(dist) == name and _same_version(ver, version):
            try:
                with open(os.path.join(directory, entry, "METADATA"), encoding="utf-8", errors="replace") as f:
                    return HeaderParser().parse(f).get_all("Requires-Dist") or []
            except OSError:
                return None
    return None


def plan_bubble(store, root, planned: dict[str, Planned], interpreter, main_dirs=None) -> BubblePlan | None:
    """The closure of ``root`` (a Requirement) through ``planned`` and, for names the plan leaves
    out, main's versions (``main_dirs()`` -> ``{name: (version, directory)}``, called when needed).
    None when it cannot be completed that way."""
    index = bubbles.StoreIndex(store)
    main: dict | None = None
    pseudo: dict[str, Planned] = {}

    def available(name: str) -> list[dict]:
        nonlocal main
        p = planned.get(name)
        if p is None:
            if main is None:
                main = main_dirs() if main_dirs is not None else {}
            version, directory = main.get(name, (None, None))
            requires = _main_requires(directory, name, version) if version is not None else None
            if requires is None:
                return []
            p = Planned(name, version, None, None, requires)
        pseudo[name] = p
        return [{"name": name, "version": p.version, "tag": p.tag or "py3-none-any", "requires_dist": p.requires_dist}]

    try:
        picked = bubbles.resolve_closure(root, available, interpreter, prereleases=True)
    except (bubbles.ClosureError, OmnipkgError, ValueError):
        return None
    out = BubblePlan()
    for name in picked:
        p = pseudo[name]
        same = [m for m in index(name) if _same_version(m["version"], p.version) and interpreter.supports(m["tag"])]
        if p.tag is not None:
            same = [m for m in same if m["tag"] == p.tag]
        if p.url is None:  # main's copy: any stored build of it will do, as pip would install it
            best = sorted(same, key=lambda m: interpreter.rank(m["tag"]) or 0)
            if best:
                out.stored[name] = best[:1]
            else:
                out.fetch.append(p)
            continue
        match = [m for m in same if p.sha256 and p.sha256 in (m.get("wheel_sha256"), m.get("origin_sha256"))]
        unrecorded = [m for m in same if p.tag is not None and not m.get("wheel_sha256")]
        if match or unrecorded:
            out.stored[name] = (match or unrecorded)[:1]
        else:
            out.fetch.append(p)
            if same and p.tag is not None:
                out.replaced.append((p, same[0]))
    return out


def _local_wheel(p: Planned) -> str | None:
    """The path of a planned wheel that is a local file with a known sha256, else None."""
    if not (p.url and p.url.startswith("file://") and p.tag is not None and p.sha256):
        return None
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(p.url)
    path = unquote(parts.path)
    return path if parts.netloc in ("", "localhost") and os.path.isfile(path) else None


def _downloaded(p: Planned, work) -> bool:
    from .download import wheel_name

    name = wheel_name(p.url) if p.url and p.tag is not None and p.sha256 else None
    return name is not None and os.path.isfile(os.path.join(work.path, name))


def _settings(interpreter, common: list[str]):
    """pip's settings for a direct download (:func:`.download.pip_settings`), read once per command."""
    import sys

    from . import download

    key = (tuple(common), interpreter.prefix, sys.prefix)
    if key not in _SETTINGS:
        _SETTINGS[key] = download.pip_settings(common, [interpreter.prefix, sys.prefix])
    return _SETTINGS[key]


_SETTINGS: dict = {}


def _names(planned: list[Planned]) -> str:
    return ", ".join(f"{p.name}=={p.version}" for p in planned)


def _copy_local(p: Planned, work) -> None:
    """Copy a planned wheel that is a local file into ``work``; a full store is the store's one line."""
    dest = os.path.join(work.path, os.path.basename(_local_wheel(p)))
    try:
        shutil.copyfile(_local_wheel(p), dest)
    except OSError as e:
        import errno

        from omnipkg_hook.store import store_oserror

        # a full store is not a bad file (copyfile names the source, the store is the target)
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise store_oserror(work.store.root, OSError(e.errno, e.strerror, dest)) from None
        raise


def _split(interpreter, wanted: list[Planned], common: list[str], verbose: int):
    """``(settings, direct, left)``: the files downloaded directly (:mod:`.download`) and those pip fetches."""
    from .. import progress
    from . import download

    settings = _settings(interpreter, common)
    go, left = [], []
    for p in wanted:
        why = settings.blocked or download.why_not(p.url, p.sha256, p.tag is not None)
        if why is None:
            go.append(p)
        else:
            left.append(p)
            if verbose:
                progress.say(f"pip-omni: {p.filename or p.name} through pip: {why}")
    return settings, go, left


def _direct(settings, go: list[Planned], work, verbose: int) -> list[Planned]:
    """Download ``go`` directly; returns those whose download failed, for pip.

    Other bytes than planned: :class:`WheelRejectedError` naming both sha256 and the URL.
    """
    from omnipkg_hook.errors import WheelRejectedError

    from .. import progress
    from . import download

    dest = {p.name: os.path.join(work.path, download.wheel_name(p.url)) for p in go}
    results = download.download_all([(p.url, p.sha256, dest[p.name]) for p in go], settings.cert)
    bad, left = [], []
    for p in go:
        err = results[dest[p.name]]
        if isinstance(err, download.Mismatch):
            bad.append((p, err.got))
        elif err is not None:
            left.append(p)
            if verbose:
                progress.say(f"pip-omni: {p.filename} through pip: the direct download failed: {err}")
        elif verbose:
            progress.say(f"pip-omni: {p.filename} downloaded directly from {p.url} (sha256 as planned)")
    if bad:
        for path in dest.values():
            try:
                os.unlink(path)
            except OSError:
                pass
        p, got = bad[0]
        raise WheelRejectedError(
            f"{p.filename!r} from {p.url!r} has sha256 {got}, not the {p.sha256} pip planned",
            "the index served other bytes than pip resolved; nothing was stored; run the command again")
    return left


def fetch(interpreter, plan: BubblePlan, work, common: list[str], verbose: int) -> tuple[list[str], dict]:
    """Fetch ``plan.fetch`` into ``work`` (a ``DownloadDir``): local files copied, the rest
    downloaded directly (:mod:`.download`) where pip's settings allow, and what is left in
    one ``pip wheel --no-deps``.

    Returns the wheel paths and ``{path: {"url", "sha256"}}`` for ``ingest_wheel``'s ``origin``.
    """
    if not plan.fetch:
        return [], {}
    from omnipkg_hook.store import file_sha256

    from .. import progress

    # Already in the download dir (:mod:`.indexplan` read its requirements from it): its sha256 is checked below
    want = [p for p in plan.fetch if not _downloaded(p, work)]
    what = f"fetch {_names(want)}"
    local = [p for p in want if _local_wheel(p) is not None]
    remote = [p for p in want if p not in local]
    settings, go, remote = _split(interpreter, remote, common, verbose) if remote else (None, [], [])
    if local or go:
        with progress.step(what if not remote else f"fetch {_names(local + go)}", verbose=verbose):
            for p in local:  # a wheel file pip chose on this machine (a -f folder, a file:// index): copied
                _copy_local(p, work)
            if go:  # the files pip chose, from their URLs, each sha256 checked (writers/download.py)
                remote += _direct(settings, go, work, verbose)
    args = ["wheel", "--no-deps", "--wheel-dir", work.path, *common]
    what = f"fetch {_names(remote)}"
    try:
        if remote:
            pip.run_pip(interpreter.executable, [*args, *(p.requirement() for p in remote)],
                        what=what, verbose=verbose, hold=work)
    except PipError:
        if all(p.url is None for p in remote):
            raise
        # The URL alone may lack what the index gives pip (credentials in the index URL):
        # the same files through the index, by name and version; their sha256 is checked below.
        pip.run_pip(interpreter.executable, [*args, *(f"{p.name}=={p.version}" for p in remote)],
                    what=what, verbose=verbose, hold=work)
    by_name = {p.name: p for p in plan.fetch}
    wheels, origins = [], {}

    for fname in sorted(os.listdir(work.path)):
        if not fname.endswith(".whl"):
            continue
        path = os.path.join(work.path, fname)
        p = by_name.get(normalize(fname.split("-", 1)[0]))
        if p is None:
            continue
        if p.url is not None and p.tag is not None and p.sha256 and file_sha256(path) != p.sha256:
            raise PipError(f"{fname!r} has sha256 {file_sha256(path)}, not the {p.sha256} pip planned ({p.url})",
                           "the index or folder changed since pip resolved; run the command again")
        wheels.append(path)
        if p.url is not None:
            origins[path] = {"url": p.url, "sha256": p.sha256}
    for path in wheels:
        wheel_ready(path)
    return wheels, origins
