"""The plain-input paths of ``omnipkg_hook._pep440`` (issue 13 item 2): ``13.4.2`` and ``>=2.2.0``
are read without compiling the PEP 440 patterns, and give exactly what the patterns give; marker
variables are matched without compiling their alternation."""

from __future__ import annotations

import re
import subprocess
import sys

import packaging.version
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnipkg_hook import _markers, _pep440
from omnipkg_hook._pep440 import (
    InvalidVersion,
    SpecifierSet,
    Version,
    _plain_specifier_end,
    _specifier_re,
)

_SPEC_CHARS = "0123456789" * 3 + "...==!<>~ \t\u00a0,;)*+vrca-_!"


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from(list(_SPEC_CHARS)), max_size=14), st.integers(0, 3))
def test_plain_specifier_end_is_where_the_pattern_ends_or_minus_one(text, pos):
    pos = min(pos, len(text))
    end = _plain_specifier_end(text, pos)
    if end >= 0:
        m = _specifier_re().match(text, pos)
        assert m is not None and m.end() == end, (text, pos)


@pytest.mark.parametrize("text, end", [(">=2.2.0", 7), ("<3.0.0,>=2.13.0", 6), ("== 13.4.2;", 9), ("~=1.4)", 5),
                                       ("!=1.5 ", 5), ("~=1", -1), ("===1.0", -1), ("==1.0.*", -1), ("<1.0rc1", -1),
                                       ("==1.0+cpu", -1), (">=1.", -1), (">=v1", -1), (">=", -1), ("1.0", -1),
                                       ("=>1", -1), (">=\u0661", -1)])
def test_plain_specifier_end_examples(text, end):
    assert _plain_specifier_end(text) == end


@settings(max_examples=2000, deadline=None)
@given(st.text(st.sampled_from(list("0123456789..")), min_size=1, max_size=12))
def test_plain_versions_read_as_packaging_reads_them(text):
    try:
        theirs = packaging.version.Version(text)
    except packaging.version.InvalidVersion:
        with pytest.raises(InvalidVersion):
            Version(text)
        return
    ours = Version(text)
    assert str(ours) == str(theirs) and ours.release == theirs.release
    assert (ours, ours.is_prerelease) == (Version(" " + text), theirs.is_prerelease)  # " 1.2": the pattern's way


def test_plain_input_compiles_no_pattern_and_the_rest_still_does():
    code = """if True:
        from omnipkg_hook import _pep440
        from omnipkg_hook._markers import Marker
        from omnipkg_hook._requirements import Requirement
        r = Requirement("rich>=13.4,<14; python_version >= '3.8'")
        assert r.specifier.contains("13.4.2") and not r.specifier.contains("14.0")
        assert Marker(r.marker).evaluate({"python_version": "3.11"})
        assert _pep440.Version("13.4.2") < _pep440.Version("13.10")
        assert not Requirement("typing-extensions").specifier  # no specifier at all
        assert Requirement("colorama ; extra == 'windows'").marker == "extra == 'windows'"
        assert Requirement("x (>=1.0, <2)").specifier.contains("1.5")
        print(len(_pep440._version_re.box), len(_pep440._specifier_re.box))
        r = Requirement("rich>=13.4.0rc1")
        assert r.specifier.contains("13.4.0") and _pep440.Version("1.0.post1").post == 1
        print(len(_pep440._version_re.box), len(_pep440._specifier_re.box))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "0", "1", "1"]


def test_plain_paths_keep_the_errors():
    with pytest.raises(InvalidVersion):
        Version("1" * 5000)  # int() refuses it: not a version
    with pytest.raises(_pep440.InvalidSpecifier):
        SpecifierSet("~=1")
    assert str(SpecifierSet(">= 2.2.0 , <3")) == "<3,>=2.2.0"


# The marker variable pattern _markers used to compile (packaging's), kept here as the reference.
_VARIABLE = re.compile(
    r"\b(python_version|python_full_version|os[._]name|sys[._]platform|platform_(?:release|system)"
    r"|platform[._](?:version|machine|python_implementation)|python_implementation"
    r"|implementation_(?:name|version)|extras?|dependency_groups)\b"
)
_PIECES = ["python_version", "python_full_version", "os", "name", "sys", "platform", "release", "system",
           "version", "machine", "python_implementation", "implementation", "extra", "extras", "s", "dependency_groups",
           ".", "_", " ", "x", "é", "1", "(", "'", "=", ";"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=5), st.integers(0, 30))
def test_marker_variables_are_matched_as_the_pattern_matches_them(pieces, pos):
    text = "".join(pieces)
    pos = min(pos, len(text))
    m = _VARIABLE.match(text, pos)
    assert _markers._variable_at(text, pos) == (m.group(0) if m else None), (text, pos)
