"""omnipkg_hook._markers: PEP 508 markers, differentially against packaging.markers.

packaging is imported here only; the hook (and pip-omni's warm bubble path) never does.
"""

from __future__ import annotations

import itertools
import random

import packaging
import pytest
from packaging.markers import InvalidMarker as PInvalidMarker
from packaging.markers import Marker as PMarker
from packaging.markers import UndefinedComparison as PUndefinedComparison
from packaging.markers import UndefinedEnvironmentName as PUndefinedEnvironmentName
from packaging.markers import default_environment

from omnipkg_hook._markers import (
    InvalidMarker,
    Marker,
    UndefinedComparison,
    UndefinedEnvironmentName,
)

PACKAGING_26 = int(packaging.__version__.split(".")[0]) >= 26
needs_packaging_26 = pytest.mark.skipif(
    not PACKAGING_26, reason=f"packaging {packaging.__version__} < 26; _markers follows 26"
)

ENVIRONMENTS = [
    default_environment(),
    {**default_environment(), "python_version": "3.9", "python_full_version": "3.9.18",
     "sys_platform": "win32", "os_name": "nt", "platform_system": "Windows", "platform_machine": "AMD64",
     "implementation_name": "cpython", "platform_python_implementation": "CPython",
     "platform_release": "10", "implementation_version": "3.9.18"},
    {**default_environment(), "python_version": "3.13", "python_full_version": "3.13.0rc2",
     "sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
     "implementation_name": "pypy", "platform_python_implementation": "PyPy",
     "platform_release": "23.1.0", "implementation_version": "7.3.13"},
    {**default_environment(), "platform_release": "5.15.0-91-generic", "python_full_version": "3.12.1+"},
]

# Real Requires-Dist markers (rich, pytest, jupyter, numpy, requests...) and edge cases.
MARKERS = [
    'python_version < "3.11"',
    'python_version >= "3.8"',
    "python_version<'3.9'",
    'python_version == "3.9"',
    'python_version != "3.13"',
    'python_version > "3"',
    'python_version ~= "3.9"',
    'python_version == "3.*"',
    'python_version === "3.9"',
    'python_full_version >= "3.12.1"',
    'python_full_version < "3.13.0"',
    'python_full_version >= "3.13.0rc1"',
    'implementation_version >= "7"',
    'platform_release >= "5.10"',
    'platform_release == "10"',
    'sys_platform == "win32"',
    'sys_platform != "win32"',
    "sys.platform == 'linux'",
    'os.name == "nt"',
    'os_name == "posix"',
    'platform.machine == "x86_64"',
    'platform_machine in "x86_64 aarch64"',
    'platform_machine not in "x86_64 aarch64"',
    '"linux" in sys_platform',
    '"win" not in sys_platform',
    'platform_system == "Darwin" and platform_machine == "arm64"',
    'python_implementation == "CPython"',
    'platform_python_implementation != "PyPy"',
    'implementation_name == "cpython" and python_version < "3.12"',
    'extra == "jupyter"',
    'extra == "Jupyter_Notebook"',
    'extra == "jupyter-notebook"',
    '"jupyter" == extra',
    'extra != "test"',
    'python_version < "3.10" and extra == "test"',
    'extra == "a" or extra == "b"',
    '(extra == "a" or extra == "b") and python_version >= "3.9"',
    'python_version >= "3.9" and (sys_platform == "win32" or sys_platform == "darwin")',
    'python_version < "3" or python_version >= "3.9" and sys_platform == "linux"',
    '((python_version >= "3.9"))',
    '  python_version  >=  "3.9"  ',
    'python_version\t>=\t"3.9"',
    'sys_platform < "linux"',
    'sys_platform <= "linux"',
    'sys_platform >= "linux"',
    'sys_platform > "linux"',
    'platform_version == "x"',
    'python_version > "3.9.*"',
    'python_version in "3.9 3.10 3.11"',
    'python_full_version == "3.12.1+local"',
    'python_version == python_full_version',
    '"a" == "a"',
    'sys_platform ~= "linux"',
    'sys_platform === "linux"',
    '"a\\tb" == sys_platform',
    "'\\u0041' == os_name",
    'python_version >= "3.9" and',
    'python_version >= ',
    'python_version >= "3.9" or or os_name == "nt"',
    '(python_version >= "3.9"',
    'python_version >= "3.9")',
    'version >= "3.9"',
    'python_version => "3.9"',
    'python_version >= 3.9',
    'python_version not "3.9"',
    'python_version notin "3.9"',
    '"a" in extras',
    'extras == "a"',
    '"a" in dependency_groups',
    'python_version >= "3.9" andos_name == "nt"',
    '',
    ' ',
]

