"""PEP 440 versions and specifier sets, standard library only.

The hook must not import ``packaging`` (users may pin packaging itself), so this is the part
of ``packaging.version`` and ``packaging.specifiers`` it needs, behaving like packaging 26;
``tests/test_pep440.py`` checks the two against each other.

Where packaging releases disagree, we follow 26: ``contains(v)`` accepts an in-range
pre-release when ``prereleases`` is None (24/25 refused it unless a specifier named one),
and ``<V.postN`` accepts ``V.devM``. ``filter()`` keeps PEP 440's rule, pre-releases only
when no final release matches, so choose a version with ``filter`` then ``max``, not by
calling ``contains`` on each candidate.

Deliberate differences from packaging 26: an unparseable string never matches, not even an
empty set (``===`` still compares raw strings); an item that is neither ``str`` nor
:class:`Version` is a ``TypeError``, not a non-match; ``len()`` counts distinct specifiers;
versions are ASCII only (packaging's specifier regex lets ``'~=1.0prevıew'`` through, then
fails an assertion).
"""

from __future__ import annotations

import re

# ``typing`` and ``collections.abc`` are not imported: they cost more than the whole of a
# warm bubble's work (omnipkg_pip.writers.bubbles uses this module).

__all__ = ["InvalidVersion", "InvalidSpecifier", "Version", "parse_version", "SpecifierSet"]


class InvalidVersion(ValueError):
    """A string that is not a PEP 440 version."""


class InvalidSpecifier(ValueError):
    """A string that is not a PEP 440 specifier set."""


def _lazy(pattern: str, flags: int = 0):
    """A function returning ``re.compile(pattern, flags)``, compiled on its first call.

    The two patterns below cost more to compile than a warm bubble's whole resolution, and
    plain versions and specifiers (``13.4.2``, ``>=2.2.0``) never need them: those are read
    by :func:`_plain_release` / :func:`_plain_specifier_end`, which answer exactly as the
    patterns would or say they cannot tell (``tests/test_pep440.py`` checks both ways)."""
    box: list = []

    def compiled() -> re.Pattern:
        if not box:
            box.append(re.compile(pattern, flags))
        return box[0]

    compiled.box = box  # what the tests look at: compiled yet?
    return compiled


_version_re = _lazy(
    r"""\s*v?
    (?a:(?:(?P<epoch>[0-9]+)!)?
        (?P<release>[0-9]+(?:\.[0-9]+)*)
        (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
        (?:-(?P<post_n1>[0-9]+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
        (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    )
    (?a:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    \s*""",
    re.VERBOSE | re.IGNORECASE,
)
_PRE_LETTER = dict(alpha="a", a="a", beta="b", b="b", c="rc", pre="rc", preview="rc", rc="rc")
_PRE_RANK = {"a": 0, "b": 1, "rc": 2}

# One specifier, as packaging's Specifier regex: which operators take a wildcard, a local
# label, a single release segment. Also the SPECIFIER token of the PEP 508 parser.
_REL = r"v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
_SUFFIX = (
    r"(?:[-_.]?(?:alpha|beta|preview|pre|a|b|c|rc)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?(?:[-_.]?dev[-_.]?[0-9]*)?"
)
_specifier_re = _lazy(
    r"===\s*[^\s;)]+"
    rf"|(?:==|!=)\s*(?a:{_REL}(?:\.\*|{_SUFFIX}(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?))"
    rf"|~=\s*(?a:v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)+{_SUFFIX})"
    rf"|(?:<=|>=|<|>)\s*(?a:{_REL}{_SUFFIX})",
    re.IGNORECASE,
)


def _plain_release(text: str) -> list[str] | None:
    """The parts of ``text`` if it is ASCII digits separated by single dots (``13.4.2``), else None."""
    parts = text.split(".")
    for part in parts:
        if not (part.isdigit() and part.isascii()):
            return None
    return parts


_ENDS_SPECIFIER = " \t,;)"  # what may follow a specifier in a requirement


