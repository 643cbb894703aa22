"""Run by ``python -c BOOT <this file> <module> <args>`` (see ``spawn.py``). Not imported.

Loads the ``omnipkg_hook`` package next to this file without touching ``sys.path`` and
calls ``omnipkg_hook.workers.<module>.main()``. A failure before that is written to
the ``--fd`` socket as a BOOTFAIL frame. Kept parseable by old interpreters so that
they can say they are too old (hence %-formatting and the version check).
"""
# ruff: noqa: UP031, UP036
import sys


def _fail(text):
    a = sys.argv
    if "--fd" in a:
        import os
        import struct
        data = text.encode("utf-8", "replace")[-60000:]
        try:
            os.write(int(a[a.index("--fd") + 1]), struct.pack(">I", len(data) + 1) + b"x" + data)
        except Exception:
            pass
    sys.stderr.write(text)
    raise SystemExit(1)


def _boot():
    if sys.version_info < (3, 9):
        _fail("pip-omni workers need Python 3.9 or newer; %s is %s\n" % (sys.executable, sys.version.split()[0]))
    import importlib
    import importlib.util
    import os
    d = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[1])))
    name = sys.argv[2]
    del sys.argv[1:3]
    m = sys.modules.get("omnipkg_hook")
    if m is None:
        s = importlib.util.spec_from_file_location(
            "omnipkg_hook", os.path.join(d, "__init__.py"), submodule_search_locations=[d])
        m = importlib.util.module_from_spec(s)
        sys.modules["omnipkg_hook"] = m
        try:
            s.loader.exec_module(m)
        except BaseException:
            del sys.modules["omnipkg_hook"]
            raise
    elif os.path.realpath(os.path.dirname(m.__file__)) != os.path.realpath(d):
        raise ImportError("omnipkg_hook was imported from %r before BOOT could load %r"
                          % (os.path.dirname(m.__file__), d))
    if name not in ("process", "daemon", "runner"):
        raise ValueError("unknown entry point %r" % (name,))
    return importlib.import_module("omnipkg_hook.workers." + name).main


try:
    _main = _boot()
except BaseException:
    import traceback
    _fail(traceback.format_exc())
sys.exit(_main())
