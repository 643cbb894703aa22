"""Remote stores: a store shared by a CI fleet or a team, in S3 or a shared folder.

``pip-omni store push REMOTE [NAME==VERSION ...]`` uploads bubbles; ``store pull`` brings
them into the local store, verified before anything is published (:mod:`.sync`). The
bytes live behind a :mod:`.backends` backend: ``s3://bucket/prefix`` (boto3, the
``[s3]`` extra) or ``file:///path``.

Only the user chooses a remote: ``--remote URL``, ``OMNIPKG_REMOTE``, or
``[tool.omnipkg] remote = "..."`` (and ``remote_push = true``) in the nearest
pyproject.toml, trusted as for ``store`` (owned by the user running pip-omni or root). The import hook
never reads any of it: pins never touch the network.
"""

from __future__ import annotations

import os
import sys

__all__ = ["RemoteStoreError", "open_backend", "Settings", "settings"]


def __getattr__(name: str):
    # .backends (threading, uuid, platform) only once a remote is used: every install asks
    # `settings()` whether there is one, and most have none.
    if name in ("RemoteStoreError", "open_backend"):
        from . import backends

        return getattr(backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Settings:
    """The remote setting (a plain class: no ``dataclasses`` on the install path)."""

    __slots__ = ("url", "push", "source")

    def __init__(self, url: str | None, push: bool = False, source: str = "") -> None:
        self.url, self.push, self.source = url, push, source

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return (self.url, self.push, self.source) == (other.url, other.push, other.source)

    def __repr__(self) -> str:
        return f"Settings(url={self.url!r}, push={self.push!r}, source={self.source!r})"


def _pyproject_section(start: str) -> tuple[str | None, dict]:
    """The nearest trusted pyproject.toml above ``start`` and its ``[tool.omnipkg]``, through
    ``omnipkg_hook.store.trusted_pyproject`` (the one reader every setting uses)."""
    from omnipkg_hook.store import trusted_pyproject

    found = trusted_pyproject(start, "no remote from it (set OMNIPKG_REMOTE or pass --remote)")
    if found is None:
        return None, {}
    return found[0], _parse(*found)


def _parse(path: str, raw: bytes) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError as e:
        from .backends import RemoteStoreError

        raise RemoteStoreError(f"cannot read {path!r}: {e}", "fix the TOML, or set OMNIPKG_REMOTE") from None
    section = data.get("tool", {}).get("omnipkg", {})
    return section if isinstance(section, dict) else {}


def settings(cli_url: str | None = None, cli_push: bool = False, no_remote: bool = False,
             cwd: str | None = None) -> Settings:
    """The remote the user configured and whether installs push to it."""
    if no_remote:
        return Settings(None)
    pyproject, section = _pyproject_section(cwd or os.getcwd())
    push = cli_push or section.get("remote_push") is True
    if "remote_push" in section and not isinstance(section["remote_push"], bool):
        from .backends import RemoteStoreError

        raise RemoteStoreError(f"[tool.omnipkg] remote_push in {pyproject!r} must be true or false, "
                               f"not {section['remote_push']!r}", "write remote_push = true")
    if cli_url:
        return Settings(cli_url, push, "--remote")
    env = os.environ.get("OMNIPKG_REMOTE", "").strip()
    if env:
        return Settings(env, push, "OMNIPKG_REMOTE")
    url = section.get("remote")
    if url is None:
        return Settings(None, push)
    if not isinstance(url, str) or not url:
        from .backends import RemoteStoreError

        raise RemoteStoreError(f"[tool.omnipkg] remote in {pyproject!r} must be a URL, not {url!r}",
                               'write remote = "s3://bucket/prefix" or "file:///path"')
    return Settings(url, push, pyproject)