def _plain_specifier_end(text: str, pos: int = 0) -> int:
    """Where ``_specifier_re().match(text, pos)`` ends when a plain specifier starts at ``pos``
    (an operator, whitespace, ASCII digits and dots, then the end or one of `` \t,;)``);
    -1 when it is anything else, for the pattern to decide."""
    two = text[pos:pos + 2]
    if two in ("==", "!=", "<=", ">=", "~="):
        if text.startswith("===", pos):
            return -1
        i = pos + 2
    elif two[:1] in ("<", ">"):
        i = pos + 1
    else:
        return -1
    n = len(text)
    while i < n and text[i].isspace():  # the pattern's \s*
        i += 1
    digit = False
    dots = 0
    while i < n:
        c = text[i]
        if "0" <= c <= "9":
            digit = True
        elif c == "." and digit:
            digit = False
            dots += 1
        else:
            break
        i += 1
    if not digit or (i < n and text[i] not in _ENDS_SPECIFIER) or (two == "~=" and not dots):
        return -1
    return i


class Version:
    """A parsed PEP 440 version; ordering, hashing and ``str()`` as in packaging."""

    __slots__ = ("_epoch", "_release", "_pre", "_post", "_dev", "_local", "_key")

    def __init__(self, version: str) -> None:
        plain = _plain_release(version) if isinstance(version, str) else None
        if plain is not None:  # "13.4.2": what the pattern would give, without compiling it
            try:  # int() refuses more than 4300 digits: that is not a version either
                self._set(0, tuple(int(part) for part in plain), None, None, None, None)
            except ValueError:
                raise InvalidVersion(f"invalid version: {version!r}") from None
            return
        m = _version_re().fullmatch(version) if isinstance(version, str) else None
        if m is None:
            raise InvalidVersion(f"invalid version: {version!r}")
        try:  # int() refuses more than 4300 digits: that is not a version either
            self._set(
                int(m["epoch"] or 0),
                tuple(int(part) for part in m["release"].split(".")),
                (_PRE_LETTER[m["pre_l"].lower()], int(m["pre_n"] or 0)) if m["pre_l"] else None,
                int(m["post_n1"] or m["post_n2"] or 0) if m["post_n1"] or m["post_l"] else None,
                int(m["dev_n"] or 0) if m["dev_l"] else None,
                tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"[-_.]", m["local"]))
                if m["local"]
                else None,
            )
        except ValueError:
            raise InvalidVersion(f"invalid version: {version!r}") from None

    @classmethod
    def _from_parts(cls, epoch: int, release: tuple, pre=None, post=None, dev=None, local=None):
        self = cls.__new__(cls)
        self._set(epoch, release, pre, post, dev, local)
        return self

    def _set(self, epoch, release, pre, post, dev, local) -> None:
        self._epoch, self._release, self._pre = epoch, release, pre
        self._post, self._dev, self._local = post, dev, local
        trimmed = release
        while trimmed and trimmed[-1] == 0:
            trimmed = trimmed[:-1]
        if pre is not None:
            pre_key = (_PRE_RANK[pre[0]], pre[1])
        else:  # a bare .devN sorts before every a/b/rc of its release
            pre_key = (-1, 0) if post is None and dev is not None else (3, 0)
        suffix = (
            pre_key
            + ((0, 0) if post is None else (1, post))
            + ((1, 0) if dev is None else (0, dev))
        )
        key: tuple = (epoch, trimmed, suffix)
        if local is not None:  # strings sort before numbers; any local sorts after none
            key += (tuple((p, "") if isinstance(p, int) else (-1, p) for p in local),)
        self._key = key

    epoch = property(lambda self: self._epoch)
    release = property(lambda self: self._release, doc="Release numbers, as written.")
    pre = property(lambda self: self._pre, doc="``('a'|'b'|'rc', n)`` or None.")
    post = property(lambda self: self._post)
    dev = property(lambda self: self._dev)
    is_prerelease = property(lambda self: self._pre is not None or self._dev is not None)
    is_postrelease = property(lambda self: self._post is not None)
    is_devrelease = property(lambda self: self._dev is not None)

    @property
    def local(self) -> str | None:
        return None if self._local is None else ".".join(map(str, self._local))

    @property
    def public(self) -> str:
        return str(self).partition("+")[0]

    @property
    def base_version(self) -> str:
        release = ".".join(map(str, self._release))
        return f"{self._epoch}!{release}" if self._epoch else release

    def __str__(self) -> str:
        text = self.base_version
        if self._pre is not None:
            text += f"{self._pre[0]}{self._pre[1]}"
        if self._post is not None:
            text += f".post{self._post}"
        if self._dev is not None:
            text += f".dev{self._dev}"
        return text if self._local is None else f"{text}+{self.local}"

    def __repr__(self) -> str:
        return f"<Version({str(self)!r})>"

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return self._key == other._key if isinstance(other, Version) else NotImplemented

    def __lt__(self, other: Version) -> bool:
        return self._key < other._key if isinstance(other, Version) else NotImplemented

    def __le__(self, other: Version) -> bool:
        return self._key <= other._key if isinstance(other, Version) else NotImplemented

    def __gt__(self, other: Version) -> bool:
        return self._key > other._key if isinstance(other, Version) else NotImplemented

    def __ge__(self, other: Version) -> bool:
        return self._key >= other._key if isinstance(other, Version) else NotImplemented


