"""pip-omni's import side: choose, per process, which stored version of a distribution imports.

Standard library only. Loaded at interpreter start-up by ``omnipkg_hook.pth`` when
``OMNIPKG_PINS`` is set.
"""

from __future__ import annotations

from .errors import (
    AlreadyImportedError,
    BubbleNotFoundError,
    InvalidPinError,
    OmnipkgError,
    PinConflictError,
    StoreCorruptError,
    StoreError,
)

__version__ = "0.1.0"

__all__ = [
    "OmnipkgError",
    "InvalidPinError",
    "BubbleNotFoundError",
    "PinConflictError",
    "AlreadyImportedError",
    "StoreError",
    "StoreCorruptError",
]
