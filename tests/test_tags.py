"""omnipkg_hook/_tags.py (stdlib-only wheel tags and markers) against packaging itself.

For every Python 3.9-3.13 installed under pyenv, the reference is that interpreter's own
``packaging``: the copy vendored in its own pip, run inside it (its own third-party code).
Those copies may predate packaging 26.3, which put the native ``linux_*`` platform tags
before manylinux/musllinux; for them the reference is assembled from the same version's
building blocks (``platform_tags``, ``cpython_tags``, ``compatible_tags``) the way 26.3's
``sys_tags`` assembles them, so the order compared is the current one.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnipkg_hook import _tags

TAGS_FILE = Path(_tags.__file__)
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"

# The reference list from a packaging module, in packaging 26.3's order (see above).
REFERENCE_FN = r"""
def reference(packaging, tags):
    if tuple(int(x) for x in packaging.__version__.split(".")[:2]) >= (26, 3):
        return [str(t) for t in tags.sys_tags()]
    plats = list(tags.platform_tags())
    plats = [p for p in plats if p.startswith("linux_")] + [p for p in plats if not p.startswith("linux_")]
    interp = "cp" + tags.interpreter_version()
    return ([str(t) for t in tags.cpython_tags(platforms=plats)]
            + [str(t) for t in tags.compatible_tags(interpreter=interp, platforms=plats)])
"""
# Runs inside the target interpreter, with its own site-packages (its pip) on sys.path.
REFERENCE = REFERENCE_FN + r"""
import json
from pip._vendor import packaging
from pip._vendor.packaging import markers, tags
print(json.dumps({"packaging": packaging.__version__, "tags": reference(packaging, tags),
                  "markers": dict(markers.default_environment())}))
"""
PACKAGING_26_3 = tuple(int(x) for x in importlib.metadata.version("packaging").split(".")[:2]) >= (26, 3)
needs_packaging_26_3 = pytest.mark.skipif(
    not PACKAGING_26_3, reason="_tags follows packaging 26.3+; this environment's packaging is older "
    "(its mac tags said fat32 for fat3, its Linux order differs); the per-interpreter tests still run")


def _pyenv(version: str) -> str | None:
    hits = sorted(PYENV.glob(f"{version}.*/bin/python"), key=lambda p: [int(x) for x in p.parts[-3].split(".")
                                                                         if x.isdigit()])
    return str(hits[-1]) if hits else None


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_tags_and_markers_match_each_interpreters_own_packaging(version):
    python = _pyenv(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed under {PYENV}")
    ref = subprocess.run([python, "-I", "-c", REFERENCE], capture_output=True, text=True)
    if ref.returncode != 0 and "No module named 'pip'" in ref.stderr:
        pytest.skip(f"Python {version} at {python} has no pip, so no packaging of its own to compare with")
    assert ref.returncode == 0, ref.stderr
    expected = json.loads(ref.stdout)
    # ours, run the way the probe runs it: nothing but that interpreter's stdlib
    ours = json.loads(subprocess.run([python, "-I", "-S", str(TAGS_FILE)], capture_output=True, text=True,
                                     check=True).stdout)
    assert ours["tags"] == expected["tags"], f"against packaging {expected['packaging']}"
    assert ours["markers"] == expected["markers"]
    assert ours["version_info"] == [int(x) for x in version.split(".")]
    assert len(ours["tags"]) > 100 and ours["tags"][-1] == "py30-none-any"


def test_in_process_matches_this_environments_packaging():
    import packaging
    from packaging import markers, tags

    ns = {}
    exec(REFERENCE_FN, ns)
    assert _tags.sys_tags() == ns["reference"](packaging, tags)
    assert _tags.marker_environment() == markers.default_environment()


def test_key_agrees_with_the_hooks():
    from omnipkg_hook.store import interpreter_key

    assert _tags.interpreter_key() == interpreter_key()


@pytest.mark.parametrize("glibc", [(2, 5), (2, 12), (2, 17), (2, 28), (2, 36), (3, 1)])
@pytest.mark.parametrize("archs", [["x86_64"], ["aarch64"], ["s390x"], ["armv8l", "armv7l"], ["i686"]])
def test_manylinux_tags_follow_packaging_for_any_glibc(monkeypatch, glibc, archs):
    from packaging import _manylinux

    monkeypatch.setattr(_manylinux, "_get_glibc_version", lambda: _manylinux._GLibCVersion(*glibc))
    monkeypatch.setattr(_manylinux, "_have_compatible_abi", lambda exe, a: True)
    armhf = (1, 1, 40, 0x05000400, None)
    assert list(_tags._manylinux(archs, armhf if "armv7l" in archs else (1, 1, 3, 0, None), glibc)) == list(
        _manylinux.platform_tags(archs))


def test_manylinux_needs_a_matching_executable():
    x86_64_exe = (2, 1, 62, 0, "/lib64/ld-linux-x86-64.so.2")
    assert list(_tags._manylinux(["i686"], x86_64_exe, (2, 36))) == []
    assert list(_tags._manylinux(["armv7l"], (1, 1, 40, 0x05000000, None), (2, 36))) == []  # soft-float
    assert list(_tags._manylinux(["sparc"], x86_64_exe, (2, 36))) == []


def test_the_elf_header_of_this_python_is_read():
    elf = _tags._elf(sys.executable)
    if elf is None:
        pytest.skip(f"{sys.executable} is not an ELF file")
    from packaging._elffile import ELFFile

    with open(os.path.realpath(sys.executable), "rb") as f:
        ref = ELFFile(f)
        assert elf == (ref.capacity, ref.encoding, ref.machine, ref.flags, ref.interpreter)


@pytest.mark.parametrize("text", [
    "musl libc (x86_64)\nVersion 1.2.4\nDynamic Program Loader\n",
    "musl libc (aarch64)\nVersion 1.1.24\n",
    "glibc\nVersion 2.3\n",
    "musl libc\n",
    "",
])
def test_musl_version_is_parsed_as_packaging_does(text):
    from packaging import _musllinux

    ref = _musllinux._parse_musl_version(text)
    assert _tags._parse_musl(text) == (None if ref is None else tuple(ref))


@needs_packaging_26_3
@pytest.mark.parametrize("version", [(10, 4), (10, 9), (10, 15), (10, 16), (11, 0), (12, 3), (14, 2), (15, 0)])
@pytest.mark.parametrize("arch", ["x86_64", "arm64", "i386", "ppc", "ppc64", "universal2"])
def test_macos_platforms_follow_packaging(version, arch):
    from packaging import tags

    assert list(_tags._mac_platforms(version, arch)) == list(tags.mac_platforms(version, arch))
