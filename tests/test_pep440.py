"""omnipkg_hook._pep440: PEP 440 by named cases, then differentially against packaging.

packaging is imported here only; the hook itself never imports it.
"""

from __future__ import annotations

import itertools
import random

import packaging
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import InvalidSpecifier as PInvalidSpecifier
from packaging.specifiers import SpecifierSet as PSpecifierSet
from packaging.version import InvalidVersion as PInvalidVersion
from packaging.version import Version as PVersion

from omnipkg_hook._pep440 import (
    InvalidSpecifier,
    InvalidVersion,
    SpecifierSet,
    Version,
    parse_version,
)

# packaging 26 accepts an in-range pre-release in contains(prereleases=None) and changed a
# few exclusive-comparison edges; we follow 26, so differential checks need it.
PACKAGING_26 = int(packaging.__version__.split(".")[0]) >= 26
needs_packaging_26 = pytest.mark.skipif(
    not PACKAGING_26, reason=f"packaging {packaging.__version__} < 26; _pep440 follows 26"
)

try:  # packaging 26.4 rejects a bare "===", older ones accept it (we follow 26.4)
    PSpecifierSet("===")
    EMPTY_ARBITRARY_INVALID = False
except PInvalidSpecifier:
    EMPTY_ARBITRARY_INVALID = True

# --------------------------------------------------------------------------- versions

VALID_VERSIONS = [  # (as written, normalised)
    ("1", "1"),
    ("1.0", "1.0"),
    ("1.0.0.0.0", "1.0.0.0.0"),
    ("01.002", "1.2"),
    ("v1.0", "1.0"),
    ("V1.0", "1.0"),
    ("  1.0\n", "1.0"),
    ("1!2.0", "1!2.0"),
    ("0!1.0", "1.0"),
    ("1.0a1", "1.0a1"),
    ("1.0alpha1", "1.0a1"),
    ("1.0-a.1", "1.0a1"),
    ("1.0_beta_2", "1.0b2"),
    ("1.0RC1", "1.0rc1"),
    ("1.0c1", "1.0rc1"),
    ("1.0pre1", "1.0rc1"),
    ("1.0preview1", "1.0rc1"),
    ("1.0a", "1.0a0"),
    ("1.0-1", "1.0.post1"),
    ("1.0.post", "1.0.post0"),
    ("1.0rev2", "1.0.post2"),
    ("1.0-r3", "1.0.post3"),
    ("1.0.POST1", "1.0.post1"),
    ("1.0dev", "1.0.dev0"),
    ("1.0-dev-3", "1.0.dev3"),
    ("1.0a1.post2.dev3", "1.0a1.post2.dev3"),
    ("1.0+abc", "1.0+abc"),
    ("1.0+ABC.5", "1.0+abc.5"),
    ("1.0+ubuntu-1_2", "1.0+ubuntu.1.2"),
    ("1.0+001", "1.0+1"),
    ("2!1.0rc1.post1.dev1+local.7", "2!1.0rc1.post1.dev1+local.7"),
]

INVALID_VERSIONS = [
    "",
    " ",
    "1.",
    ".1",
    "1..0",
    "a",
    "v",
    "1.0+",
    "1.0+_x",
    "1.0+a..b",
    "1.0.post1.post2",
    "1.0a1a2",
    "1.0 .1",
    "1.0dev1.post1",
    "1!",
    "!1",
    "1.0-",
    "1.0-+x",
    "1.0\u0661",  # arabic-indic one: digits are ASCII only
    "1.0ſ",
    "1.0+\u212a",  # KELVIN SIGN case-folds to k; local labels are ASCII only
    "1.0 1.0",
]