EXTRAS = ["", "jupyter", "Jupyter-Notebook", "test", "a", "b"]


def _outcome(make, evaluate, text, env):
    try:
        m = make(text)
    except (InvalidMarker, PInvalidMarker):
        return "invalid"
    try:
        return evaluate(m, env)
    except (UndefinedEnvironmentName, PUndefinedEnvironmentName):
        return "undefined-name"
    except (UndefinedComparison, PUndefinedComparison):
        return "undefined-comparison"


@needs_packaging_26
@pytest.mark.parametrize("text", MARKERS)
def test_agrees_with_packaging(text):
    for env, extra in itertools.product(ENVIRONMENTS, EXTRAS):
        ours = _outcome(Marker, lambda m, e, extra=extra: m.evaluate({**e, "extra": extra}), text, env)
        theirs = _outcome(PMarker, lambda m, e, extra=extra: m.evaluate({**e, "extra": extra}), text, env)
        assert ours == theirs, (text, extra, env["python_version"], env["sys_platform"])


@needs_packaging_26
def test_agrees_with_packaging_on_random_combinations():
    rng = random.Random(20261206)
    atoms = [m for m in MARKERS[:50] if _outcome(Marker, lambda m, e: m.evaluate(e), m, ENVIRONMENTS[0]) in (True, False)]
    for _ in range(400):
        parts = [rng.choice(atoms)]
        for _ in range(rng.randint(0, 4)):
            parts += [rng.choice(["and", "or"]), rng.choice(atoms)]
        text = " ".join(f"({p})" if rng.random() < 0.3 else p for p in parts)
        env = rng.choice(ENVIRONMENTS)
        extra = rng.choice(EXTRAS)
        ours = _outcome(Marker, lambda m, e, extra=extra: m.evaluate({**e, "extra": extra}), text, env)
        theirs = _outcome(PMarker, lambda m, e, extra=extra: m.evaluate({**e, "extra": extra}), text, env)
        assert ours == theirs, (text, extra)


def test_named_cases():
    env = {**default_environment(), "python_version": "3.9", "sys_platform": "linux"}
    assert Marker('python_version < "3.11"').evaluate(env) is True
    assert Marker('python_version >= "3.10"').evaluate(env) is False
    assert Marker('extra == "Fancy_Feature"').evaluate({**env, "extra": "fancy-feature"}) is True
    assert Marker('extra == "test"').evaluate(env) is False  # extra defaults to ""
    # "and" binds tighter than "or"
    assert Marker('sys_platform == "win32" and python_version < "3" or python_version == "3.9"').evaluate(env)
    with pytest.raises(InvalidMarker, match="'python_version >= '"):
        Marker("python_version >= ")
    with pytest.raises(UndefinedEnvironmentName):
        Marker('"a" in extras').evaluate(env)
    with pytest.raises(UndefinedComparison):
        Marker('sys_platform ~= "linux"').evaluate(env)


def test_errors_are_the_natural_builtins():
    assert issubclass(InvalidMarker, ValueError)
    assert issubclass(UndefinedComparison, ValueError)
    assert issubclass(UndefinedEnvironmentName, KeyError)
