"""Tiny real wheels for tests, written with zipfile (RECORD included).

``make_wheel(directory, "foo", "1.0", {"foo/__init__.py": "X = 1"}, requires=["bar>=2"])``
returns the path of ``foo-1.0-py3-none-any.whl``. ``tamper`` hooks let tests build
malicious or broken wheels on purpose.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from pathlib import Path

__all__ = ["make_wheel", "record_line"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def record_line(path: str, data: bytes) -> str:
    return f"{path},sha256={_b64(data)},{len(data)}"


def make_wheel(
    directory: os.PathLike | str,
    name: str,
    version: str,
    files: dict[str, str | bytes] | None = None,
    *,
    requires: list[str] = (),
    requires_python: str | None = None,
    extras: dict[str, list[str]] | None = None,
    entry_points: dict[str, dict[str, str]] | None = None,
    tag: str = "py3-none-any",
    metadata_name: str | None = None,
    executable: set[str] = frozenset(),
    extra_members: dict[str, bytes] | None = None,
    skip_record: set[str] = frozenset(),
    record_override: dict[str, str] | None = None,
    no_record: bool = False,
    metadata_override: str | None = None,
) -> Path:
    """Write a wheel and return its path.

    ``files`` maps paths inside the wheel to contents (default: one module named
    after the distribution). ``extra_members`` are written to the zip but not to
    RECORD; ``record_override`` replaces RECORD lines by path (for hash mismatches).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    mod = re.sub(r"[-.]+", "_", name).lower()
    if files is None:
        files = {f"{mod}/__init__.py": f"__version__ = {version!r}\n"}
    dist_name = re.sub(r"[-_.]+", "_", name)
    dist_info = f"{dist_name}-{version}.dist-info"
    meta = [
        "Metadata-Version: 2.1",
        f"Name: {metadata_name or name}",
        f"Version: {version}",
    ]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    meta += [f"Requires-Dist: {r}" for r in requires]
    for extra, reqs in (extras or {}).items():
        meta.append(f"Provides-Extra: {extra}")
        meta += [f'Requires-Dist: {r}; extra == "{extra}"' for r in reqs]
    members: dict[str, bytes] = {
        p: (c.encode() if isinstance(c, str) else c) for p, c in files.items()
    }
    members[f"{dist_info}/METADATA"] = (
        metadata_override if metadata_override is not None else "\n".join(meta) + "\n"
    ).encode()
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: pip-omni-tests\nRoot-Is-Purelib: "
        f"{'true' if tag.endswith('-none-any') else 'false'}\nTag: {tag}\n"
    ).encode()
    if entry_points:
        text = ""
        for section, items in entry_points.items():
            text += f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items())
        members[f"{dist_info}/entry_points.txt"] = text.encode()
    record_path = f"{dist_info}/RECORD"
    lines = []
    for path, data in members.items():
        if path in skip_record:
            continue
        line = record_line(path, data)
        if record_override and path in record_override:
            line = record_override[path]
        lines.append(line)
    lines.append(f"{record_path},,")
    wheel = directory / f"{dist_name}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in members.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if path in executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
        for path, data in (extra_members or {}).items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data)
        if not no_record:
            zf.writestr(zipfile.ZipInfo(record_path, date_time=(2020, 1, 1, 0, 0, 0)), "\n".join(lines) + "\n")
    return wheel