ORDERED = [  # strictly increasing, PEP 440 "Summary of permitted suffixes and relative ordering"
    "1.0.dev456",
    "1.0a1",
    "1.0a2.dev456",
    "1.0a12.dev456",
    "1.0a12",
    "1.0b1.dev456",
    "1.0b2",
    "1.0b2.post345.dev456",
    "1.0b2.post345",
    "1.0rc1.dev456",
    "1.0rc1",
    "1.0",
    "1.0+abc.5",
    "1.0+abc.7",
    "1.0+5",
    "1.0.post456.dev34",
    "1.0.post456",
    "1.0.15",
    "1.1.dev1",
    "1!0.1",
]

EQUAL = [("1.0", "1.0.0"), ("1", "1.0.0.0"), ("1.0a", "1.0a0"), ("1.0+abc", "1.0+ABC"),
         ("1.0+1.0", "1.0+1-0"), ("0!1.0", "1.0"), ("1.0-1", "1.0.post1")]  # fmt: skip

PROPERTIES = [  # version, release, is_prerelease, is_devrelease, local, public, base_version
    ("1.2.3", (1, 2, 3), False, False, None, "1.2.3", "1.2.3"),
    ("1!1.2rc1+cpu", (1, 2), True, False, "cpu", "1!1.2rc1", "1!1.2"),
    ("1.0.dev2", (1, 0), True, True, None, "1.0.dev2", "1.0"),
    ("1.0.post1.dev2", (1, 0), True, True, None, "1.0.post1.dev2", "1.0"),
    ("1.0.post1+Ubuntu-2", (1, 0), False, False, "ubuntu.2", "1.0.post1", "1.0"),
]


@pytest.mark.parametrize(("text", "normalised"), VALID_VERSIONS)
def test_version_normalises(text, normalised):
    assert str(Version(text)) == normalised
    assert str(parse_version(text)) == str(PVersion(text))


@pytest.mark.parametrize("text", INVALID_VERSIONS)
def test_invalid_version(text):
    with pytest.raises(InvalidVersion, match=r"^invalid version: "):
        Version(text)
    with pytest.raises(PInvalidVersion):
        PVersion(text)


@pytest.mark.parametrize("value", [None, 1, 1.0, b"1.0", ["1"]])
def test_version_of_non_string_is_invalid(value):
    with pytest.raises(InvalidVersion):
        Version(value)


def test_invalid_version_is_value_error():
    assert issubclass(InvalidVersion, ValueError) and issubclass(InvalidSpecifier, ValueError)


@pytest.mark.parametrize(("low", "high"), list(zip(ORDERED, ORDERED[1:])))
def test_ordering(low, high):
    a, b = Version(low), Version(high)
    assert a < b and a <= b and b > a and b >= a and a != b and not a == b


def test_ordering_sorts_shuffled():
    shuffled = ORDERED[:]
    random.Random(0).shuffle(shuffled)
    assert [str(v) for v in sorted(map(Version, shuffled))] == ORDERED


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal_versions_hash_equal(a, b):
    assert Version(a) == Version(b) and hash(Version(a)) == hash(Version(b))


def test_comparing_with_other_types():
    assert Version("1.0") != "1.0"
    with pytest.raises(TypeError):
        Version("1.0") < "1.1"  # noqa: B015


@pytest.mark.parametrize(("text", "release", "pre", "dev", "local", "public", "base"), PROPERTIES)
def test_properties(text, release, pre, dev, local, public, base):
    v = Version(text)
    assert (v.release, v.is_prerelease, v.is_devrelease) == (release, pre, dev)
    assert (v.local, v.public, v.base_version) == (local, public, base)


def test_repr():
    assert repr(Version("1.0RC1")) == "<Version('1.0rc1')>"


# ------------------------------------------------------------------------- specifiers

