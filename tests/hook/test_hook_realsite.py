"""Pins beside what the site machinery does at start-up, in a real venv (issue 10), each
class with tiny wheels installed by pip into the venv's site-packages:

2. a legacy ``*-nspkg.pth`` namespace in the main environment (run after our ``.pth``,
   as zope's does, or before it, as ``google``'s does);
3. a start-up ``.pth`` that imports a module of the pinned distribution
   (setuptools' ``distutils-precedence.pth`` importing ``_distutils_hack``);
7. pip-omni's own pip runs -- and the build backends pip starts -- never see the pins.

One venv for the module (making one costs seconds); every test uses its own names.
"""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from tests.conftest import make_venv
from tests.wheelmaker import make_wheel

# setuptools' nspkg.pth line (setuptools/namespaces.py), for a namespace named NS.
NSPKG = (
    "import sys, types, os;has_mfs = sys.version_info > (3, 5);"
    "p = os.path.join(sys._getframe(1).f_locals['sitedir'], *('NS',));"
    "importlib = has_mfs and __import__('importlib.util');has_mfs and __import__('importlib.machinery');"
    "m = has_mfs and sys.modules.setdefault('NS', importlib.util.module_from_spec("
    "importlib.machinery.PathFinder.find_spec('NS', [os.path.dirname(p)])));"
    "m = m or sys.modules.setdefault('NS', types.ModuleType('NS'));"
    "mp = (m or []) and m.__dict__.setdefault('__path__',[]);(p not in mp) and mp.append(p)\n"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory, omni_wheel):
    tmp = tmp_path_factory.mktemp("realsite")
    venv = make_venv(tmp / "venv", omni_wheel, tmp)
    venv.wheels = tmp / "wheels"
    venv.store = str(tmp / "store")

    def install(*specs, bubble=False):
        for name, version, files, kw in specs:
            make_wheel(venv.wheels, name, version, files, **kw)
        reqs = [f"{name}=={version}" for name, version, _, _ in specs]
        if bubble:
            venv.cli("install", "--bubble", *reqs, env={"PIP_FIND_LINKS": str(venv.wheels)})
        else:
            venv.pip("install", "-q", "--no-deps", "--no-index", "--find-links", str(venv.wheels), *reqs)

    venv.install = install
    return venv


def _ns_wheel(ns: str, dist: str, portion: str, version: str, pth: str):
    files = {f"{ns}/{portion}/__init__.py": f"VERSION = {version!r}\n", pth: NSPKG.replace("NS", ns)}
    return (dist, version, files, {})


_PROBE = textwrap.dedent("""\
    import importlib.metadata as md, sys
    {pin}
    import {ns}.{portion} as mod
    import {ns}.other as other
    store = __import__("os").environ["OMNIPKG_STORE"]
    print(mod.VERSION, md.version({dist!r}), mod.__file__.startswith(store), other.VERSION)
    """)


@pytest.mark.parametrize("ns", ["omtzns", "aomtns"])  # its .pth runs after ours / before ours
def test_a_legacy_nspkg_namespace_serves_the_pinned_portion_at_startup_and_on_pin(site, ns):
    dist, other = f"{ns}.iface", f"{ns}.other"
    pth = f"{ns}.iface-1.0-py3-nspkg.pth"
    assert (pth > "omnipkg_hook.pth") == (ns == "omtzns")
    site.install(_ns_wheel(ns, dist, "iface", "1.0", pth),
                 _ns_wheel(ns, other, "other", "1.5", f"{ns}.other-1.5-py3-nspkg.pth"))
    site.install(_ns_wheel(ns, dist, "iface", "2.0", pth), bubble=True)
    probe = _PROBE.format(ns=ns, portion="iface", dist=dist, pin="{pin}")
    env = {"OMNIPKG_PINS": f"{dist}==2.0"}
    for _ in range(2):  # resolved, then from the start-up cache
        proc = site.run("python", "-c", probe.format(pin=""), env=env)
        assert proc.stdout.split() == ["2.0", "2.0", "True", "1.5"], proc.stderr
        assert proc.stderr == ""
    # pin() in a process that started without pins: main's nspkg.pth built the namespace
    # module at start-up; the pin replaces it (no replace=True needed: no user code asked).
    proc = site.run("python", "-c", probe.format(pin=f"import omnipkg_hook; omnipkg_hook.pin({dist + '==2.0'!r})"))
    assert proc.stdout.split() == ["2.0", "2.0", "True", "1.5"], proc.stderr
    # Without pins, main's portion, as before. Python 3.9's own importlib.metadata finds a
    # name only as lowercased with '-' -> '_' (PEP 503 normalisation came in 3.10), so there
    # main's dotted dist is asked for as its .dist-info spells it; the finder normalises on
    # every version (the pinned runs above ask for the dotted name on 3.9 too).
    unpinned = dist if sys.version_info >= (3, 10) else dist.replace(".", "_")
    probe = _PROBE.format(ns=ns, portion="iface", dist=unpinned, pin="")
    proc = site.run("python", "-c", probe)
    assert proc.stdout.split() == ["1.0", "1.0", "False", "1.5"]


