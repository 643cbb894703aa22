"""Package shapes: namespace packages, compiled C extensions."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

import omnipkg_hook
from omnipkg_hook import finder


def test_namespace_portion_in_the_bubble_comes_first_and_main_portions_follow(store, bubble, main_site, wheel, tmp_path,
                                                                             monkeypatch):  # fmt: skip
    main_site.install(wheel("omt-ns-a", "1.0", {"omtns/a/__init__.py": "V = '1.0'"}))
    main_site.install(wheel("omt-ns-b", "1.0", {"omtns/b/__init__.py": "V = 'main b'"}))
    bubble("omt-ns-a==2.0", ("omt-ns-a", "2.0", {"omtns/a/__init__.py": "V = '2.0'", "omtns/a/more.py": "M = 1"}))
    omnipkg_hook.pin("omt-ns-a==2.0")
    assert finder.FINDER.routes["omtns"] == [os.path.join(store.root, "dists", "omt-ns-a", "2.0", "py3-none-any")]
    import omtns
    import omtns.a
    import omtns.a.more  # noqa: F401
    import omtns.b

    assert (omtns.a.V, omtns.b.V) == ("2.0", "main b")
    portions = list(omtns.__path__)
    assert portions[0].startswith(store.root) and portions[1] == os.path.join(str(main_site.path), "omtns")

    # another main portion appears on sys.path later: the store's portion stays first
    later = tmp_path / "later"
    (later / "omtns" / "c").mkdir(parents=True)
    (later / "omtns" / "c" / "__init__.py").write_text("V = 'later c'")
    monkeypatch.syspath_prepend(str(later))
    importlib.invalidate_caches()
    import omtns.c

    assert omtns.c.V == "later c"
    assert list(omtns.__path__)[0].startswith(store.root)


def test_namespace_dist_only_in_the_store(store, bubble, wheel):
    bubble("omt-ns-z==1.0", ("omt-ns-z", "1.0", {"omtnz/deep/z/__init__.py": "V = 'z'"}))
    omnipkg_hook.pin("omt-ns-z==1.0")
    import omtnz.deep.z

    assert omtnz.deep.z.V == "z" and omtnz.__file__ is None


# -- a compiled extension, built here ---------------------------------------------------------

C_SOURCE = r"""
#include <Python.h>
static PyObject *version(PyObject *self, PyObject *args) { return PyUnicode_FromString("%s"); }
static PyMethodDef methods[] = {{"version", version, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "omtcext", NULL, -1, methods};
PyMODINIT_FUNC PyInit_omtcext(void) { return PyModule_Create(&module); }
"""


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    found = shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")
    header = os.path.join(sysconfig.get_paths()["include"], "Python.h")
    return found if found and os.path.exists(header) else None


@pytest.fixture
def cext_wheel(wheel, tmp_path):
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler or no Python.h for this interpreter: cannot build the test extension")
    from packaging.tags import sys_tags

    tag = str(next(iter(sys_tags())))
    suffix = sysconfig.get_config_var("EXT_SUFFIX")

    def make(version: str):
        src = tmp_path / f"omtcext-{version}.c"
        src.write_text(C_SOURCE % version)
        out = tmp_path / f"omtcext-{version}{suffix}"
        subprocess.run([cc, "-shared", "-fPIC", "-O0", f"-I{sysconfig.get_paths()['include']}", str(src), "-o", str(out)],
                       check=True, capture_output=True)  # fmt: skip
        return wheel("omt-cext", version, {f"omtcext{suffix}": out.read_bytes(), "omtcext_py.py": f"V = {version!r}"},
                     tag=tag)  # fmt: skip

    return make


def test_compiled_extension_from_the_store(store, bubble, main_site, cext_wheel, run_python):
    main_site.install(cext_wheel("1.0"))
    bubble("omt-cext==2.0", cext_wheel("2.0"))
    omnipkg_hook.pin("omt-cext==2.0")
    import omtcext

    assert omtcext.version() == "2.0"
    assert omtcext.__file__.startswith(store.root)
    # and in a fresh process, pinned at start-up, and unpinned
    code = "import omtcext; print(omtcext.version())"
    assert run_python(code, {"OMNIPKG_PINS": "omt-cext==2.0"}).stdout == "2.0\n"
    assert run_python(code).stdout == "1.0\n"
    assert sys.modules["omtcext"] is omtcext