CONTAINS = [  # (specifier set, version, contains(version) with prereleases=None)
    ("", "1.0", True),
    ("", "1.0a1", True),  # packaging 26: a lone version has no alternative
    ("", "not a version", False),  # deliberate: packaging 26 says True here
    ("==1.0", "1.0.0", True),
    ("==1.0", "1.0+local", True),  # ==V ignores the candidate's local label
    ("==1.0+local", "1.0", False),
    ("==1.0+local", "1.0+LOCAL", True),
    ("==1.0+local", "1.0+other", False),
    ("!=1.0", "1.0+local", False),
    ("!=1.0+a", "1.0+b", True),
    ("==1.2.*", "1.2.7", True),
    ("==1.2.*", "1.2", True),
    ("==1.2.*", "1.2.0.dev1", True),
    ("==1.2.*", "1.3.dev0", False),
    ("==1.2.*", "1.20", False),
    ("==1.2.*", "1.2+local", True),
    ("!=1.2.*", "1.2.1", False),
    ("!=1.2.*", "1.1.9", True),
    ("==1!1.*", "1.5", False),
    ("~=2.2", "2.9", True),
    ("~=2.2", "3.0", False),
    ("~=2.2", "2.1", False),
    ("~=1.4.5", "1.4.9", True),
    ("~=1.4.5", "1.5.0", False),
    ("~=1.4.5a4", "1.4.5a5", True),
    ("~=2.2.post3", "2.9", True),
    ("~=2.2.0", "2.3", False),
    (">1.7", "1.7.0.post1", False),  # >V never matches V's post-releases...
    (">1.7", "1.7.1", True),
    (">1.7", "1.7.1.post1", True),  # ...but later releases' are fine
    (">1.7", "1.7+local", False),
    (">1.7.post2", "1.7.post3", True),  # unless V is a post-release itself
    (">1.7.post2", "1.7.post2+local", False),
    (">1.7a1", "1.7a1.post1", False),
    (">1.7a1", "1.7a2", True),
    (">1.7.dev1", "1.7.dev1+local", False),
    (">1.7.dev1", "1.7.dev2", True),
    ("<1.7", "1.7a1", False),  # <V never matches V's pre-releases...
    ("<1.7", "1.7.dev0", False),
    ("<1.7", "1.6.post1", True),
    ("<1.7", "1.6+local", True),
    ("<1.7rc1", "1.7b1", True),  # ...unless V is a pre-release itself
    ("<1.7.post1", "1.7.dev1", True),  # packaging 26; 24/25 said False
    ("<1.7.post1", "1.7.post1.dev0", False),
    ("<=1.7", "1.7+local", True),
    ("<=1.7", "1.7.post0", False),
    (">=1.7", "1.7+local", True),
    (">=1.0", "2.0b1", True),  # packaging 26: contains() admits in-range pre-releases
    (">=1.0,<2", "1.5", True),
    (">=1.0,<2", "2.0", False),
    (">=1.0,!=1.5", "1.5.0", False),
    ("===1.0", "1.0", True),
    ("===1.0", "1.0.0", False),  # arbitrary equality compares strings
    ("===Foo", "foo", True),
    ("===foo", "foo", True),
    ("===foo,>=1", "foo", False),
    ("<0", "0.dev0", False),
]

CONTAINS_PRERELEASES = [  # (set, version, prereleases, expected)
    (">=1.0", "2.0b1", False, False),
    (">=1.0", "2.0b1", True, True),
    (">=1.0b1", "2.0b1", False, False),  # an explicit False wins
    ("===2.0b1", "2.0b1", False, False),
    ("===nonsense", "nonsense", False, True),  # not a version, so not a pre-release
    ("", "1.0.dev1", False, False),
]

FILTER = [  # (set, candidates, prereleases, expected)
    (">=1.2.3", ["1.2", "1.3", "1.5a1"], None, ["1.3"]),
    (">=1.2.3", ["1.2", "1.5a1"], None, ["1.5a1"]),  # no final: pre-releases come back
    (">=1.2.3", ["1.5a1", "1.3", "1.6a1"], None, ["1.3"]),
    (">=1.2.3", ["1.3", "1.5a1"], True, ["1.3", "1.5a1"]),
    (">=1.5a1", ["1.3", "1.5a1", "1.6"], None, ["1.5a1", "1.6"]),  # named pre-release
    ("!=1.5a1", ["1.5a1", "1.6"], None, ["1.6"]),  # != never implies pre-releases
    ("", ["1.3", "1.5a1", "junk"], None, ["1.3"]),  # deliberate: packaging keeps "junk"
    ("", ["1.5a1"], None, ["1.5a1"]),
    ("", ["1.3", "1.5a1"], False, ["1.3"]),
    (">=1", ["2.0a1", "junk", "1.0"], False, ["1.0"]),
    ("===junk", ["2.0", "junk", "JUNK"], None, ["junk", "JUNK"]),
]

