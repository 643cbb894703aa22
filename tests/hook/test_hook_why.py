"""``pip-omni why`` in-process, and the whole path as users take it: install, then pin, in a fresh venv."""

from __future__ import annotations

import json
import os
import textwrap

from omnipkg_hook.store import interpreter_key
from omnipkg_pip.cli import main

from .conftest import module_files

KEY = interpreter_key()


def _dist(store, name, version):
    return os.path.join(store.root, "dists", name, version, "py3-none-any")


def test_why_names_the_directory_and_the_reason(store, bubble, main_site, wheel, capsys):
    main_site.install(wheel("omt-lib", "1.0", module_files("omt_lib", "1.0")))
    bubble("omt-app==2.0", ("omt-app", "2.0", module_files("omt_app", "2.0"), {"requires": ["omt-lib>=2"]}),
           ("omt-lib", "2.5", module_files("omt_lib", "2.5")))  # fmt: skip
    assert main(["why", "omt_lib", "--pin", "omt-app==2.0"]) == 0
    assert capsys.readouterr().out == (
        f"import omt_lib  <-  {_dist(store, 'omt-lib', '2.5')}\n"
        "omt-lib 2.5 from the store: the main environment's 1.0 does not satisfy omt-app==2.0 -> omt-lib>=2\n"
        f"(the main environment has omt_lib 1.0 in {main_site.path})\n"
    )
    assert main(["why", "omt-app", "--pin", "omt-app==2.0", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["routes"] == {"omt_app": [_dist(store, "omt-app", "2.0")]}
    assert answer["pins"] == ["omt-app==2.0"] and answer["interpreter"] == KEY
    assert answer["distributions"][0]["reason"] == f"pinned omt-app==2.0: best stored version for {KEY}"


def test_why_reads_omnipkg_pins_and_says_when_nothing_applies(store, bubble, monkeypatch, capsys):
    bubble("omt-app==2.0", ("omt-app", "2.0", module_files("omt_app", "2.0")))
    assert main(["why", "omt_other"]) == 0
    assert capsys.readouterr().out == (
        "omt_other: no pins (pass --pin REQ or set OMNIPKG_PINS): imports come from the main environment\n"
    )
    monkeypatch.setenv("OMNIPKG_PINS", "omt-app==2.0")
    assert main(["why", "omt_other"]) == 0
    assert capsys.readouterr().out == (
        "omt_other: not concerned by the pins omt-app==2.0: imports come from the main environment\n"
    )
    assert main(["why", "omt_app"]) == 0
    assert capsys.readouterr().out.startswith(f"import omt_app  <-  {_dist(store, 'omt-app', '2.0')}\n")


def test_why_with_an_unsatisfiable_pin_is_one_error_line(store, capsys):
    assert main(["why", "omt_app", "--pin", "omt-app==9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pip-omni: error: no stored version of 'omt-app' satisfies 'omt-app==9'")
    assert "\n  hint: run: pip-omni install" in err


def test_install_then_pin_in_a_fresh_venv(omni_venv, wheel, wheelhouse):
    """What a user does: main has 1.0, `pip-omni install` stores 2.0, pins choose per process."""
    for v in ("1.0", "2.0", "3.0"):
        wheel("omt-e2e", v, {"omt_e2e/__init__.py": f"VERSION = {v!r}\n\ndef main():\n    print('tool', VERSION)\n"},
              requires=["omt-e2e-dep>=2"] if v == "3.0" else [],
              entry_points={"console_scripts": {"omt-e2e-tool": "omt_e2e:main"}})  # fmt: skip
    wheel("omt-e2e-dep", "1.0", module_files("omt_e2e_dep", "1.0"))
    wheel("omt-e2e-dep", "2.0", module_files("omt_e2e_dep", "2.0"))
    omni_venv.pip("install", "-q", "--no-index", "--find-links", str(wheelhouse), "omt-e2e==1.0", "omt-e2e-dep==1.0")
    for v in ("2.0", "3.0"):
        omni_venv.run("install", "--no-index", "--find-links", str(wheelhouse), f"omt-e2e=={v}")

    show = "import omt_e2e, omt_e2e_dep, importlib.metadata as md; print(omt_e2e.VERSION, md.version('omt-e2e'), omt_e2e_dep.VERSION)"
    assert omni_venv.run("python", "-c", show).stdout == "1.0 1.0 1.0\n"
    assert omni_venv.run("python", "-c", show, env={"OMNIPKG_PINS": "omt-e2e==2.0"}).stdout == "2.0 2.0 1.0\n"
    assert omni_venv.run("python", "-c", show, env={"OMNIPKG_PINS": "omt-e2e==3.0"}).stdout == "3.0 3.0 2.0\n"
    code = textwrap.dedent("""
        import subprocess, omnipkg_hook
        with omnipkg_hook.using("omt-e2e==2.0"):
            import omt_e2e; print(omt_e2e.VERSION)
            print(subprocess.run(["omt-e2e-tool"], capture_output=True, text=True).stdout.strip())
        import omt_e2e; print(omt_e2e.VERSION)
    """)
    assert omni_venv.run("python", "-c", code).stdout == "2.0\ntool 2.0\n1.0\n"
    out = omni_venv.run("why", "omt_e2e_dep", "--pin", "omt-e2e==3.0").stdout
    assert "omt-e2e-dep 2.0 from the store: the main environment's 1.0 does not satisfy omt-e2e==3.0 -> omt-e2e-dep>=2" in out
    proc = omni_venv.run("python", "-c", show, env={"OMNIPKG_PINS": "omt-e2e==4.0", "OMNIPKG_STRICT": "1"}, check=False)
    assert proc.returncode == 1
    assert "hint: run: pip-omni install 'omt-e2e==4.0'" in proc.stderr  # pip-omni is beside this python
