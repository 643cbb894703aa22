"""Where pip-omni writes what is not store content: pip's logs and the interpreter probe cache.

Both follow the store, so a project store (``[tool.omnipkg] store``) or a CI store
(``OMNIPKG_STORE``) keeps its logs and caches beside it and a fixed home directory is
never assumed:

- pip logs: ``$OMNIPKG_LOG_DIR``, else ``<store>/logs`` (the newest 50 are kept);
- interpreter facts: ``$OMNIPKG_CACHE_DIR/interpreters``, else ``<store>/cache/interpreters``.

A store directory this user cannot write (a shared, read-only store) falls back to the
user's log and cache directories (``platformdirs``).
"""

from __future__ import annotations

import os

from omnipkg_hook.store import find_store

__all__ = ["log_dir", "cache_dir"]


def _beside_store(sub: str, fallback) -> str:
    root = find_store()
    if os.path.isdir(root) and not os.access(root, os.W_OK | os.X_OK):
        return fallback()
    return os.path.join(root, sub)


def log_dir() -> str:
    env = os.environ.get("OMNIPKG_LOG_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))

    def user() -> str:
        import platformdirs

        return platformdirs.user_log_dir("pip-omni", appauthor=False)

    return _beside_store("logs", user)


def cache_dir() -> str:
    env = os.environ.get("OMNIPKG_CACHE_DIR")
    if env:
        return os.path.abspath(os.path.expanduser(env))

    def user() -> str:
        import platformdirs

        return platformdirs.user_cache_dir("pip-omni", appauthor=False)

    return _beside_store("cache", user)