CANONICAL_STR = [  # (set, str) -- sorted, duplicates once, versions as written
    ("", ""),
    (" , ,", ""),
    (">=1.0,!=1.0.1", "!=1.0.1,>=1.0"),
    (">= 1.0 ,  < 2", "<2,>=1.0"),
    (">=V1.0RC1", ">=V1.0RC1"),
    ("==1.0,==1", "==1"),
    ("==1.0.0,==1.0", "==1.0"),
    ("~=1.0,~=1.0.0", "~=1.0,~=1.0.0"),  # ~= keeps trailing zeros: these differ
    ("=== foo ", "===foo"),
    ("==1.*,!=1.*", "!=1.*,==1.*"),
]

INVALID_SPECIFIERS = [
    "1.0",
    "=1.0",
    "=>1.0",
    "==",
    ">=1.0+local",  # local labels only with == and !=
    "<1.*",
    "==1.0a1.*",  # no wildcard on a pre-release
    "==1.0+abc.*",
    "~=1",  # ~= needs two release numbers
    "~=1.0.*",
    "~=1.0+local",
    ">=1.0 a",
    "== 1.0 1",
    "===foo bar",
    "===fo;o",
    "===fo)o",
    ">=1.0,foo",
    "<>1.0",
    "==1.0\u0661",
    "~=1.0prev\u0131ew",  # packaging's regex lets the dotless i through, then asserts
]


@pytest.mark.parametrize(("spec", "version", "expected"), CONTAINS)
def test_contains(spec, version, expected):
    specifiers = SpecifierSet(spec)
    assert specifiers.contains(version) is expected
    assert (version in specifiers) is expected
    if expected and version != "not a version" and not spec.startswith("==="):
        assert specifiers.contains(Version(version))


@pytest.mark.parametrize(("spec", "version", "prereleases", "expected"), CONTAINS_PRERELEASES)
def test_contains_prereleases(spec, version, prereleases, expected):
    assert SpecifierSet(spec).contains(version, prereleases=prereleases) is expected


@pytest.mark.parametrize(("spec", "items", "prereleases", "expected"), FILTER)
def test_filter(spec, items, prereleases, expected):
    assert list(SpecifierSet(spec).filter(items, prereleases=prereleases)) == expected


def test_filter_keeps_items_and_takes_a_key():
    records = [{"v": "1.0"}, {"v": "2.0"}, {"v": "3.0a1"}]
    assert list(SpecifierSet(">1").filter(records, key=lambda r: r["v"])) == [records[1]]
    versions = [Version("1.0"), "2.0"]
    assert list(SpecifierSet(">=1").filter(versions)) == versions


@pytest.mark.parametrize(("spec", "text"), CANONICAL_STR)
def test_str_is_canonical(spec, text):
    assert str(SpecifierSet(spec)) == text
    assert str(SpecifierSet(text)) == text


@pytest.mark.parametrize("spec", INVALID_SPECIFIERS)
def test_invalid_specifier(spec):
    with pytest.raises(InvalidSpecifier, match=r"^invalid specifier '"):
        SpecifierSet(spec)


def test_invalid_specifier_message_names_the_piece():
    with pytest.raises(InvalidSpecifier, match=r"^invalid specifier 'foo' in '>=1.0,foo'$"):
        SpecifierSet(">=1.0,foo")
    with pytest.raises(InvalidSpecifier, match=r"^invalid specifier '=1.0'$"):
        SpecifierSet(" =1.0 ")


