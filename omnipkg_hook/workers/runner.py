"""Run one script, ``-c`` code or ``-m`` module with pins, under any interpreter.

What ``pip-omni run`` starts for each interpreter, through the workers' ``BOOT``
(:mod:`omnipkg_hook.workers.spawn`), so the interpreter needs no pip-omni installed::

    python -c BOOT .../omnipkg_hook/workers/_boot.py runner --pins PINS -- (-c CODE | -m MODULE | PATH) [ARGS...]

The pins are applied strictly: a run that cannot get the versions it asked for fails
with status 1 and one line on stderr, it never runs against the wrong version.
"""

from __future__ import annotations

import os
import runpy
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pins = ""
    if argv[:1] == ["--pins"]:
        pins = argv[1]
        argv = argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("pip-omni run: nothing to run", file=sys.stderr)
        return 2
    if pins:
        os.environ["OMNIPKG_PINS"] = pins
        from omnipkg_hook.pins import from_environment

        from_environment(strict=True)
    else:
        os.environ.pop("OMNIPKG_PINS", None)
    mode, rest = argv[0], argv[1:]
    if mode == "-c":
        code, args = rest[0], rest[1:]
        sys.argv = ["-c", *args]
        sys.path.insert(0, "")
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(code, "<string>", "exec"), namespace)
    elif mode == "-m":
        module, args = rest[0], rest[1:]
        sys.argv = [module, *args]
        sys.path.insert(0, os.getcwd())
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = [mode, *rest]
        sys.path.insert(0, os.path.dirname(os.path.abspath(mode)))
        runpy.run_path(mode, run_name="__main__")
    return 0
