"""Where pip-omni writes what is not store content: pip's logs and the interpreter probe cache.

Both follow the store, so a project store (``[tool.omnipkg] store``) or a CI store
(``OMNIPKG_STORE``) keeps its logs and caches beside it and a fixed home directory is
never assumed:

- pip logs: ``$OMNIPKG_LOG_DIR``, else ``<store>/logs`` (the newest 50 are kept);
- interpreter facts: ``$OMNIPKG_CACHE_DIR/interpreters``, else ``<store>/cache/interpreters``.

A store directory this user cannot or must not write (a shared, read-only store, one
whose directories are links: ``store.check_writable``) falls back to the user's log and
cache directories (``platformdirs``). Neither is store content: tests that fingerprint a
store (``tests/conftest.py:store_state``) leave them out.
"""

from __future__ import annotations

import os

from omnipkg_hook.store import find_store

__all__ = ["log_dir", "cache_dir"]


def _where(variable: str, sub: str, user: str) -> str:
    env = os.environ.get(variable)
    if env:
        return os.path.abspath(os.path.expanduser(env))
    from omnipkg_hook.errors import StoreError
    from omnipkg_hook.store import Store, check_writable

    root = find_store()
    if os.path.isdir(root):
        try:
            if not os.access(root, os.W_OK | os.X_OK):
                raise StoreError("read-only")
            check_writable(Store(root))  # another user's, or a directory of it a link: never written
        except StoreError:
            import platformdirs

            return getattr(platformdirs, user)("pip-omni", appauthor=False)
    return os.path.join(root, sub)


def log_dir() -> str:
    return _where("OMNIPKG_LOG_DIR", "logs", "user_log_dir")


def cache_dir() -> str:
    return _where("OMNIPKG_CACHE_DIR", "cache", "user_cache_dir")