def test_len_bool_and():
    assert len(SpecifierSet("")) == 0 and not SpecifierSet("")
    assert len(SpecifierSet(">=1,>=1.0,<2")) == 2 and SpecifierSet(">=1")
    both = SpecifierSet(">=1.0,!=1.0.1") & "<=2.0.0,!=2.0.1"
    assert str(both) == "!=1.0.1,!=2.0.1,<=2.0.0,>=1.0"
    assert SpecifierSet(">=1") & SpecifierSet("") == SpecifierSet(">=1")
    assert SpecifierSet(">=1").__and__(1) is NotImplemented


def test_equality_and_hash():
    assert SpecifierSet(">=1.0,<2") == SpecifierSet("<2.0, >=1") == "<2,>=1"
    assert hash(SpecifierSet(">=1.0,<2")) == hash(SpecifierSet("<2.0,>=1"))
    assert SpecifierSet("~=1.0") != SpecifierSet("~=1.0.0")
    assert SpecifierSet(">=1") != "not a specifier"
    assert repr(SpecifierSet(">=1, <2")) == "<SpecifierSet('<2,>=1')>"


@pytest.mark.parametrize("item", [1, 1.0, None, b"1.0"])
def test_contains_rejects_non_versions(item):
    with pytest.raises(TypeError, match="expected a version string or Version"):
        SpecifierSet(">=1").contains(item)


# ------------------------------------------------------------- differential: packaging

NUM = st.sampled_from(["0", "0", "1", "1", "2", "3", "9", "10", "00", "012"])
SEP = st.sampled_from(["", "", ".", "-", "_"])
PRE = st.sampled_from(["a", "b", "c", "rc", "alpha", "beta", "pre", "preview", "A", "RC"])
LOCAL = st.from_regex(r"[a-zA-Z0-9]{1,3}([._-][a-zA-Z0-9]{1,3}){0,2}", fullmatch=True)


@st.composite
def version_strings(draw, local=True):
    """Version spellings, mostly valid: epochs, pre/post/dev in every spelling, local."""
    text = draw(st.sampled_from(["", "", "", "v", "V", " "]))
    if draw(st.integers(0, 5)) == 0:
        text += draw(NUM) + "!"
    text += ".".join(draw(st.lists(NUM, min_size=1, max_size=4)))
    if draw(st.integers(0, 2)) == 0:
        text += draw(SEP) + draw(PRE) + draw(SEP) + draw(NUM | st.just(""))
    post = draw(st.integers(0, 5))
    if post == 1:
        text += "-" + draw(NUM)
    elif post == 2:
        text += draw(SEP) + draw(st.sampled_from(["post", "rev", "r", "POST"]))
        text += draw(SEP) + draw(NUM | st.just(""))
    if draw(st.integers(0, 2)) == 0:
        text += (
            draw(SEP) + draw(st.sampled_from(["dev", "DEV"])) + draw(SEP) + draw(NUM | st.just(""))
        )
    if local and draw(st.integers(0, 3)) == 0:
        text += "+" + draw(LOCAL)
    return text


def valid_versions(local=True):
    return version_strings(local).filter(_parses)


def _parses(text):
    try:
        PVersion(text)
    except PInvalidVersion:
        return False
    return True


