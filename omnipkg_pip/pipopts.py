"""pip's command-line options, so an option pip-omni does not know reaches pip untouched.

pip-omni's own commands that stand in for pip's (install, list, show, freeze,
uninstall) parse only their own options; every other option on the line is pip's and
is handed to pip as written, with its value. To tell ``--exclude rich`` (an option
and its value) from ``--no-deps rich`` (a flag and a requirement) this module keeps,
per pip command, the options that take a value; ``tests/cli/test_pip_options.py``
checks the table against ``python -m pip CMD --help`` of the pip under test. pip is
never imported. An option that pip itself does not know is passed on like a flag
and pip refuses it with its own message.
"""

from __future__ import annotations

from omnipkg_hook.errors import OmnipkgError

__all__ = ["VALUE_OPTIONS", "GENERAL_VALUES", "INSTALL_ONLY", "split", "UsageError", "name_of"]


class UsageError(OmnipkgError, ValueError):
    """The command line asks for something pip-omni does not do; exit status 2, as argparse and pip."""

    exit_status = 2

_GENERAL = {"--python", "--log", "--local-log", "--keyring-provider", "--proxy", "--retries", "--timeout",
            "--exists-action", "--trusted-host", "--cert", "--client-cert", "--cache-dir", "--use-feature",
            "--use-deprecated", "--resume-retries"}
GENERAL_VALUES = frozenset(_GENERAL)  # pip's general options that take a value (any command)
_INDEX = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-binary", "--only-binary",
          "--all-releases", "--only-final", "--uploaded-prior-to", "--refresh-package"}
_SELECT = {"-r", "--requirement", "-c", "--constraint", "--progress-bar", "--src", "--group",
           "--build-constraint", "--requirements-from-script", "--global-option", "--build-option",
           "--install-option"}

# pip command -> its options that take a value (pip 23 to 26)
VALUE_OPTIONS = {
    "install": _GENERAL | _INDEX | _SELECT | {"-e", "--editable", "-C", "--config-settings", "-t", "--target",
                                             "--prefix", "--root", "--platform", "--python-version",
                                             "--implementation", "--abi", "--upgrade-strategy",
                                             "--root-user-action", "--report"},
    "wheel": _GENERAL | _INDEX | _SELECT | {"-e", "--editable", "-C", "--config-settings", "-w", "--wheel-dir"},
    "list": _GENERAL | _INDEX | {"--exclude", "--format", "--path"},
    "show": set(_GENERAL),
    "freeze": _GENERAL | {"--exclude", "--path", "-r", "--requirement"},
    "uninstall": _GENERAL | {"-r", "--requirement", "--root-user-action"},
}

# `pip install` options `pip wheel` does not take: they mean something only for an install
# into the environment itself, so pip-omni never passes them to the pip run that fetches a bubble.
INSTALL_ONLY = {"-t", "--target", "--prefix", "--root", "--platform", "--python-version", "--implementation",
                "--abi", "--upgrade-strategy", "--root-user-action", "--report", "-U", "--upgrade",
                "--force-reinstall", "-I", "--ignore-installed", "--user", "--compile", "--no-compile",
                "--no-warn-script-location", "--no-warn-conflicts", "--break-system-packages", "--dry-run"}


def _ours(parser) -> dict[str, bool]:
    """Option string -> takes a value, for the options ``parser`` (an argparse parser) defines."""
    out = {}
    for action in parser._actions:  # argparse has no public listing of its actions
        for opt in action.option_strings:
            out[opt] = action.nargs != 0
    return out


def split(argv: list[str], parser, command: str) -> tuple[list[str], list[list[str]]]:
    """``(ours, pip's)``: the tokens ``parser`` defines (with their values, and every positional)
    and the pip options, each as ``[option]`` or ``[option, value]``, in the order given."""
    mine = _ours(parser)
    values = VALUE_OPTIONS.get(command, _GENERAL)
    ours: list[str] = []
    theirs: list[list[str]] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            ours += argv[i - 1:]
            break
        if not tok.startswith("-") or tok == "-":
            ours.append(tok)
            continue
        if tok.startswith("--"):
            name, eq, _value = tok.partition("=")
            if name in mine:
                ours.append(tok)
                if mine[name] and not eq and i < len(argv):
                    ours.append(argv[i])
                    i += 1
            else:
                theirs.append([tok])
                if name in values and not eq and i < len(argv):
                    theirs[-1].append(argv[i])
                    i += 1
            continue
        # short options: -x, -xVALUE, or several flags at once (-Uq)
        j = 1
        while j < len(tok):
            opt = "-" + tok[j]
            rest = tok[j + 1:]
            takes = mine[opt] if opt in mine else opt in values
            group = [opt]
            if takes and rest:
                group.append(rest)
            elif takes and i < len(argv):
                group.append(argv[i])
                i += 1
            if opt in mine:
                ours += group
            else:
                theirs.append(group)
            if takes:
                break
            j += 1
    return ours, theirs


def name_of(group: list[str]) -> str:
    """The option name of a group from :func:`split` (``--log=x`` -> ``--log``)."""
    return group[0].split("=", 1)[0]
