"""A script's inline metadata (PEP 723): the ``# /// script`` block, read as the PEP specifies.

::

    # /// script
    # requires-python = ">=3.11"
    # dependencies = ["rich==13.4.2", "click>=8"]
    # ///

The block is found with the PEP's reference regular expression and its content parsed with
``tomllib`` (``tomli`` before 3.11). Every problem -- two blocks, an unclosed one, TOML that
does not parse, a field of the wrong type, a requirement or specifier that is not valid --
is one :class:`ScriptMetadataError` that names ``file:line`` and quotes what is wrong.
Standard library only (plus ``tomli`` on 3.9/3.10), and requirements are checked with the
hook's own parser: reading a block never imports ``packaging``.
"""

from __future__ import annotations

import sys

from omnipkg_hook.errors import InvalidPinError, OmnipkgError

__all__ = ["Metadata", "ScriptMetadataError", "read", "read_cached", "has_block"]

# The reference implementation's expression (PEP 723, "Reference Implementation").
REGEX = r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
_OPEN = r"(?m)^# /// script[ \t]*$"
_EXAMPLE = '# /// script\n# dependencies = ["rich==13.4.2"]\n# ///'


class ScriptMetadataError(OmnipkgError, ValueError):
    """A ``# /// script`` block that is not valid PEP 723 metadata."""


class Metadata:
    """What a script block declares: ``dependencies`` (requirement strings, as written),
    ``requires_python`` (a specifier string or None), and where the block starts."""

    __slots__ = ("dependencies", "requires_python", "line", "where", "fits")

    def __init__(self, dependencies: list[str], requires_python: str | None, line: int, where: str) -> None:
        self.fits: dict[str, bool] = {}  # interpreter version -> satisfies requires-python (cache)
        self.dependencies = dependencies
        self.requires_python = requires_python
        self.line = line
        self.where = where

    def __repr__(self) -> str:
        return f"<Metadata {self.where}:{self.line} {self.dependencies!r} python{self.requires_python or ''}>"


def has_block(source: bytes) -> bool:
    """Cheap test before decoding: can ``source`` hold a script block at all?"""
    return b"# /// script" in source


def _decode(source: bytes, where: str) -> str:
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError:
        import io
        import tokenize

        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
            return source.decode(encoding)
        except (SyntaxError, LookupError, UnicodeDecodeError) as e:
            raise ScriptMetadataError(f"{where}: cannot decode the script: {e}",
                                      "save it as UTF-8 or declare its encoding (PEP 263)") from None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_cached(source: bytes, where: str, store_root: str) -> Metadata | None:
    """:func:`read`, remembered in ``<store>/cache/pep723/`` (marshal): a script run again, byte
    for byte the same, gets its block back without TOML, regular expressions, the PEP 440
    code or the requirement parser (a few milliseconds that a warm run cannot spare)."""
    import marshal
    import os
    import zlib

    path = os.path.join(store_root, "cache", "pep723", f"{zlib.crc32(source):08x}-{len(source):x}.marshal")
    try:
        with open(path, "rb") as f:
            data = marshal.load(f)
        if type(data) is dict and data.get("source") == source:  # the whole text: no false hit
            meta = Metadata(list(data["deps"]), data["python"], data["line"], where)
            meta.fits = dict(data["fits"])
            return meta
    except (OSError, ValueError, EOFError, TypeError, KeyError):
        pass
    meta = read(source, where)
    if meta is None:
        return None
    here = ".".join(map(str, sys.version_info[:3]))
    meta.fits = {here: meta.requires_python is None or _specifier(meta.requires_python).contains(here, prereleases=True)}
    try:  # a failure here only costs the next run the parse
        from omnipkg_hook.store import makedirs  # 0755 whatever the umask

        makedirs(os.path.dirname(path))
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            marshal.dump({"source": source, "deps": meta.dependencies, "python": meta.requires_python,
                          "line": meta.line, "fits": meta.fits}, f)
        os.replace(tmp, path)
    except OSError:
        pass
    return meta


def _specifier(text: str):
    from omnipkg_hook._pep440 import SpecifierSet

    return SpecifierSet(text)


def read(source: bytes | str, where: str = "<script>") -> Metadata | None:
    """The script block of ``source`` (None when it has none); raises :class:`ScriptMetadataError`."""
    import re

    text = source if isinstance(source, str) else _decode(source, where)
    text = text.replace("\r\n", "\n")
    matches = [m for m in re.finditer(REGEX, text) if m.group("type") == "script"]
    if len(matches) > 1:
        raise ScriptMetadataError(
            f"{where}:{_line_of(text, matches[1].start())}: a second '# /// script' block "
            f"(the first is at line {_line_of(text, matches[0].start())})",
            "PEP 723 allows one script block; merge them",
        )
    if not matches:
        opened = re.search(_OPEN, text)
        if opened is not None:
            raise ScriptMetadataError(
                f"{where}:{_line_of(text, opened.start())}: the '# /// script' block is not closed "
                "(every line up to a '# ///' line must start with '#')",
                f"write it as:\n{_EXAMPLE}",
            )
        return None
    m = matches[0]
    first = _line_of(text, m.start())
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in m.group("content").splitlines(keepends=True))
    data = _toml(content, where, first)
    return _validate(data, where, first, m.group("content"))


def _toml(content: str, where: str, first: int) -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as e:
        import re

        message = str(e)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        if found:
            line = first + int(found.group(1))
        else:  # "(at end of document)": the block's last line
            line = first + max(content.count("\n"), 1)
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", message)
        raise ScriptMetadataError(f"{where}:{line}: the script block is not valid TOML: {message}",
                                  "each line of the block is '# ' followed by TOML") from None


def _where_in_block(block: str, first: int, needle: str) -> int:
    for i, line in enumerate(block.splitlines(), 1):
        if needle in line:
            return first + i
    return first


def _check_marker(text: str) -> None:
    from omnipkg_hook._markers import InvalidMarker, Marker

    try:
        Marker(text)
    except InvalidMarker as e:
        raise InvalidPinError(f"the marker {text!r} is not valid: {e}", 'e.g. "rich>=13; python_version >= \'3.10\'"') from None


def _validate(data: dict, where: str, first: int, block: str) -> Metadata:
    from omnipkg_hook._pep440 import InvalidSpecifier, SpecifierSet
    from omnipkg_hook._requirements import parse_requirement

    deps = data.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise ScriptMetadataError(
            f"{where}:{_where_in_block(block, first, 'dependencies')}: 'dependencies' must be a list "
            f"of requirement strings, not {deps!r}",
            'e.g. dependencies = ["rich==13.4.2"]',
        )
    for dep in deps:
        try:
            req = parse_requirement(dep)
            if req.marker is not None:
                _check_marker(req.marker)
        except InvalidPinError as e:
            raise ScriptMetadataError(f"{where}:{_where_in_block(block, first, dep)}: dependency {dep!r}: "
                                      f"{e.message}", e.hint) from None
    python = data.get("requires-python")
    if python is not None:
        if not isinstance(python, str):
            raise ScriptMetadataError(
                f"{where}:{_where_in_block(block, first, 'requires-python')}: 'requires-python' must be "
                f"a string, not {python!r}", 'e.g. requires-python = ">=3.11"',
            )
        try:
            SpecifierSet(python)
        except InvalidSpecifier as e:
            raise ScriptMetadataError(
                f"{where}:{_where_in_block(block, first, 'requires-python')}: requires-python {python!r} "
                f"is not a version specifier: {e}", 'e.g. requires-python = ">=3.11"',
            ) from None
    return Metadata(list(deps), python, first, where)
