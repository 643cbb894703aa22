"""Console scripts of bubbles: ``<store>/bin/<name>-<version>-<key>/<script>``.

The pip side calls :func:`write_bubble_scripts` when it publishes a bubble. Each
launcher is a small Python file for the bubble's interpreter that

1. adds the bubble's root pin to ``OMNIPKG_PINS`` (keeping the caller's other pins) and
   sets ``OMNIPKG_STORE``,
2. makes ``omnipkg_hook`` importable even when that interpreter does not have it
   installed: the package is loaded from the directory recorded when the launcher was
   written, by file location -- no site-packages is put on ``sys.path``,
3. applies the pins strictly (a script must run its own version or not at all),
4. runs the entry point and exits with what it returns.

``pin()`` and ``using()`` put a pinned bubble's directory first on ``PATH``, so its
scripts win over the main environment's for the process and its children.
"""

from __future__ import annotations

import os
import sys

from .store import Store, make_tmpdir

__all__ = ["write_bubble_scripts", "launch"]

_LAUNCHER = '''\
{shebang}
# pip-omni launcher: {script} from the bubble {pin} ({key}). Generated; do not edit.
import sys


def _hook():
    try:
        import omnipkg_hook.scripts as scripts
        return scripts
    except ImportError:
        pass
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "omnipkg_hook", {init!r}, submodule_search_locations=[{package!r}]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["omnipkg_hook"] = module
    spec.loader.exec_module(module)
    import omnipkg_hook.scripts as scripts
    return scripts


if __name__ == "__main__":
    sys.exit(_hook().launch({pin!r}, {store!r}, {entry!r}))
'''


def _shebang(python: str) -> str:
    if " " not in python and len(python) < 120:
        return f"#!{python}"
    # A long path or one with spaces does not fit a shebang; let sh start the interpreter.
    quoted = python.replace("'", "'\"'\"'")
    return f"#!/bin/sh\n'''exec' '{quoted}' \"$0\" \"$@\"\n' '''"


def write_bubble_scripts(store: Store, manifest: dict, python: str) -> list[str]:
    """Write a launcher for each console/GUI script of bubble ``manifest``; return their paths.

    Each file is written to ``tmp/`` and renamed into place (mode 0755). The caller holds
    the store's write lock.
    """
    scripts = manifest.get("scripts") or {}
    if not scripts:
        return []
    root, version = manifest["root"], manifest["version"]
    key = manifest["interpreter"]["key"]
    pin = f"{root}=={version}"
    bin_dir = store.bubble_bin(root, version, key)
    os.makedirs(bin_dir, exist_ok=True)
    package = os.path.dirname(os.path.abspath(__file__))
    tmp = make_tmpdir(store, "scripts-")
    written = []
    try:
        for script, entry in sorted(scripts.items()):
            if not script or "/" in script or script.startswith("."):
                continue  # not a file name; the wheel was validated, but stay inside bin_dir
            text = _LAUNCHER.format(
                shebang=_shebang(python),
                script=script,
                pin=pin,
                key=key,
                init=os.path.join(package, "__init__.py"),
                package=package,
                store=store.root,
                entry=entry,
            )
            staged = os.path.join(tmp, script)
            with open(staged, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(staged, 0o755)
            target = os.path.join(bin_dir, script)
            os.replace(staged, target)
            written.append(target)
    finally:
        try:
            os.rmdir(tmp)
        except OSError:
            pass
    return written


def launch(pin: str, store: str, entry: str) -> int:
    """Run console-script ``entry`` (``"pkg.mod:func"``) under ``pin``, added to the caller's pins."""
    from ._requirements import parse_pins
    from .errors import OmnipkgError
    from .pins import from_environment

    os.environ["OMNIPKG_STORE"] = store
    mine = parse_pins(pin)[0]
    try:
        inherited = [r for r in parse_pins(os.environ.get("OMNIPKG_PINS", "")) if r.key != mine.key]
    except OmnipkgError as e:
        print(f"pip-omni: ignoring the inherited OMNIPKG_PINS: {e.message}", file=sys.stderr)
        inherited = []
    os.environ["OMNIPKG_PINS"] = ",".join(str(r) for r in [*inherited, mine])
    try:
        from_environment(exit_on_error=False, strict=True)
    except OmnipkgError as e:
        print(f"pip-omni: error: cannot run {entry!r} with {pin}: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return 1
    module, _, attrs = entry.partition(":")
    attrs = attrs.split("[", 1)[0].strip()  # "pkg.mod:func [extra]"
    import importlib

    target = importlib.import_module(module.strip())
    for attr in filter(None, attrs.split(".")):
        target = getattr(target, attr)
    return target()
