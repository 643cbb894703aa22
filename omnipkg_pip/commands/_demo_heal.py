"""Step 5 of ``pip-omni demo``: damage a bubble the demo made, watch it heal.

Two kinds of damage, each followed by the next ``pin()`` in a fresh interpreter (a pin
from code checks every file of the dists it routes to, by ``stat``):

1. a file of the dist is **deleted**: the pin finds it missing and rebuilds the dist
   from the store's objects on the fly, before anything is imported;
2. another file is **edited in place**, as an editor that keeps hard links or a stray
   ``open(path, "r+")`` would: dist files are hard links to read-only objects, so the
   object changes with it (as root the 0444 mode does not stop the write; otherwise the
   write goes through ``chmod u+w`` first, as ``vim``'s ``:w!`` does). The pin finds the
   size wrong, sees that the object is damaged too, so a rebuild from objects would not
   help, and refuses with one line naming ``pip-omni doctor --repair``: it never runs
   code it cannot vouch for. ``pip-omni doctor`` reports the object and the dist,
   ``doctor --repair`` makes the object again from the wheel fetched again (checked
   against the sha256 the manifest recorded) and rebuilds the dist; the next pin runs
   13.4.2 from sound files and ``doctor`` finds nothing wrong.

Only files whose object no other dist links (``st_nlink == 2``: the object and this
file) are damaged, so no other bubble of the store is touched.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

from omnipkg_hook.store import DIST_MANIFEST, Store, file_sha256, read_manifest

__all__ = ["VERSION", "run", "quarantine_entries", "remove_new_quarantine"]

VERSION = "13.4.2"
_PIN = """
import importlib.metadata as m, sys, omnipkg_hook
try:
    omnipkg_hook.pin({req!r})
except omnipkg_hook.OmnipkgError as e:
    sys.exit(f"{{type(e).__name__}}: {{e}}")
import {module}
print(m.version({dist!r}))
print({module}.__file__)
"""


def quarantine_entries(store: Store) -> set[str]:
    try:
        return set(os.listdir(os.path.join(store.root, "quarantine")))
    except FileNotFoundError:
        return set()


def remove_new_quarantine(store: Store, before: set[str]) -> int:
    """Remove what the demo's own damage put in quarantine (entries made since ``before``)."""
    new = quarantine_entries(store) - before
    for name in new:
        shutil.rmtree(os.path.join(store.root, "quarantine", name), ignore_errors=True)
    return len(new)


