"""PEP 508 requirements and the ``OMNIPKG_PINS`` format, standard library only.

``parse_requirement`` accepts what ``packaging.requirements.Requirement`` accepts, except
that a marker is kept as raw text and only checked to be non-empty. ``parse_pins`` reads
``OMNIPKG_PINS``: requirements separated by commas and/or whitespace, where a comma
followed by a version operator continues the previous specifier set
(``rich>=13,<14,click==7.1.2``), or ``@path``, a requirements-style file.
"""

from __future__ import annotations

import os
import re

from ._pep440 import InvalidSpecifier, SpecifierSet, _plain_specifier_end, _specifier_re
from .errors import InvalidPinError
from .store import normalize

__all__ = ["Requirement", "parse_requirement", "split_pins", "parse_pins"]
# ``typing`` is not imported (it costs more than a warm bubble's work): the ``fail`` methods
# below always raise.

_NAME = re.compile(r"\b[a-zA-Z0-9][a-zA-Z0-9._-]*\b")  # packaging's IDENTIFIER
_WS = re.compile(r"[ \t]*")
_URL = re.compile(r"[^ \t]+")
_OPERATOR = re.compile(r"===|~=|==|!=|<=|>=|<|>")
_OPERATOR_START = ("=", "~", "!", "<", ">")
_EXAMPLE = "write it as e.g. 'rich==13.4.2', 'rich>=13,<14' or 'rich[jupyter]~=13.4'"
_VERSION_HINT = (
    "a version specifier is an operator and a PEP 440 version: '==1.2.3', '>=2.0rc1', "
    "'!=1.4.*' ('.*' and '+local' only after == or !=)"
)


class Requirement:
    """A parsed PEP 508 requirement: ``Requirement("rich[jupyter]>=13,<14")``."""

    __slots__ = ("name", "key", "extras", "specifier", "marker", "url")

    def __init__(self, text: str) -> None:
        name, extras, spec, url, marker = _Parser(text).requirement()
        self.name: str = name  # as written
        self.key: str = normalize(name)  # PEP 503: "Rich_Text" -> "rich-text"
        self.extras: frozenset[str] = frozenset(normalize(e) for e in extras)
        try:  # '===' takes anything up to a space, commas included: '===1,+x'
            self.specifier = SpecifierSet(spec)
        except InvalidSpecifier as e:
            raise InvalidPinError(f"invalid requirement {text!r}: {e}", _VERSION_HINT) from None
        self.url: str | None = url
        self.marker: str | None = marker  # raw text after ';', never evaluated here

    def __str__(self) -> str:
        text = self.name
        if self.extras:
            text += f"[{','.join(sorted(self.extras))}]"
        text += str(self.specifier)
        if self.url:
            text += f" @ {self.url}" + (" " if self.marker else "")
        return text + (f"; {self.marker}" if self.marker else "")

    def __repr__(self) -> str:
        return f"<Requirement({str(self)!r})>"

    def _parts(self) -> tuple:
        return (self.key, self.extras, self.specifier, self.url, self.marker)

    def __eq__(self, other: object) -> bool:
        return self._parts() == other._parts() if isinstance(other, Requirement) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._parts())


def parse_requirement(text: str) -> Requirement:
    """``Requirement(text)``; raises :class:`InvalidPinError` quoting ``text``."""
    return Requirement(text)


