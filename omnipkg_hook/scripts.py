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

The root distribution's data scripts -- the wheel's ``.data/scripts/``, stored in the
dist's ``_omnipkg_data/scripts`` (ruff, ninja, cmake ship their executable this way,
without an entry point) -- get a bin entry as well: a symlink to the stored file for a
binary or a script with its own interpreter line, and a launcher as above for a
``#!python`` script (which runs it with :func:`runpy.run_path` under the pin).

``pin()`` and ``using()`` put a pinned bubble's directory first on ``PATH``, so its
scripts win over the main environment's for the process and its children. What is not
redirected: a package that finds its binary through ``sysconfig.get_path("scripts")``
(the main environment's bin directory) -- that path is process-wide and also where pip
installs, so it is left alone; see README "Limits".
"""

from __future__ import annotations

import os
import sys

from .store import Store, make_tmpdir, makedirs

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
    sys.exit(_hook().launch({pin!r}, {store!r}, {entry!r}{script_arg}))
'''


def _shebang(python: str) -> str:
    if " " not in python and len(python) < 120:
        return f"#!{python}"
    # A long path or one with spaces does not fit a shebang; let sh start the interpreter.
    quoted = python.replace("'", "'\"'\"'")
    return f"#!/bin/sh\n'''exec' '{quoted}' \"$0\" \"$@\"\n' '''"


def write_bubble_scripts(store: Store, manifest: dict, python: str) -> list[str]:
    """Write a launcher for each console/GUI script of bubble ``manifest``, and a bin entry
    for each data script of its root distribution; return their paths.

    Each file is written to ``tmp/`` and renamed into place (mode 0755). The caller holds
    the store's write lock.
    """
    scripts = manifest.get("scripts") or {}
    data_scripts = _data_scripts(store, manifest)
    if not scripts and not data_scripts:
        return []
    root, version = manifest["root"], manifest["version"]
    key = manifest["interpreter"]["key"]
    pin = f"{root}=={version}"
    bin_dir = store.bubble_bin(root, version, key)
    makedirs(bin_dir)
    package = os.path.dirname(os.path.abspath(__file__))
    tmp = make_tmpdir(store, "scripts-")
    written = []
    launchers = {name: (entry, None) for name, entry in scripts.items()}
    links = {}
    for name, path in data_scripts.items():
        if name in launchers:
            continue  # an entry point of the same name wins, as pip's installs it last
        if _is_python_script(path):
            launchers[name] = ("", path)
        else:
            links[name] = path
    try:
        for script, (entry, path) in sorted(launchers.items()):
            if not _is_file_name(script):
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
                script_arg=f", script={path!r}" if path else "",
            )
            staged = os.path.join(tmp, script)
            with open(staged, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(staged, 0o755)
            target = os.path.join(bin_dir, script)
            os.replace(staged, target)
            written.append(target)
        for script, path in sorted(links.items()):
            staged = os.path.join(tmp, script)
            os.symlink(path, staged)
            target = os.path.join(bin_dir, script)
            os.replace(staged, target)
            written.append(target)
    finally:
        try:
            os.rmdir(tmp)
        except OSError:
            pass
    return written


def _is_file_name(name: str) -> bool:
    return bool(name) and "/" not in name and not name.startswith(".")


def _data_scripts(store: Store, manifest: dict) -> dict[str, str]:
    """``{name: stored path}`` of the root distribution's ``.data/scripts`` files."""
    entry = (manifest.get("dists") or {}).get(manifest["root"]) or {}
    if not entry.get("path"):
        return {}
    directory = os.path.join(store.abspath(entry["path"]), "_omnipkg_data", "scripts")
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    found = {}
    for name in names:
        path = os.path.join(directory, name)
        if _is_file_name(name) and os.path.isfile(path):
            found[name] = path
    return found


def _is_python_script(path: str) -> bool:
    """A ``#!python`` script: installers rewrite that line to the target interpreter."""
    try:
        with open(path, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first.rstrip() in (b"#!python", b"#!pythonw")


def launch(pin: str, store: str, entry: str, script: str | None = None) -> int:
    """Run console-script ``entry`` (``"pkg.mod:func"``) under ``pin``, added to the caller's pins;
    with ``script``, run that Python file as ``__main__`` instead."""
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
    if script is not None:
        import runpy

        sys.argv[0] = script
        runpy.run_path(script, run_name="__main__")
        return 0
    module, _, attrs = entry.partition(":")
    attrs = attrs.split("[", 1)[0].strip()  # "pkg.mod:func [extra]"
    import importlib

    target = importlib.import_module(module.strip())
    for attr in filter(None, attrs.split(".")):
        target = getattr(target, attr)
    return target()
