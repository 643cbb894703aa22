"""Content digest of directory trees: every file, link and directory, by path."""

from __future__ import annotations

import hashlib
import os

__all__ = ["tree_digest"]


def tree_digest(*roots, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """path -> sha256 and mode, link target, or 'dir' for everything under ``roots``.

    Directories named in ``skip`` are left out (``__pycache__`` included unless named).
    """
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in skip)
            out[dirpath] = "dir"
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    out[path] = "link:" + os.readlink(path)
                    continue
                st = os.stat(path)
                with open(path, "rb") as f:
                    out[path] = f"{hashlib.sha256(f.read()).hexdigest()} {oct(st.st_mode)}"
    return out