class _Parser:
    """Recursive descent over one requirement, following packaging's grammar."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InvalidPinError(f"invalid requirement {text!r}: not a string", _EXAMPLE)
        self.text, self.pos = text, 0

    def fail(self, what: str, pos: int | None = None, hint: str = _EXAMPLE):
        column = (self.pos if pos is None else pos) + 1
        raise InvalidPinError(f"invalid requirement {self.text!r}: {what} at column {column}", hint)

    def take(self, pattern: re.Pattern) -> str | None:
        m = pattern.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def peek(self, char: str) -> bool:
        return self.text.startswith(char, self.pos)

    def requirement(self) -> tuple:
        self.take(_WS)
        name = self.take(_NAME)
        if not name:
            if not self.text.strip():
                self.fail("empty requirement", 0)
            self.fail("expected a distribution name")
        self.take(_WS)
        extras = self.extras() if self.peek("[") else []
        self.take(_WS)
        url = spec = marker = None
        if self.peek("@"):
            self.pos += 1
            self.take(_WS)
            url = self.take(_URL) or self.fail("expected a URL after '@'")
            self.take(_WS)
        else:
            spec = self.specifiers()
            self.take(_WS)
        if self.pos < len(self.text):
            if not self.peek(";"):
                self.unexpected(name, spec, url)
            marker = self.text[self.pos + 1 :].strip()
            if not marker:
                self.fail(
                    "expected a marker after ';'", hint="e.g. 'rich; python_version < \"3.10\"'"
                )
        return name, extras, spec or "", url, marker

    def extras(self) -> list[str]:
        opened = self.pos
        self.pos += 1
        self.take(_WS)
        extras = []
        extra = self.take(_NAME)
        while extra:
            extras.append(extra)
            self.take(_WS)
            if _NAME.match(self.text, self.pos):
                self.fail("expected ',' between extra names")
            if not self.peek(","):
                break
            self.pos += 1
            self.take(_WS)
            extra = self.take(_NAME) or self.fail("expected an extra name after ','")
        self.take(_WS)
        if not self.peek("]"):
            self.fail(f"expected ']' to close the '[' from column {opened + 1}",
                      hint="extras look like 'rich[jupyter,socks]'")  # fmt: skip
        self.pos += 1
        return extras

    def specifiers(self) -> str:
        opened = self.pos if self.peek("(") else None
        if opened is not None:
            self.pos += 1
            self.take(_WS)
        parts = []
        while True:
            start = self.pos
            end = _plain_specifier_end(self.text, start)
            if end >= 0:  # what the pattern would take, without compiling it
                spec, self.pos = self.text[start:end], end
            elif self.text[start:start + 1] in _OPERATOR_START:
                spec = self.take(_specifier_re())
            else:  # every specifier starts with an operator: none here (a bare name, a marker)
                spec = None
            if spec is None:
                if _OPERATOR.match(self.text, self.pos):
                    self.bad_version(start)
                break
            parts.append(spec)
            if self.pos < len(self.text) and self.text[self.pos] not in " \t,;)":
                self.bad_version(start)
            self.take(_WS)
            if not self.peek(","):
                break
            parts.append(",")
            self.pos += 1
            self.take(_WS)
        if opened is not None:
            self.take(_WS)
            if not self.peek(")"):
                self.fail(f"expected ')' to close the '(' from column {opened + 1}")
            self.pos += 1
        return "".join(parts)

    def bad_version(self, start: int):
        """Explain a specifier whose version part is not valid where it stands."""
        op = _OPERATOR.match(self.text, start).group()
        rest = re.match(r"[^ \t,;)]*", self.text[start + len(op) :].lstrip()).group()
        if op == "~=" and re.fullmatch(r"v?([0-9]+!)?[0-9]+[^.]*", rest):
            self.fail(f"'~={rest}' needs at least two release numbers", start,
                      hint=f"write e.g. '~={rest}.0', or '=={rest}.*'")  # fmt: skip
        if "+" in rest and op not in ("==", "!=", "==="):
            self.fail(f"a local version label cannot follow {op!r}", start,
                      hint="'+local' labels only go with == or !=, e.g. '==1.0+cpu'")  # fmt: skip
        if rest.endswith(".*") and op not in ("==", "!="):
            self.fail(f"'.*' cannot follow {op!r}", start, hint=f"use '=={rest}' or '!={rest}'")
        if not rest:
            self.fail(f"expected a version after {op!r}", start + len(op), _VERSION_HINT)
        self.fail(f"invalid version specifier {op + rest!r}", start, _VERSION_HINT)

    def unexpected(self, name: str, spec: str | None, url: str | None):
        at = self.text[self.pos]
        if url is not None:
            self.fail("expected ';' before a marker after the URL")
        if at == "=" and not spec:
            fixed = self.text[: self.pos] + "=" + self.text[self.pos :]
            self.fail(
                "expected a version operator (==, >=, ...)", hint=f"write it as {fixed.strip()!r}"
            )
        if _OPERATOR.match(self.text, self.pos):
            self.fail("expected ',' between version specifiers")
        if at == "[":
            self.fail(
                "extras must come right after the name", hint=f"write e.g. '{name}[extra]>=1'"
            )
        what = "',' or ';'" if spec else "a version specifier, '[extras]', '@ URL' or ';'"
        self.fail(f"unexpected {at!r}, expected {what}")


def split_pins(value: str) -> list[str]:
    """Requirements in one ``OMNIPKG_PINS`` value, each as written.

    Commas and whitespace separate requirements, except inside ``[...]``/``(...)``; a part
    that starts with an operator, ``[``, ``(``, ``@`` or ``;`` continues the previous one, as
    does the part after a bare operator or ``@`` (``rich >= 13``). A ``;`` (a marker, which
    ``parse_pins`` rejects) takes the rest of the value.
    """
    words: list[list[int]] = []  # [start, end] of runs split at depth 0 by commas/space
    depth, start = 0, None
    for i, ch in enumerate(value):
        if ch == ";":
            words.append([i if start is None else start, len(value)])
            start = None
            break
        if start is None:
            if ch == "," or ch.isspace():
                continue
            start = i
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth = max(depth - 1, 0)
        elif depth == 0 and (ch == "," or ch.isspace()):
            words.append([start, i])
            start = None
    if start is not None:
        words.append([start, len(value)])
    groups: list[list[int]] = []
    for word in words:
        text = value[word[0] : word[1]]
        previous = value[groups[-1][0] : groups[-1][1]] if groups else ""
        if previous and (text[0] in "<>=!~[(@;)]" or previous[-1] in "<>=!~@"):
            groups[-1][1] = word[1]
        else:
            groups.append(word)
    return [value[a:b] for a, b in groups]


_COMMENT = re.compile(r"(^|\s+)#.*$")


def parse_pins(value: str, *, source: str = "OMNIPKG_PINS") -> list[Requirement]:
    """Parse an ``OMNIPKG_PINS`` value (or ``@path``) into requirements, one per distribution.

    Errors name ``source`` (or ``file:line``) and quote the bad pin.
    """
    if value.strip().startswith("@"):
        items = _read_pin_file(value.strip()[1:].strip(), source)
    else:
        items = [(source, text) for text in split_pins(value)]
    pins: dict[str, tuple[str, str, Requirement]] = {}
    for where, text in items:
        try:
            req = parse_requirement(text)
        except InvalidPinError as e:
            raise InvalidPinError(f"{where}: {e.message}", e.hint) from None
        if req.marker is not None:
            raise InvalidPinError(
                f"{where}: pin {text!r} has an environment marker; markers are not supported "
                "in pins (pins apply to a whole process)",
                f"drop the marker and set the pin only where it applies: {_bare(req)!r}",
            )
        if req.url is not None:
            raise InvalidPinError(
                f"{where}: pin {text!r} is a URL; pins select versions from the store",
                f"store it with 'pip-omni install', then pin its version, e.g. '{req.name}==1.2.3'",
            )
        if req.key in pins:
            first_where, first, first_req = pins[req.key]
            also = f" (first at {first_where})" if first_where != where else ""
            raise InvalidPinError(
                f"{where}: {req.key!r} is pinned twice: {first!r} and {text!r}{also}",
                f"keep one pin per distribution, e.g. "
                f"'{req.name}{first_req.specifier & req.specifier}'",
            )
        pins[req.key] = (where, text, req)
    return [req for _, _, req in pins.values()]


def _read_pin_file(path: str, source: str) -> list[tuple[str, str]]:
    """``(file:line, requirement)`` for each requirement line of a pin file."""
    if not path:
        raise InvalidPinError(f"{source}: '@' names no file", f"write {source}=@path/to/pins.txt")
    from .store import read_regular_file  # a regular file of at most 1 MiB; a FIFO cannot block us

    try:
        lines = read_regular_file(os.path.expanduser(path))[0].decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidPinError(
            f"{source}: cannot read pin file {path!r}: {getattr(e, 'strerror', None) or e}",
            f"{source}=@path names a regular requirements-style file (at most 1 MiB) with one pin per line",
        ) from None
    items, pending, first = [], "", 0
    for number, line in enumerate([*lines, ""], 1):  # "" ends a trailing continuation
        if not pending:
            first = number
        if line.endswith("\\") and not _COMMENT.match(line):  # pip: a comment never continues
            pending += line[:-1]
            continue
        text, pending = _COMMENT.sub("", pending + line).strip(), ""
        if not text:
            continue
        where = f"{path}:{first}"
        if text.startswith("-"):
            raise InvalidPinError(
                f"{where}: pip option {text!r} is not supported in a pin file",
                "a pin file holds one requirement per line, e.g. 'rich==13.4.2'",
            )
        items.append((where, text))
    return items


def _bare(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"