def _pin(store: Store, dist: str, version: str, module: str) -> subprocess.CompletedProcess:
    """``pin(dist==version)`` in a fresh interpreter: its version and file, or its one-line error."""
    env = {k: v for k, v in os.environ.items() if k != "OMNIPKG_PINS"}
    env["OMNIPKG_STORE"] = store.root
    code = _PIN.format(req=f"{dist}=={version}", dist=dist, module=module)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def _doctor(*args: str) -> subprocess.CompletedProcess:
    """``pip-omni doctor ARGS``, its stderr merged into stdout in the order written."""
    return subprocess.run([sys.executable, "-m", "omnipkg_pip", "doctor", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _edit_in_place(path: str) -> None:
    """Append a line to ``path`` through the same inode, the way a stray write would."""
    try:
        f = open(path, "ab")
    except PermissionError:  # not root: the 0444 mode stops a plain write; `:w!` chmods first
        mode = os.stat(path).st_mode
        os.chmod(path, mode | stat.S_IWUSR)
        try:
            with open(path, "ab") as f:
                f.write(b"\nprint('edited in place')\n")
        finally:
            os.chmod(path, stat.S_IMODE(mode))
        return
    with f:
        f.write(b"\nprint('edited in place')\n")


def _lines(text: str, limit: int = 8) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[:limit] + ([f"... ({len(lines) - limit} more lines)"] if len(lines) > limit else [])


def run(store: Store, interpreter, say, name: str = "rich", version: str = VERSION,
        module: str = "rich") -> list[tuple[str, bool, str]]:
    """Damage, pin, doctor, repair the bubble ``name==version``; ``[(label, ok, detail)]``."""
    rows: list[tuple[str, bool, str]] = []
    entry = store.load_bubble(name, version, interpreter.key)["dists"][name]
    dist = store.abspath(entry["path"])
    files = read_manifest(os.path.join(dist, DIST_MANIFEST))["files"]
    own = [f for f in files if f["path"].startswith(module + "/") and f["path"].endswith(".py")
           and f["path"] != f"{module}/__init__.py" and os.stat(os.path.join(dist, f["path"])).st_nlink == 2]
    if len(own) < 2:
        say(f"    skipped: {name} {version} has no two files that only it links (every object is shared)")
        return [("auto-heal", False, f"skipped: no two files of {name} {version} are its own")]
    gone, edited = own[0], own[-1]
    pin_args = (name, version, module)
    label = f"pin('{name}=={version}')"

    # 1. a deleted file: repaired on the fly from objects
    os.unlink(os.path.join(dist, gone["path"]))
    say(f"    damage 1: deleted {gone['path']} from {entry['path']}")
    proc = _pin(store, *pin_args)
    for line in _lines(proc.stderr):
        say(f"      {line}")
    back = os.path.exists(os.path.join(dist, gone["path"])) and file_sha256(
        os.path.join(dist, gone["path"])) == gone["sha256"]
    ok = proc.returncode == 0 and proc.stdout.split()[:1] == [version] and back and "repaired" in proc.stderr
    say(f"    next {label}: {'found it missing, rebuilt the dist from objects' if ok else 'FAILED'}; "
        f"runs {name} {proc.stdout.split()[0] if proc.stdout.split() else '?'}")
    rows.append(("heal: deleted file, next pin()", ok, f"{gone['path']} restored from its object on the fly"))

    # 2. a file edited in place: the object is damaged too
    path = os.path.join(dist, edited["path"])
    obj = store.object_path(edited["sha256"], bool(edited.get("mode", 0o644) & 0o111))
    _edit_in_place(path)
    damaged = file_sha256(obj)
    obj_rel = os.path.relpath(obj, store.root)
    say(f"    damage 2: appended a line to {edited['path']} in place; it is a hard link, so its object "
        f"{obj_rel[:20]}... changed too: its bytes hash to {damaged[:12]}..., not {edited['sha256'][:12]}...")
    proc = _pin(store, *pin_args)
    refused = proc.returncode != 0 and "doctor --repair" in proc.stderr
    say(f"    next {label}: " + ("refused, nothing imported:" if refused else "DID NOT REFUSE:"))
    for line in _lines(proc.stderr, 4):
        say(f"      {line}")
    rows.append(("heal: edited file, next pin()", refused, "detected; refused to run damaged code"))

    say("    $ pip-omni doctor")
    found = _doctor()
    for line in _lines(found.stdout):
        say(f"      {line}")
    sees = found.returncode == 1 and obj_rel in found.stdout
    rows.append(("heal: doctor finds the damage", sees, "the damaged object reported, with the dist file that uses it"))

    say("    $ pip-omni doctor --repair")
    fixed = _doctor("--repair")
    for line in _lines(fixed.stdout, 14):
        say(f"      {line}")
    proc = _pin(store, *pin_args)
    sound = (os.path.exists(obj) and file_sha256(obj) == edited["sha256"] and os.path.exists(path)
             and file_sha256(path) == edited["sha256"] and os.stat(path).st_ino == os.stat(obj).st_ino)
    runs = proc.returncode == 0 and proc.stdout.split()[:1] == [version] and not proc.stderr.strip()
    say(f"    next {label}: " + (f"{name} {version}, no repair needed" if runs else
                                                 f"FAILED: {_lines(proc.stderr, 1)}"))
    say(f"    {edited['path']} and its object hash right again, and are one inode: {'yes' if sound else 'NO'}")
    rows.append(("heal: doctor --repair, then pin()", fixed.returncode == 0 and sound and runs,
                 "object made again from the wheel, dist rebuilt"))

    again = _doctor()
    say(f"    $ pip-omni doctor   -> exit {again.returncode}: {(_lines(again.stdout, 1) or ['(no output)'])[0]}")
    rows.append(("heal: doctor agrees", again.returncode == 0, "no problems left"))
    return rows
