"""Requirements and constraints files, read as pip reads them, where pip-omni must see their lines.

``install -r FILE`` needs each requirement on its own so that two versions of one name
(``rich==13.4.2`` and ``rich==13.5.3``, as ``freeze --bubbles`` prints them) become two
bubbles instead of one pip conflict; ``-c FILE`` must bound bubbles as it bounds pip.
What is read: requirement lines, comments, ``\\`` continuations, nested ``-r``/``-c``
(relative to the file), ``-e``, and the global options pip allows in a file (index,
find-links, pre, binary choices). A file with anything else (``--hash``, a URL as
the file name, an option pip-omni does not read) is *opaque*: it is handed to pip
whole, as ``-r FILE``/``-c FILE``, and no shortcut that would need its lines is taken.
"""

from __future__ import annotations

import os

from omnipkg_hook.errors import OmnipkgError

__all__ = ["Parsed", "read", "is_direct"]

# global options pip accepts in a requirements file: passed on to every pip run
_GLOBAL_VALUE = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--trusted-host",
                 "--only-binary", "--no-binary"}
_GLOBAL_FLAG = {"--no-index", "--pre", "--prefer-binary"}
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar")


class Parsed:
    """What the files say (a plain class: ``install`` imports this module on its warm path,
    where ``dataclasses`` would cost more than the install)."""

    __slots__ = ("requirements", "editables", "constraints", "options", "opaque")

    def __init__(self) -> None:
        self.requirements: list[str] = []
        self.editables: list[str] = []
        self.constraints: list[str] = []  # requirement lines of -c files
        self.options: list[str] = []  # global pip options found in the files
        self.opaque: list[tuple[str, str]] = []  # ("-r"|"-c", file) to hand to pip

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Parsed):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return f"Parsed({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


def is_direct(text: str) -> bool:
    """Whether a command-line requirement is a path or URL (``.``, ``./dist/x.whl``, ``git+https://...``)."""
    if "://" in text.split("@", 1)[0] or text.startswith(("git+", "hg+", "svn+", "bzr+", "file:")):
        return True
    if text in (".", "..") or text.startswith(("./", "../", "/", "~")) or os.sep in text.split(";")[0]:
        return True
    return text.lower().endswith(_ARCHIVES) or os.path.isdir(text)


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise OmnipkgError(f"requirements file {path!r} is not UTF-8 text", "save it as UTF-8") from None
    except OSError as e:
        raise OmnipkgError(f"cannot read requirements file {path!r}: {e.strerror or e}",
                           "check the path (it is relative to the current directory)") from None
    out, pending = [], ""
    for raw in text.splitlines():
        line = pending + raw
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        if line.lstrip().startswith("#"):
            continue
        line = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if line:
            out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def read(requirement_files: list[str], constraint_files: list[str]) -> Parsed:
    parsed = Parsed()
    for f in requirement_files:
        _read(f, "-r", parsed, set())
    for f in constraint_files:
        _read(f, "-c", parsed, set())
    return parsed


def _read(path: str, kind: str, parsed: Parsed, seen: set) -> None:
    if "://" in path:
        parsed.opaque.append((kind, path))
        return
    real = os.path.realpath(path)
    if real in seen:
        return
    seen.add(real)
    lines = _lines(path)
    entries: list[tuple[str, str]] = []  # (kind of line, text)
    for line in lines:
        if not line.startswith("-"):
            if "--hash" in line or " -" in line:  # per-requirement options: pip must see the file
                parsed.opaque.append((kind, path))
                return
            entries.append(("req", line))
            continue
        import shlex

        try:
            words = shlex.split(line)
        except ValueError:
            parsed.opaque.append((kind, path))
            return
        opt, _eq, value = words[0].partition("=")
        if not value and len(words) > 1 and not words[0].startswith("--") and len(opt) > 2:
            opt, value = opt[:2], opt[2:]
        elif not value and len(words) > 1:
            value = " ".join(words[1:])
        elif not value and len(opt) > 2 and not opt.startswith("--"):
            opt, value = opt[:2], opt[2:]
        if opt in ("-r", "--requirement", "-c", "--constraint") and value:
            entries.append(("-c" if opt in ("-c", "--constraint") else "-r",
                            os.path.join(os.path.dirname(path), value)))
        elif opt in ("-e", "--editable") and value:
            entries.append(("-e", value))
        elif opt in _GLOBAL_VALUE and value:
            entries.append(("opt", f"{opt}={value}" if opt.startswith("--") else f"{opt}{value}"))
        elif opt in _GLOBAL_FLAG:
            entries.append(("opt", opt))
        else:
            parsed.opaque.append((kind, path))
            return
    for what, text in entries:
        if what == "req":
            (parsed.constraints if kind == "-c" else parsed.requirements).append(text)
        elif what == "-e":
            parsed.editables.append(text)
        elif what == "opt":
            parsed.options.append(text)
        else:
            _read(text, "-c" if kind == "-c" or what == "-c" else "-r", parsed, seen)
