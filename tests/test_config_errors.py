"""Half-written or wrong configuration and store files: one clear line, nothing changed.

Covers the configuration pip-omni reads: ``[tool.omnipkg]`` in pyproject.toml, the
interpreter registry (``interpreters.json``) and bubble manifests, through the CLI and
through a pinned interpreter start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import tree_digest


def _run(venv, args, cwd, extra_env=None, drop=("OMNIPKG_STORE",)):
    env = {k: v for k, v in venv.env.items() if k not in drop}
    env.update(extra_env or {})
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


if sys.version_info >= (3, 11):  # tomllib reads the file
    BROKEN_PYPROJECT = [
        ('[tool.omnipkg]\nstore = "unterminated\n', r"cannot read '.*pyproject\.toml': ",
         "fix the TOML, or set OMNIPKG_STORE to choose the store explicitly"),
        ("[tool.omnipkg]\nstore = 5\n", r"\[tool\.omnipkg\] store in '.*pyproject\.toml' must be a non-empty string, not 5",
         'write store = "path/to/store"'),
    ]
else:  # no TOML parser in the stdlib: only the documented simple form is read, never guessed
    _HINT = 'on Python < 3.11 write it as store = "path/to/store", or set OMNIPKG_STORE'
    BROKEN_PYPROJECT = [
        ('[tool.omnipkg]\nstore = "unterminated\n',
         r"cannot read \[tool\.omnipkg\] store in '.*pyproject\.toml': 'store = \"unterminated'", _HINT),
        ("[tool.omnipkg]\nstore = 5\n", r"cannot read \[tool\.omnipkg\] store in '.*pyproject\.toml': 'store = 5'", _HINT),
    ]


@pytest.mark.parametrize("text, message, hint", BROKEN_PYPROJECT, ids=["half-written", "not a string"])
def test_a_broken_pyproject_store_setting_is_one_clear_line(omni_venv, tmp_path, text, message, hint):
    import re

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(text)
    before = tree_digest(project)
    proc = _run(omni_venv, [str(omni_venv.path / "bin" / "pip-omni"), "list"], cwd=project)
    assert proc.returncode == 1
    first, second = proc.stderr.strip().splitlines()
    assert re.match("pip-omni: error: " + message, first), first
    assert second == f"  hint: {hint}"
    assert tree_digest(project) == before


def test_a_broken_pyproject_does_not_stop_a_pinned_interpreter(omni_venv, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.omnipkg]\nstore = "unterminated\n')
    proc = _run(omni_venv, [str(omni_venv.python), "-c", "print('started')"], cwd=project,
                extra_env={"OMNIPKG_PINS": "anything==1.0"})
    assert proc.returncode == 0 and proc.stdout == "started\n"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pyproject.toml" in lines[0] and "Traceback" not in proc.stderr


def test_a_half_written_interpreter_registry_is_a_clear_error(omni_venv):
    store = omni_venv.env["OMNIPKG_STORE"]
    os.makedirs(store, exist_ok=True)
    registry = os.path.join(store, "interpreters.json")
    with open(registry, "w") as f:
        f.write('{"format": 1, "default": null, "interpreters": [{"version": "3.9')
    proc = omni_venv.cli("python", "list", check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith(f"pip-omni: error: cannot read {registry!r}")
    assert proc.stderr.splitlines()[1] == "  hint: delete the file and adopt your interpreters again"
    assert open(registry).read().endswith('"3.9')  # left as it was


def test_a_damaged_bubble_manifest_names_the_file_and_doctor(omni_venv, wheel, wheelhouse):
    wheel("broken", "1.0")
    wheel("broken", "2.0")
    omni_venv.pip("install", "-q", "--no-index", "--find-links", str(wheelhouse), "broken==1.0")
    omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "broken==2.0")
    store = omni_venv.env["OMNIPKG_STORE"]
    (manifest,) = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(store, "bubbles")) for f in fs]
    with open(manifest, "r+") as f:
        text = f.read()
        f.seek(0)
        f.truncate()
        f.write(text[: len(text) // 2])
    proc = omni_venv.run("list", check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith(f"pip-omni: error: damaged manifest {manifest!r}")
    assert proc.stderr.splitlines()[1] == "  hint: run `pip-omni doctor --repair`"
    pinned = omni_venv.run("python", "-c", "import broken; print(broken.__version__)",
                           env={"OMNIPKG_PINS": "broken==2.0"}, check=False)
    assert pinned.returncode == 0 and pinned.stdout == "1.0\n"  # starts, without the pin, and says why
    assert "damaged manifest" in pinned.stderr and "Traceback" not in pinned.stderr
    doctor = json.loads(omni_venv.run("doctor", "--json", check=False).stdout)
    assert "bubble-damaged" in {p["kind"] for p in doctor["problems"]}
