"""``pip-omni store info|export|import|push|pull``: the store as a whole.

``export``/``import`` are :mod:`omnipkg_pip.writers.archive`, ``push``/``pull``
:mod:`omnipkg_pip.commands.remote`, ``info`` :func:`omnipkg_pip.writers.collect.info`, ``compile`` the pending ``.pyc``
(:func:`omnipkg_pip.writers.bytecode.compile_pending`; ``--background`` is what ``pip-omni run``
starts after its program, :mod:`omnipkg_pip.writers.later`).
"""

from __future__ import annotations

import json
import os
import sys

from omnipkg_hook.errors import OmnipkgError
from omnipkg_hook.store import Store

from ..text import megabytes, plural
from ..writers.collect import info

__all__ = ["register"]


def register(sub) -> None:
    s = sub.add_parser("store", help="the store: info; export FILE [NAME==VERSION ...]; import FILE; "
                       "push|pull REMOTE [NAME==VERSION ...]; compile")
    s.add_argument("action", choices=("info", "export", "import", "push", "pull", "compile"))
    s.add_argument("args", nargs="*", metavar="FILE [NAME==VERSION ...]",
                   help="export: the archive to write and the bubbles to put in it (default: all of this "
                   "interpreter); import: the archive to read")
    s.add_argument("--python", metavar="PATH", help="export: the bubbles of this interpreter; compile: the "
                   ".pyc of this interpreter (bubbles made with --no-compile, or by `pip-omni run`)")
    import argparse

    s.add_argument("--background", action="store_true", help=argparse.SUPPRESS)  # run's detached compile
    s.add_argument("--max-size", metavar="SIZE", help="import: refuse an archive that unpacks to more than "
                   "SIZE (default 8G; K, M, G, T)")
    s.add_argument("--json", action="store_true")
    from . import remote  # push/pull: omnipkg_pip/commands/remote.py

    remote.add_store_options(s)
    s.set_defaults(func=run_store)


def run_store(args) -> int:
    if args.action == "info":
        if args.args:
            raise OmnipkgError(f"`pip-omni store info` takes no arguments, not {args.args!r}")
        return run_info(args)
    if args.action in ("push", "pull"):
        from . import remote

        return remote.run(args)
    if args.action == "compile":
        return run_compile(args)
    return _run_archive(args)


def run_compile(args) -> int:
    """Compile now what waits to be compiled for an interpreter (what ``install`` does at its end)."""
    if args.args:
        raise OmnipkgError(f"`pip-omni store compile` takes no arguments, not {args.args!r}",
                           "choose the interpreter with --python")
    from .. import environment
    from ..pythons import interpreters
    from ..writers import bytecode, later

    store = Store()
    interpreter = interpreters.resolve_python(store, args.python)
    if args.background:
        later.run_background(store, interpreter)
        return 0
    from ..writers import deferred

    deferred.complete(store, interpreter)  # what a run left to store after it (deferred.py)
    done = bytecode.compile_pending(store, interpreter, environment.installed(interpreter, store))
    rel = [os.path.relpath(d, store.root) for d in done]
    if args.json:
        print(json.dumps({"compiled": rel}, indent=1))
    else:
        print(f"compiled {plural(len(rel), 'dist')} for Python {interpreter.version}"
              + "".join(f"\n  {r}" for r in rel))
    return 0


def run_info(args) -> int:
    data = info(Store())
    if args.json:
        json.dump(data, sys.stdout, indent=1)
        print()
        return 0
    print(f"store:    {data['store']}")
    print(f"bubbles:  {data['bubbles']}")
    print(f"dists:    {data['dists']}")
    print(f"objects:  {data['objects']} ({megabytes(data['object_bytes'])} on disk)")
    print(f"sharing:  {megabytes(data['linked_bytes'])} as plain copies, {megabytes(data['saved_bytes'])} saved")
    return 0


def _run_archive(args) -> int:
    from ..writers.archive import MAX_TOTAL_BYTES, ArchiveError, export, import_archive, parse_size

    store = Store()
    if args.action == "export":
        if not args.args:
            raise ArchiveError("`pip-omni store export` needs a FILE", "e.g. pip-omni store export bubbles.tar.gz rich==13.4.2")
        key = None
        if args.python:
            from ..pythons import interpreters

            key = interpreters.resolve_python(store, args.python).key
        index = export(store, args.args[0], args.args[1:], key)
        if args.json:
            print(json.dumps(index, indent=1))
        else:
            print(f"exported {plural(len(index['bubbles']), 'bubble')}, {plural(len(index['dists']), 'dist')}, "
                  f"{plural(index['objects'], 'object')} to {args.args[0]}")
        return 0
    if len(args.args) != 1:
        raise ArchiveError("`pip-omni store import` takes one FILE", "e.g. pip-omni store import bubbles.tar.gz")
    result = import_archive(store, args.args[0], parse_size(args.max_size) if args.max_size else MAX_TOTAL_BYTES)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"imported {plural(len(result['bubbles']), 'bubble')}, {plural(len(result['dists']), 'dist')}, "
              f"{plural(result['objects'], 'object')} ({len(result['present'])} already in the store)")
    return 0
