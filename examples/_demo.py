"""Shared set-up of the examples: a store with two bubbles and a "main environment".

Offline (default): tiny local wheels of a package ``omni-greeting`` are written here,
1.0 goes into a temporary directory that stands in for the main site-packages, 2.0 and
3.0 become bubbles in a temporary store (3.0 needs ``omni-colors>=2`` where main has 1.0,
so one dependency is routed too). Nothing outside the temporary directory is touched.

``--real``: rich from the package index, as the README tells it: main keeps whatever rich
this environment has (if any), ``pip-omni install`` stores 13.5.3 and 13.4.2 as bubbles in
the store pip-omni uses (``OMNIPKG_STORE`` or the default).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

__all__ = ["Demo", "setup", "check"]


class Demo:
    """What an example needs: names, versions, and the environment for child interpreters."""

    def __init__(self, dist, module, main_version, bubbles, store, main_site, env):
        self.dist = dist  # distribution name, e.g. "omni-greeting" or "rich"
        self.module = module  # its import name
        self.main_version = main_version  # None when main does not have it
        self.bubbles = bubbles  # two stored versions, newest first
        self.store = store
        self.main_site = main_site  # extra sys.path entry standing for main, or None
        self.env = env  # os.environ for child interpreters

    def activate(self) -> None:
        """Make this process see the demo's store and main environment."""
        os.environ.update({k: v for k, v in self.env.items() if k in ("OMNIPKG_STORE",)})
        if self.main_site and self.main_site not in sys.path:
            sys.path.insert(0, self.main_site)

    def version_code(self) -> str:
        """Python that prints ``<metadata version> <file the module was imported from>``."""
        return (f"import importlib.metadata as md, {self.module} as m; "
                f"print(md.version({self.dist!r}), m.__file__)")  # fmt: skip

    def served(self, module_file: str) -> str:
        """Which version a module file belongs to: a store dist's version, or main's."""
        marker = os.sep + os.path.join("dists", self.dist, "")
        if module_file.startswith(self.store + os.sep) and marker in module_file:
            return module_file.split(marker, 1)[1].split(os.sep, 1)[0]
        return f"{self.main_version} (main)"

    def child(self, env: dict | None = None) -> tuple[str, str]:
        """``(metadata version, served version)`` of a fresh interpreter with ``env`` added."""
        out = subprocess.run([sys.executable, "-c", self.version_code()], env={**self.env, **(env or {})},
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            sys.exit(f"child interpreter failed:\n{out.stderr}")
        version, path = out.stdout.split()
        return version, self.served(path)

    def here(self) -> tuple[str, str]:
        """``(metadata version, served version)`` of the module as imported in this process."""
        import importlib
        import importlib.metadata as md

        module = importlib.import_module(self.module)
        return md.version(self.dist), self.served(module.__file__)


def check(what: str, ok: bool, detail: str = "") -> None:
    """Print one verified fact, or stop with the reason."""
    print(f"{'ok ' if ok else 'FAIL'}  {what}{(': ' + detail) if detail else ''}")
    if not ok:
        sys.exit(1)


def setup(argv: list[str]) -> Demo:
    return _real() if "--real" in argv else _offline()


# -- offline ------------------------------------------------------------------------------


def _wheel(directory: str, name: str, version: str, files: dict, requires=()) -> str:
    """A minimal, valid wheel (RECORD included), written with zipfile."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {path: text.encode() for path, text in files.items()}
    meta = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]  # noqa: F541
    members[f"{info}/METADATA"] = "\n".join(meta + [f"Requires-Dist: {r}" for r in requires]).encode() + b"\n"
    members[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: pip-omni-examples\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = os.path.join(directory, f"{dist}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return path


def _greeting(version: str) -> dict:
    return {"omni_greeting/__init__.py": (
        f"VERSION = {version!r}\n\n"
        "class Greeter:\n"
        "    def hello(self):\n"
        "        import omni_colors\n"
        f"        return f'hello from {version} in ' + omni_colors.NAME\n"
    )}  # fmt: skip


def _offline() -> Demo:
    from omnipkg_hook.store import Store
    from omnipkg_pip.writers.bubbles import bubble_from_wheels

    root = tempfile.mkdtemp(prefix="pip-omni-example-")
    atexit.register(shutil.rmtree, root, True)
    wheels, main_site, store = (os.path.join(root, d) for d in ("wheels", "main-site", "store"))
    os.makedirs(wheels)
    os.makedirs(main_site)
    colors = {v: _wheel(wheels, "omni-colors", v, {"omni_colors/__init__.py": f"NAME = 'colors {v}'\n"})
              for v in ("1.0", "2.0")}  # fmt: skip
    for path in (_wheel(wheels, "omni-greeting", "1.0", _greeting("1.0"), ["omni-colors"]), colors["1.0"]):
        with zipfile.ZipFile(path) as zf:  # "pip install" into the stand-in main environment
            zf.extractall(main_site)
    g2 = _wheel(wheels, "omni-greeting", "2.0", _greeting("2.0"), ["omni-colors>=1"])
    g3 = _wheel(wheels, "omni-greeting", "3.0", _greeting("3.0"), ["omni-colors>=2"])
    bubble_from_wheels(Store(store), [g2, colors["1.0"]], "omni-greeting==2.0")
    bubble_from_wheels(Store(store), [g3, colors["2.0"]], "omni-greeting==3.0")
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "PYTHONPATH")}
    env.update({"OMNIPKG_STORE": store, "PYTHONPATH": main_site})
    print(f"demo store {store} (bubbles omni-greeting 2.0 and 3.0), main stand-in {main_site} (1.0)")
    return Demo("omni-greeting", "omni_greeting", "1.0", ["3.0", "2.0"], store, main_site, env)


# -- real rich ----------------------------------------------------------------------------


def _real() -> Demo:
    import importlib.metadata as md

    from omnipkg_hook.store import Store

    bubbles = ["13.5.3", "13.4.2"]
    try:
        main_version = md.version("rich")
    except md.PackageNotFoundError:
        main_version = None
    if main_version in bubbles:
        sys.exit(f"this environment has rich {main_version}; the example wants it as a bubble: "
                 f"pip install rich==13.7.1 first")  # fmt: skip
    for v in bubbles:
        cmd = [sys.executable, "-m", "omnipkg_pip", "install", "--bubble", f"rich=={v}", "-q"]
        print("$", " ".join(cmd[2:]).replace("omnipkg_pip", "pip-omni"))
        subprocess.run(cmd, check=True)
    env = {k: v for k, v in os.environ.items() if k != "OMNIPKG_PINS"}
    store = Store().root
    env["OMNIPKG_STORE"] = store
    return Demo("rich", "rich", main_version, bubbles, store, None, env)
