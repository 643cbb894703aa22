"""``pip-omni store push|pull [REMOTE] [NAME==VERSION ...]``, and the remote step of ``install``.

``store`` itself is registered in :mod:`omnipkg_pip.commands.store`, which hands push and pull
here. REMOTE is ``s3://bucket/prefix`` or ``file:///path``; without it, the configured
remote (``--remote``, ``OMNIPKG_REMOTE``, ``[tool.omnipkg] remote``). See
:mod:`omnipkg_pip.remote`.
"""

from __future__ import annotations

import sys

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store, normalize

from ..text import plural

__all__ = ["add_store_options", "run", "add_install_options", "for_install", "pull_for_install", "push_made"]


def add_store_options(p) -> None:
    p.add_argument("--endpoint-url", metavar="URL",
                   help="push/pull: the S3-compatible service (default: AWS_ENDPOINT_URL, else AWS)")
    p.add_argument("--remote", metavar="URL", help="push/pull: the remote when REMOTE is not given")


def _backend(url: str, endpoint_url: str | None):
    from ..remote import open_backend

    return open_backend(url, endpoint_url)


def run(args) -> int:
    import contextlib
    import json

    from ..remote import settings, sync

    rest = list(args.args)
    url = rest.pop(0) if rest and "://" in rest[0] else settings(args.remote).url
    if not url:
        raise OmnipkgError(f"`pip-omni store {args.action}` needs a REMOTE",
                           "e.g. pip-omni store push s3://bucket/ci, or set OMNIPKG_REMOTE")
    key = main = None
    if args.python:
        from ..pythons import interpreters

        key = interpreters.resolve_python(Store(), args.python).key
    else:  # this interpreter's main environment, so what it serves is not compiled (as install)
        from omnipkg_hook.store import main_versions

        main = {n: v for n, (v, _d) in main_versions(exclude=Store().root).items()}
    backend = _backend(url, args.endpoint_url)
    store = Store()
    from .. import progress

    # A spinner on a terminal only: CI logs get the one summary line.
    with progress.step(f"{args.action} {url}") if sys.stderr.isatty() and not args.json else contextlib.nullcontext():
        result = (sync.push(store, backend, rest, key) if args.action == "push"
                  else sync.pull(store, backend, rest, key, main))
    if args.action == "push":
        summary = (f"pushed {plural(len(result['bubbles']), 'bubble')}, {plural(result['objects'], 'object')} "
                   f"({plural(result['object_bytes'], 'byte')}) to {url} ({len(result['present'])} already there)")
    else:
        summary = (f"pulled {plural(len(result['bubbles']), 'bubble')}, {plural(len(result['dists']), 'dist')}, "
                   f"{plural(result['objects'], 'object')} ({plural(result['fetched_bytes'], 'byte')}) from {url} "
                   f"({len(result['present'])} already in the store)")
    result["requests"] = backend.stats["requests"]
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(summary)
    return 0


# -- install: pull a bubble the remote has instead of running pip; push what was made ----------


def add_install_options(p) -> None:
    p.add_argument("--remote", metavar="URL", help="a remote store to pull bubbles from (s3://... or file:///...)")
    p.add_argument("--no-remote", action="store_true", help="do not use the configured remote store")
    p.add_argument("--push", action="store_true", help="push the bubbles made to the remote store")
    p.add_argument("--endpoint-url", metavar="URL", help="the S3-compatible service of the remote")


class _Remote:
    def __init__(self, url: str, push: bool, endpoint_url: str | None) -> None:
        self.url = url
        self.push = push
        self.endpoint_url = endpoint_url
        self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            self._backend = _backend(self.url, self.endpoint_url)
        return self._backend


def for_install(args):
    """The remote of this install, or None."""
    from ..remote import settings

    s = settings(args.remote, args.push, args.no_remote)
    if not s.url:
        if args.push and not args.no_remote:
            raise OmnipkgError("--push needs a remote", "pass --remote URL or set OMNIPKG_REMOTE")
        return None
    remote = _Remote(s.url, s.push, args.endpoint_url)
    if not args.dry_run:
        remote.backend  # noqa: B018 (a bad URL is one error before anything is done)
    return remote


def pull_for_install(remote, store: Store, req, interpreter, main: dict | None = None) -> dict | None:
    """Pull the best bubble of ``req`` the remote has for ``interpreter``; None if it has none.

    A remote that cannot be used is said in one line and pip is run instead.
    """
    if remote is None or req.url is not None or req.extras:
        return None
    from packaging.version import InvalidVersion, Version

    from .. import progress
    from ..remote import RemoteStoreError, sync

    name = normalize(req.name)
    try:
        versions = list(req.specifier.filter(sync.remote_versions(remote.backend, name, interpreter.key)))
        if not versions:
            return None
        try:
            best = max(versions, key=Version)
        except InvalidVersion:
            return None
        with progress.step(f"pull {name}=={best} from {remote.url}"):
            sync.pull(store, remote.backend, [f"{name}=={best}"], interpreter.key, main)
    except RemoteStoreError as e:
        print(f"pip-omni: not using the remote: {e.message}; running pip instead", file=sys.stderr)
        return None
    return store.load_bubble(name, best, interpreter.key)


def push_made(remote, store: Store, interpreter, rows) -> None:
    """Push the bubbles this install created, when asked to (``--push``, ``remote_push``)."""
    made = [f"{r.name}=={r.version}" for r in rows if r.where == "bubble" and r.action == "created"]
    if remote is None or not remote.push or not made:
        return
    from ..remote import RemoteStoreError, sync

    try:
        sync.push(store, remote.backend, made, interpreter.key)
    except RemoteStoreError as e:
        raise RemoteStoreError(f"installed, but pushing to {remote.url!r} failed: {e.message}", e.hint) from None
