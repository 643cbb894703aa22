"""Probing another interpreter: its own standard library only, and one short line when it fails."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from omnipkg_hook.errors import InterpreterError
from omnipkg_pip.pythons import interp

PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def _pyenv(version: str) -> str:
    hits = sorted(PYENV.glob(f"{version}.*/bin/python"))
    if not hits:
        pytest.skip(f"Python {version} is not installed under {PYENV}")
    return str(hits[-1])


def _fake(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def _probe_error(executable: str) -> InterpreterError:
    with pytest.raises(InterpreterError) as e:
        interp._probe(executable)
    err = e.value
    text = f"{err.message}\n{err.hint}"
    assert "\n" not in err.message and len(err.message) < 400
    assert "import json" not in text and "sys_tags" not in text and "_tags.py" not in text
    assert repr(executable) in err.message
    return err


def test_a_39_is_probed_with_its_own_stdlib_even_when_ours_is_poisoned(tmp_path, monkeypatch):
    """Regression: packaging 26 (3.10+ syntax) in our environment broke probing 3.9.

    Whatever is on our side -- PYTHONPATH, the working directory -- must not reach the probe.
    """
    python = _pyenv("3.9")
    poison = tmp_path / "poison"
    for mod in ("json", "platform", "sysconfig", "packaging"):
        (poison / mod).mkdir(parents=True)
        (poison / mod / "__init__.py").write_text("raise SystemExit('poisoned: imported ' + __name__)\n")
    monkeypatch.setenv("PYTHONPATH", str(poison))
    monkeypatch.chdir(poison)
    info = interp._probe(python)
    assert info.version.startswith("3.9.") and info.version_info == (3, 9)
    assert info.key == "cpython-39-" + sys.platform + "-" + os.uname().machine.lower()
    assert info.tags[0].startswith("cp39-cp39-") and "py3-none-any" in info.tags
    assert info.markers["python_version"] == "3.9"
    assert info.purelib.startswith(str(Path(python).parent.parent))


def test_a_failing_interpreter_says_its_first_line_of_stderr(tmp_path):
    exe = _fake(tmp_path, "python3", 'echo "fatal: cannot find the standard library" >&2\necho more >&2\nexit 3\n')
    err = _probe_error(exe)
    assert err.message == f"interpreter {exe!r} failed: 'fatal: cannot find the standard library'"
    assert f"`{exe} -I -S -c pass`" in err.hint


def test_a_traceback_is_reported_by_its_last_line(tmp_path):
    python = _pyenv("3.9")
    exe = _fake(tmp_path, "python3", f'exec {python} -c "import no_such_module_here"\n')
    err = _probe_error(exe)
    assert err.message.endswith("failed: \"ModuleNotFoundError: No module named 'no_such_module_here'\"")


def test_silent_failure_says_the_exit_status(tmp_path):
    err = _probe_error(_fake(tmp_path, "python3", "exit 7\n"))
    assert err.message.endswith("failed: exit status 7 and nothing on stderr")


@pytest.mark.parametrize("output, said", [
    ("hello from a shell script", "'hello from a shell script'"),
    ('{"version": "3.11.0"}', "'{\"version\": \"3.11.0\"}'"),
    ("", "nothing"),
    ("x" * 5000, repr("x" * 200 + "...")),
])
def test_garbage_on_stdout_is_not_taken_for_an_answer(tmp_path, output, said):
    exe = _fake(tmp_path, "python3", f"printf '%s\\n' '{output}'\n" if output else "true\n")
    err = _probe_error(exe)
    assert err.message == f"interpreter {exe!r} did not answer as a Python does: it printed {said}"


def test_python_38_is_named_as_unsupported():
    python = _pyenv("3.8")
    err = _probe_error(python)
    assert err.message.startswith("Python 3.8.") and err.message.endswith(f"at {python!r} is not supported")
    assert err.hint == "pip-omni supports Python 3.9 to 3.13"


def test_not_executable_and_missing(tmp_path):
    plain = tmp_path / "python3"
    plain.write_text("not a program\n")
    err = _probe_error(str(plain))
    assert "Permission denied" in err.message
    err = _probe_error(str(tmp_path / "nowhere" / "python3"))
    assert err.message == f"interpreter {str(tmp_path / 'nowhere' / 'python3')!r} does not exist"


def test_the_cli_prints_one_line_and_a_hint(omni_venv, tmp_path):
    exe = _fake(tmp_path, "python3", 'echo "Unknown option: -I" >&2\nexit 2\n')
    proc = omni_venv.cli("python", "adopt", exe, check=False)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == f"pip-omni: error: interpreter {exe!r} failed: 'Unknown option: -I'"
    assert lines[1].startswith("  hint: pip-omni needs a Python 3.9 to 3.13") and len(lines) == 2


def test_the_probe_file_is_the_tags_module():
    from omnipkg_hook import _tags

    assert os.path.samefile(interp._PROBE_FILE, _tags.__file__)
