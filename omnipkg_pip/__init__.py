"""pip-omni's pip side: the ``pip-omni`` command, store writes, planning installs.

May import packaging, platformdirs and installer. Never imported by ``omnipkg_hook``.
"""

__version__ = "0.1.0"
