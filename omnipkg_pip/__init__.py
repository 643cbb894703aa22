"""pip-omni's pip side: the ``pip-omni`` command, store writes, planning installs.

May import packaging, platformdirs and installer. Never imported by ``omnipkg_hook``.
PYTEST_DONT_REWRITE (see ``omnipkg_hook``'s docstring).
"""

__version__ = "0.1.0"


def _store_modes() -> None:
    # What the pip side makes in a store under the writer lock is 0755 / 0644 whatever the
    # umask (README, "Reliability"): the lock sets umask 022 while it is held. A flag on the
    # hook's package, not on WriteLock, so that importing this package (every `pip-omni`
    # command, every pytest session that loads the plugin) does not import the store
    # module and the json it needs.
    import omnipkg_hook

    omnipkg_hook._fix_umask = True


_store_modes()
