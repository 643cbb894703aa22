"""pip-omni's table of pip options that take a value matches the pip under test (never importing pip)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from omnipkg_pip import pipopts


def _pip_options(command: str) -> tuple[set, set]:
    out = subprocess.run([sys.executable, "-m", "pip", command, "--help"], capture_output=True, text=True,
                         check=True).stdout
    values, flags = set(), set()
    for line in out.splitlines():
        m = re.match(r"^  (-\w)?(?:, )?(--[\w-]+)?( <[^>]*>)?(\s|$)", line)
        if m and (m.group(1) or m.group(2)):
            (values if m.group(3) else flags).update(n for n in (m.group(1), m.group(2)) if n)
    return values, flags


@pytest.mark.parametrize("command", sorted(pipopts.VALUE_OPTIONS))
def test_value_table_matches_pips_help(command):
    values, flags = _pip_options(command)
    assert values, "pip's help was not understood"
    assert values <= pipopts.VALUE_OPTIONS[command], values - pipopts.VALUE_OPTIONS[command]
    assert not flags & pipopts.VALUE_OPTIONS[command], flags & pipopts.VALUE_OPTIONS[command]


def test_install_only_options_are_the_ones_pip_wheel_lacks():
    install = set().union(*_pip_options("install"))
    wheel = set().union(*_pip_options("wheel"))
    assert not pipopts.INSTALL_ONLY & wheel
    assert install - wheel <= pipopts.INSTALL_ONLY | {"--no-deps"}, install - wheel - pipopts.INSTALL_ONLY


def test_split_keeps_each_pip_option_with_its_value():
    from omnipkg_pip.cli import build_parser

    parser = build_parser(only="install").omni_subparsers.choices["install"]
    ours, theirs = pipopts.split(
        ["--no-cache-dir", "rich", "--src", "x", "-cC.txt", "--log", "l.txt", "-Uq", "--json",
         "--progress-bar=off", "-i", "https://i", "--frob", "--", "-weird"], parser, "install")
    assert ours == ["rich", "-c", "C.txt", "-U", "-q", "--json", "--", "-weird"]
    assert theirs == [["--no-cache-dir"], ["--src", "x"], ["--log", "l.txt"], ["--progress-bar=off"],
                      ["-i", "https://i"], ["--frob"]]
