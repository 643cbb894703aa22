"""``pip-omni freeze``: pip's freeze of the main environment; ``--bubbles``: the bubbles as requirements.

``pip-omni freeze --bubbles > bubbles.txt`` prints one ``name==version`` line per
bubble of the interpreter; ``pip-omni install --bubble -r bubbles.txt`` makes the same
bubbles again (on a CI machine, another checkout...). Without ``--bubbles`` every
option goes to ``pip freeze`` unchanged.
"""

from __future__ import annotations

from omnipkg_hook.store import Store

from .. import pip
from ..pythons import interpreters

__all__ = ["register", "run", "bubble_lines"]


def register(sub) -> None:
    p = sub.add_parser("freeze", help="pip freeze; --bubbles prints the bubbles as requirements",
                       description=__doc__.split("\n\n")[0],
                       epilog="Every other option is pip freeze's (--all, --exclude, -l, ...).")
    p.add_argument("--bubbles", action="store_true",
                   help="print the bubbles (name==version), which `pip-omni install --bubble -r` takes back")
    p.add_argument("--python", metavar="PATH", help="interpreter (default: the active environment)")
    p.set_defaults(func=run)


def bubble_lines(store: Store, key: str) -> list[str]:
    from .listing import bubble_rows

    return [f"{b['name']}=={b['version']}" for b in bubble_rows(store, key)]


def run(args) -> int:
    store = Store()
    if not args.bubbles:
        python = interpreters.main_python(store, args.python)[0]
        return pip.passthrough(["freeze", *args.pip_args], python)
    interpreter = interpreters.resolve_python(store, args.python)
    print(f"# pip-omni bubbles for Python {interpreter.version} ({interpreter.key}); "
          "make them again with `pip-omni install --bubble -r FILE`")
    for line in bubble_lines(store, interpreter.key):
        print(line)
    return 0