@st.composite
def neighbours(draw, text):
    """Versions next to ``text``: its family (pre/post/dev/local), padded, bumped."""
    v = PVersion(text)
    release = list(v.release)
    how = draw(st.sampled_from(["same", "same", "same", "pad", "bump", "drop"]))
    if how == "pad":
        release.append(draw(st.sampled_from([0, 0, 1])))
    elif how == "bump":
        i = draw(st.integers(0, len(release) - 1))
        release[i] = max(0, release[i] + draw(st.sampled_from([-1, 1])))
    elif how == "drop" and len(release) > 1:
        release.pop()
    out = (f"{v.epoch}!" if v.epoch else "") + ".".join(map(str, release))
    pre = draw(st.sampled_from([v.pre, v.pre, None, ("a", 0), ("rc", 1), ("b", 5)]))
    if pre:
        out += f"{pre[0]}{pre[1]}"
    post = draw(st.sampled_from([v.post, v.post, None, 0, (v.post or 0) + 1]))
    if post is not None:
        out += f".post{post}"
    dev = draw(st.sampled_from([v.dev, v.dev, None, 0, (v.dev or 0) + 1]))
    if dev is not None:
        out += f".dev{dev}"
    local = draw(st.sampled_from([v.local, v.local, None, "abc", "1", "0", "abc.1", "1.abc"]))
    return out + (f"+{local}" if local else "")


OPERATORS = ["==", "!=", "<=", ">=", "<", ">", "~=", "==="]


@st.composite
def specifier_texts(draw, near=None):
    """Specifier sets of 0-3 specifiers; ``near`` collects the versions they name."""
    pieces, near = [], [] if near is None else near
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 2, 3]))):
        op = draw(st.sampled_from(OPERATORS))
        text = draw(valid_versions(local=op in ("==", "!=", "===")))
        near.append(text)
        v = PVersion(text)
        if op in ("==", "!=") and draw(st.integers(0, 3)) == 0:
            text = (f"{v.epoch}!" if v.epoch else "") + ".".join(map(str, v.release)) + ".*"
        elif op == "~=" and len(v.release) < 2:
            text = f"{v.base_version}.0{str(v)[len(v.base_version) :]}"
        elif op == "===":
            text = text.strip()
            near.append(text)
        pieces.append(op + draw(st.sampled_from(["", " "])) + text)
    return draw(st.sampled_from([",", ", ", " ,"])).join(pieces)


@st.composite
def specifier_cases(draw):
    """(specifier set text, candidate versions near the versions it names)."""
    near: list = []
    spec = draw(specifier_texts(near))
    candidates = [draw(neighbours(t)) for t in near for _ in range(3)] + near
    candidates += draw(st.lists(valid_versions(), max_size=3))
    return spec, candidates


def _check_same_as_packaging(spec, candidates):
    try:
        expected = PSpecifierSet(spec)
    except PInvalidSpecifier:
        with pytest.raises(InvalidSpecifier):
            SpecifierSet(spec)
        return
    ours = SpecifierSet(spec)
    assert str(ours) == str(expected)
    assert len(ours) == len(PSpecifierSet(str(expected)))  # packaging de-duplicates in str()
    for candidate in candidates:
        for prereleases in (None, True, False):
            want = expected.contains(candidate, prereleases=prereleases)
            assert ours.contains(candidate, prereleases=prereleases) is want, (
                candidate,
                prereleases,
            )
        if not any(s.operator == "===" for s in expected):
            want = expected.contains(PVersion(candidate))
            assert ours.contains(Version(candidate)) is want, candidate
    for prereleases in (None, True, False):
        want = list(expected.filter(candidates, prereleases=prereleases))
        assert list(ours.filter(candidates, prereleases=prereleases)) == want, prereleases


@st.composite
def version_families(draw):
    """A few spellings (valid or not) plus versions next to a valid one, to compare."""
    texts = draw(st.lists(version_strings(), min_size=1, max_size=3))
    base = draw(valid_versions())
    return [*texts, base, *(draw(neighbours(base)) for _ in range(3))]


