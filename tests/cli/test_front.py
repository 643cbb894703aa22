"""The front door (items 8, 9; issue 13's CLI start): help, did-you-mean, --version, completion, --json anywhere."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from omnipkg_pip.cli import COMMANDS, build_parser


def test_typo_of_our_command_gets_did_you_mean_and_exit_2(omni_venv):
    proc = omni_venv.cli("doctr", check=False)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["pip-omni: error: unknown command 'doctr'",
                                        "  hint: did you mean `pip-omni doctor`?"]
    proc = omni_venv.cli("help", "instal", check=False)
    assert proc.returncode == 2 and "did you mean `install`" in proc.stderr


@pytest.mark.parametrize("argv", [["help"], ["--help"], ["-h"], []])
def test_help_lists_our_commands_then_says_the_rest_is_pips(omni_venv, argv):
    out = omni_venv.cli(*argv).stdout
    listed = [line.split()[0] for line in out.split("pip-omni's commands:")[1].split("\n\n")[0].strip().splitlines()]
    assert listed == list(COMMANDS)
    assert "Every other command is pip's and goes to pip unchanged" in out.split("pip-omni's commands:")[1]


def test_help_of_one_command_and_of_a_pip_command(omni_venv):
    assert omni_venv.cli("help", "install").stdout.startswith("usage: pip-omni install")
    assert "pip download [options]" in omni_venv.cli("help", "download").stdout


_MODULES = ("import json, sys; from omnipkg_pip.cli import main; main(sys.argv[1:]); "
            "sys.stderr.write(json.dumps(sorted(sys.modules)))")


def _imported(venv, *argv):
    """What ``pip-omni ARGV`` prints and the modules it imported (sys.modules: -X importtime misses
    importlib.import_module)."""
    proc = subprocess.run([str(venv.python), "-c", _MODULES, *argv],
                          capture_output=True, text=True, env=venv.env, check=True)
    return proc.stdout, set(json.loads(proc.stderr))


def test_version_imports_no_command_module_and_list_only_its_own(omni_venv):
    out, mods = _imported(omni_venv, "--version")
    assert re.match(r"pip-omni \d+\.\d+\.\d+ from .* \(python 3\.\d+\)$", out.strip())
    # the version it says (and sends as its User-Agent) is the installed distribution's
    meta = subprocess.run([str(omni_venv.python), "-c", "import importlib.metadata as m; print(m.version('pip-omni'))"],
                          capture_output=True, text=True, env=omni_venv.env, check=True).stdout.strip()
    assert out.split()[1] == meta
    assert not {m for m in mods if m.startswith("omnipkg_pip.commands")}
    assert "argparse" not in mods and "packaging" not in mods
    assert _imported(omni_venv, "-V")[0] == out
    _out, mods = _imported(omni_venv, "list")
    assert {m for m in mods if m.startswith("omnipkg_pip.commands")} == {"omnipkg_pip.commands", "omnipkg_pip.commands.listing"}
    _out, mods = _imported(omni_venv, "help")
    assert not {m for m in mods if m.startswith("omnipkg_pip.commands")}


def _complete(venv, line, cword=None):
    words = line.split(" ")
    env = {"PIP_OMNI_AUTO_COMPLETE": "1", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words) - 1 if cword is None else cword)}
    return venv.cli(env=env).stdout.split()


def test_completion_scripts_and_answers_cover_our_commands_and_pips(omni_venv):
    for shell, mark in (("bash", "complete -o default -F _pip_omni_completion pip-omni"),
                        ("zsh", "#compdef pip-omni"), ("fish", "complete -fa \"(__fish_complete_pip_omni)\"")):
        script = omni_venv.cli("completion", f"--{shell}").stdout
        assert mark in script and "PIP_OMNI_AUTO_COMPLETE" in script
    assert _complete(omni_venv, "pip-omni do") == ["doctor", "download"]
    assert _complete(omni_venv, "pip-omni daemon st") == ["start", "status", "stop"]
    install = _complete(omni_venv, "pip-omni install --")
    assert "--bubble" in install and "--strategy" in install  # ours
    assert "--require-hashes" in install and "--force-reinstall" in install  # pip's, passed on
    assert "--no-deps" in _complete(omni_venv, "pip-omni download --no-d")


def test_json_is_taken_anywhere_on_the_line(omni_venv, tmp_path):
    runtime = tmp_path / "rt"
    env = {"OMNIPKG_RUNTIME_DIR": str(runtime)}
    assert "interpreter" in json.loads(omni_venv.cli("--json", "list").stdout)
    assert "objects" in json.loads(omni_venv.cli("store", "--json", "info").stdout)
    assert "objects" in json.loads(omni_venv.cli("--json", "store", "info").stdout)
    assert json.loads(omni_venv.cli("daemon", "--json", "status", env=env, check=False).stdout)["running"] is False
    assert json.loads(omni_venv.cli("--json", "daemon", "stop", env=env).stdout) == {
        "pid": None, "stopped": False, "store": omni_venv.env["OMNIPKG_STORE"], "cell_zygotes": []}
    proc = omni_venv.cli("python", "forget", "3.9", "--json", check=False)  # no --json there: argparse says so
    assert proc.returncode == 2 and "unrecognized arguments: --json" in proc.stderr


def _parsers(parser, prefix=()):
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _parsers(sub, (*prefix, name))


def test_help_never_names_a_source_file_and_usage_errors_exit_2(omni_venv):
    for words, _sub in _parsers(build_parser()):
        out = omni_venv.cli(*words, "--help").stdout
        assert not re.search(r"\w/\w+\.py\b|omnipkg_\w+\.\w+\.py", out), (words, out)  # script.py is fine
    proc = omni_venv.cli("install", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("pip-omni: error: nothing to install\n  hint: ")
    assert omni_venv.cli("install", "--strategy", "wild", check=False).returncode == 2
