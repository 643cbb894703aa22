"""omnipkg_hook._requirements: PEP 508 requirements and the OMNIPKG_PINS format.

Named cases first, then differential checks against packaging (imported here only).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PRequirement
from packaging.utils import canonicalize_name

import omnipkg_hook
from omnipkg_hook._pep440 import SpecifierSet
from omnipkg_hook._requirements import Requirement, parse_pins, parse_requirement, split_pins
from omnipkg_hook.errors import InvalidPinError

URL = "https://example.org/rich-13.4.2-py3-none-any.whl"

VALID_REQUIREMENTS = [  # (text, name, key, extras, specifier, url, marker, str)
    ("rich", "rich", "rich", [], "", None, None, "rich"),
    ("  rich\t", "rich", "rich", [], "", None, None, "rich"),
    ("Rich_Text", "Rich_Text", "rich-text", [], "", None, None, "Rich_Text"),
    ("zope.interface", "zope.interface", "zope-interface", [], "", None, None, "zope.interface"),
    ("1password", "1password", "1password", [], "", None, None, "1password"),
    ("a_", "a_", "a-", [], "", None, None, "a_"),  # packaging accepts a trailing '_'
    ("rich==13.4.2", "rich", "rich", [], "==13.4.2", None, None, "rich==13.4.2"),
    ("rich == 13.4.2", "rich", "rich", [], "==13.4.2", None, None, "rich==13.4.2"),
    ("rich\t>=13", "rich", "rich", [], ">=13", None, None, "rich>=13"),
    ("rich>=13,<14", "rich", "rich", [], "<14,>=13", None, None, "rich<14,>=13"),
    ("rich >= 13 , < 14", "rich", "rich", [], "<14,>=13", None, None, "rich<14,>=13"),
    ("rich>=13,", "rich", "rich", [], ">=13", None, None, "rich>=13"),  # as packaging
    ("rich (>=13,<14)", "rich", "rich", [], "<14,>=13", None, None, "rich<14,>=13"),
    ("rich( >=13 )", "rich", "rich", [], ">=13", None, None, "rich>=13"),
    ("rich ()", "rich", "rich", [], "", None, None, "rich"),
    ("rich~=13.4", "rich", "rich", [], "~=13.4", None, None, "rich~=13.4"),
    ("rich!=13.*,>=12", "rich", "rich", [], "!=13.*,>=12", None, None, "rich!=13.*,>=12"),
    ("torch==2.1+cpu", "torch", "torch", [], "==2.1+cpu", None, None, "torch==2.1+cpu"),
    ("rich===13.4.2-custom", "rich", "rich", [], "===13.4.2-custom", None, None,
     "rich===13.4.2-custom"),
    ("rich[]", "rich", "rich", [], "", None, None, "rich"),
    ("rich[jupyter]", "rich", "rich", ["jupyter"], "", None, None, "rich[jupyter]"),
    ("rich [ Jupyter_Ext , socks ] >=13", "rich", "rich", ["jupyter-ext", "socks"], ">=13", None,
     None, "rich[jupyter-ext,socks]>=13"),
    (f"rich @ {URL}", "rich", "rich", [], "", URL, None, f"rich @ {URL}"),
    (f"rich@{URL}", "rich", "rich", [], "", URL, None, f"rich @ {URL}"),
    (f"rich[socks] @ {URL} ; os_name == 'nt'", "rich", "rich", ["socks"], "", URL,
     "os_name == 'nt'", f"rich[socks] @ {URL} ; os_name == 'nt'"),
    ('rich; python_version < "3.10"', "rich", "rich", [], "", None, 'python_version < "3.10"',
     'rich; python_version < "3.10"'),
    ("rich>=13;os_name=='nt'", "rich", "rich", [], ">=13", None, "os_name=='nt'",
     "rich>=13; os_name=='nt'"),
]  # fmt: skip

INVALID_REQUIREMENTS = [  # (text, the whole message)
    ("", "invalid requirement '': empty requirement at column 1"),
    ("   ", "invalid requirement '   ': empty requirement at column 1"),
    ("rich=13", "invalid requirement 'rich=13': expected a version operator (==, >=, ...) at column 5"),
    ("_rich", "invalid requirement '_rich': expected a distribution name at column 1"),
    ("-r reqs.txt", "invalid requirement '-r reqs.txt': expected a distribution name at column 1"),
    (">=13", "invalid requirement '>=13': expected a distribution name at column 1"),
    ("rich==13.4.2x", "invalid requirement 'rich==13.4.2x': invalid version specifier '==13.4.2x' at column 5"),
    ("rich==", "invalid requirement 'rich==': expected a version after '==' at column 7"),
    ("rich>=1.0+cpu", "invalid requirement 'rich>=1.0+cpu': a local version label cannot follow '>=' at column 5"),
    ("rich~=13", "invalid requirement 'rich~=13': '~=13' needs at least two release numbers at column 5"),
    ("rich>=13.*", "invalid requirement 'rich>=13.*': '.*' cannot follow '>=' at column 5"),
    ("rich==1.0a1.*", "invalid requirement 'rich==1.0a1.*': invalid version specifier '==1.0a1.*' at column 5"),
    ("rich>=13 <14", "invalid requirement 'rich>=13 <14': expected ',' between version specifiers at column 10"),
    ("rich 13", "invalid requirement 'rich 13': unexpected '1', expected a version specifier, '[extras]', '@ URL' or ';' at column 6"),
    ("rich>=13 x", "invalid requirement 'rich>=13 x': unexpected 'x', expected ',' or ';' at column 10"),
    ("rich-", "invalid requirement 'rich-': unexpected '-', expected a version specifier, '[extras]', '@ URL' or ';' at column 5"),
    ("rich\n", "invalid requirement 'rich\\n': unexpected '\\n', expected a version specifier, '[extras]', '@ URL' or ';' at column 5"),
    ("rich[socks", "invalid requirement 'rich[socks': expected ']' to close the '[' from column 5 at column 11"),
    ("rich[a b]", "invalid requirement 'rich[a b]': expected ',' between extra names at column 8"),
    ("rich[a,]", "invalid requirement 'rich[a,]': expected an extra name after ',' at column 8"),
    ("rich[_a]", "invalid requirement 'rich[_a]': expected ']' to close the '[' from column 5 at column 6"),
    ("rich>=13[a]", "invalid requirement 'rich>=13[a]': invalid version specifier '>=13[a]' at column 5"),
    ("rich (>=13", "invalid requirement 'rich (>=13': expected ')' to close the '(' from column 6 at column 11"),
    ("rich >=13)", "invalid requirement 'rich >=13)': unexpected ')', expected ',' or ';' at column 10"),
    ("rich;", "invalid requirement 'rich;': expected a marker after ';' at column 5"),
    ("rich @", "invalid requirement 'rich @': expected a URL after '@' at column 7"),
    ("rich @ https://x y", "invalid requirement 'rich @ https://x y': expected ';' before a marker after the URL at column 18"),
    ("rich===1,+x", "invalid requirement 'rich===1,+x': invalid specifier '+x' in '===1,+x'"),
]  # fmt: skip

SPLIT_PINS = [  # (OMNIPKG_PINS value, requirements)
    ("", []),
    (" \n\t", []),
    (" ,, ", []),
    ("rich==13.4.2", ["rich==13.4.2"]),
    ("rich>=13,<14,click==7.1.2", ["rich>=13,<14", "click==7.1.2"]),
    ("rich==13.4.2 click==7.1.2", ["rich==13.4.2", "click==7.1.2"]),
    ("rich==13.4.2, click==7.1.2", ["rich==13.4.2", "click==7.1.2"]),
    ("rich==13.4.2,\n  click==7.1.2\n", ["rich==13.4.2", "click==7.1.2"]),
    ("rich,click", ["rich", "click"]),
    ("a>=1, <2", ["a>=1, <2"]),
    ("a>=1 ,<2,b", ["a>=1 ,<2", "b"]),
    ("rich >= 13", ["rich >= 13"]),
    ("rich >= 13 click", ["rich >= 13", "click"]),
    ("rich== 13.4.2 click", ["rich== 13.4.2", "click"]),
    ("rich ~=13.4, !=13.5.*, click", ["rich ~=13.4, !=13.5.*", "click"]),
    ("rich[jupyter, socks]==13 click", ["rich[jupyter, socks]==13", "click"]),
    ("rich [jupyter] click", ["rich [jupyter]", "click"]),
    ("rich (>=13, <14) click", ["rich (>=13, <14)", "click"]),
    (f"rich @ {URL} click", [f"rich @ {URL}", "click"]),
    ('rich; python_version < "3.10", click', ['rich; python_version < "3.10", click']),
    ("rich=13 click==7", ["rich=13", "click==7"]),
]

PIN_ERRORS = [  # (OMNIPKG_PINS value, whole message, whole hint)
    ("rich=13", "OMNIPKG_PINS: invalid requirement 'rich=13': expected a version operator "
     "(==, >=, ...) at column 5", "write it as 'rich==13'"),
    ("rich==13.4.2 Rich>=13", "OMNIPKG_PINS: 'rich' is pinned twice: 'rich==13.4.2' and "
     "'Rich>=13'", "keep one pin per distribution, e.g. 'Rich==13.4.2,>=13'"),
    ('rich==13.4.2; python_version < "3.10"', "OMNIPKG_PINS: pin 'rich==13.4.2; python_version "
     "< \"3.10\"' has an environment marker; markers are not supported in pins (pins apply to "
     "a whole process)", "drop the marker and set the pin only where it applies: "
     "'rich==13.4.2'"),
    (f"rich @ {URL}", f"OMNIPKG_PINS: pin 'rich @ {URL}' is a URL; pins select versions from "
     "the store", "store it with 'pip-omni install', then pin its version, e.g. "
     "'rich==1.2.3'"),
    ("@", "OMNIPKG_PINS: '@' names no file", "write OMNIPKG_PINS=@path/to/pins.txt"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "name", "key", "extras", "specifier", "url", "marker", "canonical"),
    VALID_REQUIREMENTS,
)
def test_valid_requirement(text, name, key, extras, specifier, url, marker, canonical):
    req = parse_requirement(text)
    assert (req.name, req.key, req.extras) == (name, key, frozenset(extras))
    assert (str(req.specifier), req.url, req.marker) == (specifier, url, marker)
    assert isinstance(req.specifier, SpecifierSet)
    assert str(req) == canonical
    assert parse_requirement(canonical) == req and hash(parse_requirement(canonical)) == hash(req)


@pytest.mark.parametrize(("text", "message"), INVALID_REQUIREMENTS)
def test_invalid_requirement(text, message):
    with pytest.raises(InvalidPinError) as caught:
        parse_requirement(text)
    assert caught.value.message == message
    assert caught.value.hint
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("text", "message"), INVALID_REQUIREMENTS)
def test_invalid_requirement_same_as_packaging(text, message):
    with pytest.raises(InvalidRequirement):
        PRequirement(text)


def test_error_hints():
    with pytest.raises(InvalidPinError, match=r"(?s)column 5\n  hint: write it as 'rich==13'$"):
        parse_requirement("rich=13")
    with pytest.raises(InvalidPinError, match=r"hint: write e\.g\. '~=13\.0', or '==13\.\*'$"):
        parse_requirement("rich~=13")
    with pytest.raises(InvalidPinError, match=r"hint: use '==13\.\*' or '!=13\.\*'$"):
        parse_requirement("rich>=13.*")


@pytest.mark.parametrize("value", [None, 13, b"rich"])
def test_requirement_of_non_string(value):
    with pytest.raises(InvalidPinError, match="not a string"):
        parse_requirement(value)


def test_requirement_equality_and_repr():
    assert Requirement("Rich[B,a]>=13.0") == Requirement("rich[a,b] >=13")
    assert Requirement("rich>=13") != Requirement("rich>13")
    assert Requirement("rich") != "rich"
    assert repr(Requirement("rich (>=13)")) == "<Requirement('rich>=13')>"


@pytest.mark.parametrize(("value", "expected"), SPLIT_PINS)
def test_split_pins(value, expected):
    assert split_pins(value) == expected


def test_parse_pins_examples():
    pins = parse_pins("rich>=13,<14,Click==7.1.2")
    assert [(p.key, str(p.specifier)) for p in pins] == [("rich", "<14,>=13"), ("click", "==7.1.2")]
    assert [str(p) for p in parse_pins("a>=1, <2 b[x]")] == ["a<2,>=1", "b[x]"]
    assert parse_pins("  ") == []


@pytest.mark.parametrize(("value", "message", "hint"), PIN_ERRORS)
def test_parse_pins_errors(value, message, hint):
    with pytest.raises(InvalidPinError) as caught:
        parse_pins(value)
    assert (caught.value.message, caught.value.hint) == (message, hint)


def test_parse_pins_names_its_source():
    with pytest.raises(InvalidPinError, match=r"^--pin: invalid requirement 'rich\[': "):
        parse_pins("rich[", source="--pin")


def _pin_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pins.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_pin_file(tmp_path):
    path = _pin_file(
        tmp_path,
        "# pins for the nightly job\n"
        "\n"
        "rich>=13,\\\n"
        "    <14  # continued\n"
        "click==7.1.2\r\n"
        "  numpy [ ] ~= 1.26 \\\n",
    )
    pins = parse_pins(f"  @{path} ")
    assert [str(p) for p in pins] == ["rich<14,>=13", "click==7.1.2", "numpy~=1.26"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rich\n-r other.txt\n", "{path}:2: pip option '-r other.txt' is not supported in a pin file"),
        ("--index-url https://x\n", "{path}:1: pip option '--index-url https://x' is not supported in a pin file"),
        ("\n\n-e .", "{path}:3: pip option '-e .' is not supported in a pin file"),
        ("rich\nclick=7\n", "{path}:2: invalid requirement 'click=7': expected a version operator (==, >=, ...) at column 6"),
        ("rich==1\n# x\nrich==2\n", "{path}:3: 'rich' is pinned twice: 'rich==1' and 'rich==2' (first at {path}:1)"),
        ("a\nb>=1,\\\n<2;\\\nos_name=='nt'\n", "{path}:2: pin \"b>=1,<2;os_name=='nt'\" has an environment marker; markers are not supported in pins (pins apply to a whole process)"),
        ("rich; \\\n", "{path}:1: invalid requirement 'rich;': expected a marker after ';' at column 5"),
    ],
)  # fmt: skip
def test_pin_file_errors(tmp_path, text, message):
    path = _pin_file(tmp_path, text)
    with pytest.raises(InvalidPinError) as caught:
        parse_pins(f"@{path}")
    assert caught.value.message == message.format(path=path)


def test_pin_file_missing(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(InvalidPinError) as caught:
        parse_pins(f"@{missing}", source="PINS")
    assert caught.value.message == (
        f"PINS: cannot read pin file {str(missing)!r}: No such file or directory"
    )
    assert caught.value.hint == "PINS=@path names a regular requirements-style file (at most 1 MiB) with one pin per line"
    with pytest.raises(InvalidPinError, match="cannot read pin file"):
        parse_pins(f"@{tmp_path}")  # a directory


def test_hook_modules_import_only_the_standard_library():
    root = str(Path(omnipkg_hook.__file__).resolve().parents[1])
    code = (
        f"import sys; sys.path.insert(0, {root!r}); "
        "import omnipkg_hook._pep440, omnipkg_hook._requirements; "
        "assert 'packaging' not in sys.modules, 'packaging imported'"
    )
    # -S: no site-packages at all, so any third-party import would fail
    subprocess.run([sys.executable, "-S", "-c", code], check=True)


# ------------------------------------------------------------------- property tests

PIN_TEXT = "abcrz019.-_[](),=<>!~*@+; \t\n\"'"


@given(st.text(max_size=30) | st.text(alphabet=PIN_TEXT, max_size=30))
@settings(max_examples=500, deadline=None)
def test_any_text_raises_only_invalid_pin_error(text):
    try:
        req = parse_requirement(text)
    except InvalidPinError as e:
        assert e.message.startswith(f"invalid requirement {text!r}: ") and e.hint
    else:
        assert str(parse_requirement(str(req))) == str(req)
    assume(not text.lstrip().startswith("@"))  # that would read a file
    try:
        pins = parse_pins(text)
    except InvalidPinError as e:
        assert e.message.startswith("OMNIPKG_PINS: ") and e.hint
    else:
        assert len({p.key for p in pins}) == len(pins)
        assert all(p.marker is None and p.url is None for p in pins)


@given(st.text(alphabet="ab19._-[](),=<>!~*@+v \t:/", max_size=16))
@settings(max_examples=500, deadline=None)
def test_validity_same_as_packaging(text):
    try:
        theirs = PRequirement(text)
    except InvalidRequirement:
        with pytest.raises(InvalidPinError):
            parse_requirement(text)
        return
    ours = parse_requirement(text)
    assert (ours.name, ours.key) == (theirs.name, canonicalize_name(theirs.name))
    assert ours.extras == {canonicalize_name(e) for e in theirs.extras}
    assert (str(ours.specifier), ours.url) == (str(theirs.specifier), theirs.url)


NAMES = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,6}[A-Za-z0-9])?", fullmatch=True)
EXTRAS = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?", fullmatch=True).filter(
    lambda e: "--" not in e
)
VERSIONS = st.sampled_from(["1", "1.0", "2.3.4", "1!2.0", "1.0a1", "1.0.post2", "1.0.dev3",
                            "v1.0", "1.0RC1", "2013.10.1-1"])  # fmt: skip
SPECIFIERS = st.tuples(
    st.sampled_from(["==", "!=", "<=", ">=", "<", ">", "~="]),
    st.sampled_from(["", " "]),
    VERSIONS.filter(lambda v: "." in v),
).map("".join) | st.tuples(st.sampled_from(["==", "!="]), st.sampled_from(["1.*", "1.0+cpu"])).map(
    "".join
)


@st.composite
def requirements(draw):
    """Valid PEP 508 requirements without markers, in assorted spellings."""
    ws = st.sampled_from(["", "", " ", "\t"])
    text = draw(ws) + draw(NAMES) + draw(ws)
    extras = draw(st.lists(EXTRAS, max_size=3))
    if extras or draw(st.booleans()):
        text += "[" + draw(ws) + (draw(ws) + "," + draw(ws)).join(extras) + draw(ws) + "]"
    if draw(st.integers(0, 9)) == 0:
        return text + draw(ws) + "@ " + draw(st.sampled_from([URL, "file:///tmp/x.whl"]))
    specs = (draw(ws) + "," + draw(ws)).join(draw(st.lists(SPECIFIERS, max_size=3)))
    if draw(st.booleans()):
        specs = "(" + draw(ws) + specs + draw(ws) + ")"
    return text + draw(ws) + specs + draw(ws)


@given(requirements())
@settings(max_examples=400, deadline=None)
def test_requirements_same_as_packaging(text):
    theirs = PRequirement(text)
    ours = parse_requirement(text)
    assert (ours.name, ours.key) == (theirs.name, canonicalize_name(theirs.name))
    assert ours.extras == {canonicalize_name(e) for e in theirs.extras}
    assert str(ours.specifier) == str(theirs.specifier)
    assert ours.url == theirs.url and ours.marker is None
    assert str(ours) == str(theirs)  # the generated extras are already normalised


@given(st.lists(requirements(), min_size=1, max_size=3), st.data())
@settings(max_examples=200, deadline=None)
def test_split_pins_finds_each_requirement(texts, data):
    reqs = [parse_requirement(t) for t in texts]
    assume(len({r.key for r in reqs}) == len(reqs) and all(r.url is None for r in reqs))
    separators = data.draw(st.lists(st.sampled_from([",", ", ", " ", " , ", "\n"]),
                                    min_size=len(texts), max_size=len(texts)))  # fmt: skip
    value = "".join(sep + text.strip() for sep, text in zip(separators, texts))
    assert [parse_requirement(t) for t in split_pins(value)] == reqs
    assert parse_pins(value) == reqs
    for sep in (",", " "):  # what pin() writes back to OMNIPKG_PINS reads the same
        assert parse_pins(sep.join(map(str, reqs))) == reqs