def parse_version(version: str) -> Version:
    """``Version(version)``; raises :class:`InvalidVersion`."""
    return Version(version)


def _next_prefix_dev0(v: Version, release: tuple) -> Version:
    """The first version after the prefix ``release``: ``1.2`` -> ``1.3.dev0``."""
    return Version._from_parts(v.epoch, release[:-1] + (release[-1] + 1,), dev=0)


class _Specifier:
    """One ``<operator><version>``; ``matches`` is PEP 440 without pre-release policy."""

    __slots__ = ("op", "text", "key", "implies_pre", "_v", "_lo", "_hi")

    def __init__(self, op: str, text: str) -> None:
        self.op, self.text = op, text
        self._v = self._lo = self._hi = None
        if op == "===":
            self.key = (op, text)
            try:
                self.implies_pre = Version(text).is_prerelease
            except InvalidVersion:
                self.implies_pre = False
            return
        if text.endswith(".*"):  # ==1.2.* is [1.2.dev0, 1.3.dev0)
            base = Version(text[:-2])
            self._lo = Version._from_parts(base.epoch, base.release, dev=0)
            self._hi = _next_prefix_dev0(base, base.release)
            self.key, self.implies_pre = (op, text), False
            return
        v = self._v = Version(text)
        release = v.release
        if op != "~=":  # equal specifiers compare and hash equal: ==1.0 is ==1
            while len(release) > 1 and release[-1] == 0:
                release = release[:-1]
        self.key = (op, str(Version._from_parts(v.epoch, release, v.pre, v.post, v.dev, v._local)))
        self.implies_pre = op != "!=" and v.is_prerelease
        if op == "<":  # <1.0 excludes 1.0's pre-releases unless V is one itself
            self._hi = (
                v if v.is_prerelease else Version._from_parts(v.epoch, v.release, v.pre, v.post, 0)
            )
        elif op == "~=":
            self._hi = _next_prefix_dev0(v, v.release[:-1])

    def __str__(self) -> str:
        return self.op + self.text

    @property
    def operator(self) -> str:  # packaging's Specifier.operator
        return self.op

    @property
    def version(self) -> str:  # packaging's Specifier.version
        return self.text

    def matches(self, parsed: Version | None, raw: str) -> bool:
        op, v = self.op, self._v
        if op == "===":
            return raw.lower() == self.text.lower()
        if parsed is None:
            return False
        if v is None:  # wildcard
            return (self._lo <= parsed < self._hi) == (op == "==")
        if op == ">=":
            return parsed >= v
        if op == "<":
            return parsed < self._hi
        if op == "~=":
            return v <= parsed < self._hi
        public = parsed._key[:3]  # <=, ==, != ignore the candidate's local label...
        if op == "<=":
            return public <= v._key
        if op in ("==", "!="):  # ...unless the specifier has one
            equal = parsed == v if v._local is not None else public == v._key
            return equal == (op == "==")
        # ">": strictly above V's public version, and never V's post-releases unless V
        # is a post (or dev) release itself: >1.7 rejects 1.7.0.post1, accepts 1.7.1.post1
        if public <= v._key:
            return False
        same_release = parsed._key[:2] == v._key[:2] and parsed.pre == v.pre
        return v.post is not None or v.dev is not None or not same_release


def _parse_one(piece: str, whole: str) -> _Specifier:
    if _plain_specifier_end(piece) != len(piece) and not _specifier_re().fullmatch(piece):
        where = "" if piece == whole.strip() else f" in {whole!r}"
        raise InvalidSpecifier(f"invalid specifier {piece!r}{where}")
    n = 3 if piece.startswith("===") else 2 if piece[1] == "=" else 1
    return _Specifier(piece[:n], piece[n:].strip())