@given(version_families())
@settings(max_examples=300, deadline=None)
def test_versions_same_as_packaging(texts):
    parsed = []
    for text in texts:
        try:
            theirs = PVersion(text)
        except PInvalidVersion:
            with pytest.raises(InvalidVersion):
                Version(text)
            continue
        ours = Version(text)
        assert str(ours) == str(theirs)
        assert (ours.release, ours.local, ours.public, ours.base_version) == (
            theirs.release, theirs.local, theirs.public, theirs.base_version)  # fmt: skip
        assert (ours.is_prerelease, ours.is_devrelease) == (
            theirs.is_prerelease,
            theirs.is_devrelease,
        )
        parsed.append((ours, theirs))
    for (a, pa), (b, pb) in itertools.product(parsed, repeat=2):
        assert (a < b, a == b, a > b) == (pa < pb, pa == pb, pa > pb), (pa, pb)
        assert (a == b) <= (hash(a) == hash(b))


@given(st.text(max_size=20) | st.text(alphabet="0123456789.!+-_abcdeflnoprstv ", max_size=16))
@settings(max_examples=400, deadline=None)
def test_any_text_is_a_version_or_invalid_version(text):
    try:
        ours = Version(text)
    except InvalidVersion:
        assert not _parses(text)
    else:
        assert str(ours) == str(PVersion(text))


@pytest.mark.parametrize(("spec", "version", "expected"), CONTAINS)
@needs_packaging_26
def test_contains_table_same_as_packaging(spec, version, expected):
    if spec == "" and version == "not a version":
        # deliberate difference, pinned both ways: packaging's empty set admits junk, ours
        # never matches an unparseable version (a pin must name a real version)
        assert PSpecifierSet(spec).contains(version) is True and expected is False
        return
    assert PSpecifierSet(spec).contains(version) is expected


@pytest.mark.parametrize(("spec", "items", "prereleases", "expected"), FILTER)
@needs_packaging_26
def test_filter_table_same_as_packaging(spec, items, prereleases, expected):
    theirs = list(PSpecifierSet(spec).filter(items, prereleases=prereleases))
    if not spec:  # deliberate difference: packaging's empty set lets "junk" through
        theirs = [item for item in theirs if _parses(item)]
    assert theirs == expected


@pytest.mark.parametrize(("spec", "text"), CANONICAL_STR)
def test_str_table_same_as_packaging(spec, text):
    assert str(PSpecifierSet(spec)) == text


@pytest.mark.parametrize("spec", INVALID_SPECIFIERS[:-1])
def test_invalid_table_same_as_packaging(spec):
    with pytest.raises(PInvalidSpecifier):
        PSpecifierSet(spec)


@given(specifier_cases())
@settings(max_examples=300, deadline=None)
@needs_packaging_26
def test_specifiers_same_as_packaging(case):
    _check_same_as_packaging(*case)


@given(specifier_texts(), specifier_texts())
@settings(max_examples=200, deadline=None)
def test_equality_and_and_same_as_packaging(a, b):
    try:
        pa, pb = PSpecifierSet(a), PSpecifierSet(b)
    except PInvalidSpecifier:
        return
    ours_a, ours_b = SpecifierSet(a), SpecifierSet(b)
    assert (ours_a == ours_b) is (pa == pb)
    assert (ours_a == b) is (pa == b)
    assert str(ours_a & ours_b) == str(pa & pb)


@given(st.text(max_size=24) | st.text(alphabet="0123456789.,*!=<>~+-abcdeprstv ", max_size=16))
@settings(max_examples=400, deadline=None)
def test_any_text_is_a_specifier_set_or_invalid(text):
    try:
        ours = SpecifierSet(text)
    except InvalidSpecifier:
        if text.isascii() and (EMPTY_ARBITRARY_INVALID or text.strip() != "==="):
            with pytest.raises(PInvalidSpecifier):
                PSpecifierSet(text)
    else:
        assert str(ours) == str(PSpecifierSet(text))


def test_arbitrary_equality_needs_a_string():
    """``===`` with nothing after it is invalid, as in packaging 26.4 (older ones accepted it)."""
    with pytest.raises(InvalidSpecifier):
        SpecifierSet("===")
    with pytest.raises(InvalidSpecifier):
        SpecifierSet(">=1.0, === ")
    assert str(SpecifierSet("===foobar")) == "===foobar"