def _hack_wheel(version: str):
    files = {
        "_omt_hack/__init__.py": f"VERSION = {version!r}\nimport sys\nsys.omt_hack_loaded = VERSION\n",
        "_omt_hack/shim.py": "",
        "omt_tools/__init__.py": f"VERSION = {version!r}\n",
        "omt-tools-precedence.pth": "import os; os.environ.get('OMT_NO_HACK') or __import__('_omt_hack')\n",
    }
    return ("omt-tools", version, files, {})


def test_pin_replaces_a_module_a_startup_pth_imported_and_says_so_when_it_cannot(site):
    site.install(_hack_wheel("1.0"))
    site.install(_hack_wheel("2.0"), bubble=True)
    code = ("import sys, omnipkg_hook\nassert '_omt_hack' in sys.modules\n{before}"
            "omnipkg_hook.pin('omt-tools==2.0')\nimport _omt_hack, omt_tools\nprint(_omt_hack.VERSION, omt_tools.VERSION)")
    proc = site.run("python", "-c", code.format(before=""))
    assert proc.stdout.split() == ["2.0", "2.0"], proc.stderr
    # Once user code imported a submodule from main, it is the user's: the error names the .pth.
    proc = site.run("python", "-c", code.format(before="import _omt_hack.shim\n"), check=False)
    assert proc.returncode == 1
    err = proc.stderr
    assert "AlreadyImportedError: '_omt_hack' is already imported from" in err
    assert "hint: '_omt_hack' was imported at start-up by " in err
    assert "omt-tools-precedence.pth': set OMNIPKG_PINS before Python starts" in err


def test_pip_runs_and_build_backends_never_see_the_callers_pins(site, tmp_path):
    """A build backend in the project itself records what it sees; pip-omni runs under pins."""
    site.install(("omt-bk", "1.0", {"omt_bk/__init__.py": ""}, {}))
    tool = {"omt_bk-2.0.data/scripts/omt-bk-tool": "#!/bin/sh\necho 2.0\n"}
    site.install(("omt-bk", "2.0", {"omt_bk/__init__.py": "", **tool}, {"executable": set(tool)}), bubble=True)
    project = tmp_path / "proj"
    project.mkdir()
    seen = tmp_path / "seen.txt"
    (project / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = []
        build-backend = "backend"
        backend-path = ["."]
        """))
    (project / "backend.py").write_text(textwrap.dedent(f"""\
        import base64, hashlib, io, os, sys, zipfile
        with open({str(seen)!r}, "a") as f:
            f.write(repr((os.environ.get("OMNIPKG_PINS"), os.environ.get("PATH", ""),
                          "omnipkg_hook.pins" in sys.modules)) + "\\n")

        def _wheel(directory):
            name = "omt_proj-1.0-py3-none-any.whl"
            files = {{"omt_proj.py": b"", "omt_proj-1.0.dist-info/METADATA":
                     b"Metadata-Version: 2.1\\nName: omt-proj\\nVersion: 1.0\\n",
                     "omt_proj-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}}
            record = ""
            for p, d in files.items():
                h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode()
                record += f"{{p}},sha256={{h}},{{len(d)}}\\n"
            record += "omt_proj-1.0.dist-info/RECORD,,\\n"
            with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
                for p, d in files.items():
                    z.writestr(p, d)
                z.writestr("omt_proj-1.0.dist-info/RECORD", record)
            return name

        def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
            return _wheel(wheel_directory)
        """))
    pins = {"OMNIPKG_PINS": "omt-bk==2.0"}
    # The pinned process itself has the bubble's bin dir first on PATH (what must not leak).
    check = site.run("python", "-c", "import os; print(os.environ['PATH'].split(os.pathsep)[0])", env=pins)
    assert check.stdout.strip().startswith(os.path.join(site.store, "bin", "omt-bk-2.0-"))
    site.cli("install", f"omt-proj @ {project.as_uri()}", env=pins)
    lines = seen.read_text().splitlines()
    assert len(lines) >= 2
    for line in lines:
        pinned, path, hooked = eval(line)  # noqa: S307 - our own repr
        assert pinned is None and not hooked, line
        assert site.store not in path, line