class SpecifierSet:
    """Comma-separated PEP 440 specifiers, all of which must match."""

    __slots__ = ("_specs",)

    def __init__(self, spec: str = "") -> None:
        pieces = [p.strip() for p in spec.split(",")]
        self._specs = self._canonical([_parse_one(p, spec) for p in pieces if p])

    @staticmethod
    def _canonical(specs: list[_Specifier]) -> tuple[_Specifier, ...]:
        """Sorted by text, equal specifiers once (the first in that order), as packaging."""
        unique: dict = {}
        for s in sorted(specs, key=str):
            unique.setdefault(s.key, s)
        return tuple(unique.values())

    def contains(self, version: str | Version, prereleases: bool | None = None) -> bool:
        """Whether ``version`` matches every specifier; ``prereleases=False`` rejects them."""
        parsed, raw = _coerce(version)
        if prereleases is False and parsed is not None and parsed.is_prerelease:
            return False
        return self._matches(parsed, raw)

    def _matches(self, parsed: Version | None, raw: str) -> bool:
        if not self._specs:
            return parsed is not None
        return all(s.matches(parsed, raw) for s in self._specs)

    def __contains__(self, version: str | Version) -> bool:
        return self.contains(version)

    def filter(
        self,
        iterable,
        prereleases: bool | None = None,
        key=None,
    ):
        """Matching items in order; by default pre-releases only if no final release matches.

        A specifier that names a pre-release (``>=2.0b1``) lets them all through.
        """
        if prereleases is None and any(s.implies_pre for s in self._specs):
            prereleases = True
        # An unparseable item matches only ===, and then every match is that one string:
        # finals and unparseable items never meet, so the latter can wait with pre-releases.
        waiting: list = []
        found_final = False
        for item in iterable:
            parsed, raw = _coerce(item if key is None else key(item))
            if not self._matches(parsed, raw):
                continue
            if prereleases is not None:
                if prereleases or parsed is None or not parsed.is_prerelease:
                    yield item
            elif parsed is not None and not parsed.is_prerelease:
                found_final = True
                yield item
            elif not found_final:
                waiting.append(item)
        if prereleases is None and not found_final:
            yield from waiting

    def __str__(self) -> str:
        return ",".join(map(str, self._specs))

    def __repr__(self) -> str:
        return f"<SpecifierSet({str(self)!r})>"

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self):
        """The specifiers (``.operator``, ``.version``), as packaging's SpecifierSet."""
        return iter(self._specs)

    def __bool__(self) -> bool:
        return bool(self._specs)

    def __hash__(self) -> int:
        return hash(tuple(s.key for s in self._specs))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = SpecifierSet(other)
            except InvalidSpecifier:
                return NotImplemented
        if not isinstance(other, SpecifierSet):
            return NotImplemented
        return [s.key for s in self._specs] == [s.key for s in other._specs]

    def __and__(self, other: SpecifierSet | str) -> SpecifierSet:
        if isinstance(other, str):
            other = SpecifierSet(other)
        elif not isinstance(other, SpecifierSet):
            return NotImplemented
        combined = SpecifierSet()
        combined._specs = self._canonical([*self._specs, *other._specs])
        return combined


_PARSED: dict[str, Version | None] = {}  # version text -> Version (None: not one), see _coerce
_UNSEEN = object()


def _coerce(item: object) -> tuple[Version | None, str]:
    if isinstance(item, Version):
        return item, str(item)
    if not isinstance(item, str):
        raise TypeError(f"expected a version string or Version, got {item!r}")
    # A Version never changes: the same text, parsed once. An index plan filters a project's
    # hundreds of versions once per requirement on it (pip_choice), with three plans at once
    # under --matrix: ~3,900 parses of the same ~700 texts (counted with cProfile in one cold run).
    parsed = _PARSED.get(item, _UNSEEN)
    if parsed is _UNSEEN:
        try:
            parsed = Version(item)
        except InvalidVersion:
            parsed = None
        if len(_PARSED) >= 8192:  # bounded: a long-lived process sees many texts
            _PARSED.clear()
        _PARSED[item] = parsed
    return parsed, item
