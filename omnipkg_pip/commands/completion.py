"""``pip-omni completion --bash|--zsh|--fish``: shell completion for pip-omni's commands and pip's.

The script the shell loads calls ``pip-omni`` back with ``PIP_OMNI_AUTO_COMPLETE=1``,
``COMP_WORDS`` and ``COMP_CWORD`` (pip's own protocol). :func:`complete` answers: a
command name from pip-omni's and pip's, pip-omni's options and actions for its
commands, and pip's own answer (``PIP_AUTO_COMPLETE``) for pip's commands and for the
pip options the stand-in commands (install, list, ...) pass on.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["register", "run", "complete", "SCRIPTS"]

SCRIPTS = {
    "bash": """
# pip-omni bash completion start
_pip_omni_completion()
{
    COMPREPLY=( $( COMP_WORDS="${COMP_WORDS[*]}" \\
                   COMP_CWORD=$COMP_CWORD \\
                   PIP_OMNI_AUTO_COMPLETE=1 $1 2>/dev/null ) )
}
complete -o default -F _pip_omni_completion pip-omni
# pip-omni bash completion end
""",
    "zsh": """
#compdef pip-omni
# pip-omni zsh completion start
__pip_omni() {
  compadd $( COMP_WORDS="$words[*]" \\
             COMP_CWORD=$((CURRENT-1)) \\
             PIP_OMNI_AUTO_COMPLETE=1 $words[1] 2>/dev/null )
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  __pip_omni "$@"
else
  compdef __pip_omni pip-omni
fi
# pip-omni zsh completion end
""",
    "fish": """
# pip-omni fish completion start
function __fish_complete_pip_omni
    set -lx COMP_WORDS (commandline -o) ""
    set -lx COMP_CWORD ( \\
        math (contains -i -- (commandline -t) $COMP_WORDS)-1 \\
    )
    set -lx PIP_OMNI_AUTO_COMPLETE 1
    string split \\  -- (eval $COMP_WORDS[1])
end
complete -fa "(__fish_complete_pip_omni)" -c pip-omni
# pip-omni fish completion end
""",
}


def register(sub) -> None:
    p = sub.add_parser("completion", help="shell completion for bash, zsh and fish",
                       description="Print a completion script; e.g. add `eval \"$(pip-omni completion --bash)\"` "
                       "to ~/.bashrc.")
    g = p.add_mutually_exclusive_group(required=True)
    for shell in SCRIPTS:
        g.add_argument(f"--{shell}", dest="shell", action="store_const", const=shell, help=f"a {shell} script")
    p.set_defaults(func=run)


def run(args) -> int:
    sys.stdout.write(SCRIPTS[args.shell].lstrip("\n"))
    return 0


def _ask_pip(words: list[str], cword: int) -> list[str]:
    from ..pip import target_python

    env = {**os.environ, "PIP_AUTO_COMPLETE": "1", "COMP_WORDS": " ".join(["pip", *words[1:]]),
           "COMP_CWORD": str(cword)}
    env.pop("PIP_OMNI_AUTO_COMPLETE", None)
    try:
        out = subprocess.run([target_python(), "-m", "pip"], capture_output=True, text=True, env=env, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.split()


def _options(command: str, words: list[str]) -> list[str]:
    from .. import cli

    parser = cli.build_parser(only=command).omni_subparsers.choices[command]
    for word in words[2:]:  # descend into actions (`daemon start`, `python adopt`)
        subs = [a for a in parser._actions if getattr(a, "choices", None) and isinstance(a.choices, dict)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    out = [o for a in parser._actions for o in a.option_strings]
    for a in parser._actions:
        if not a.option_strings and a.choices:
            out += list(a.choices)
    return out


def complete() -> int:
    """Print the completions for ``COMP_WORDS``/``COMP_CWORD`` (one per line)."""
    from .. import cli

    words = os.environ.get("COMP_WORDS", "").split()
    try:
        cword = int(os.environ.get("COMP_CWORD", "0"))
    except ValueError:
        return 0
    current = words[cword] if 0 <= cword < len(words) else ""
    if cword <= 1:
        found = list(dict.fromkeys([*cli.COMMANDS, *cli.PIP_COMMANDS]))
        if current.startswith("-"):
            found = ["--help", "--version"]
    else:
        command = words[1]
        found = []
        if command in cli.COMMANDS and cli.COMMANDS[command][0] is not None:
            found = _options(command, words[:cword])
        if command not in cli.COMMANDS or command in cli.PIP_LIKE:
            found += _ask_pip(words, cword)
    print("\n".join(sorted({f for f in found if f.startswith(current)})))
    return 0
