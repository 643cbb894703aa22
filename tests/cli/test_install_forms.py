"""`pip-omni install` takes what `pip install` takes: paths, wheel files, `.`, -e, pip's options (items 2-6)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import tree_digest
from projects import make_project


def _main(venv, wheelhouse, *reqs):
    venv.pip("install", "-q", "--no-index", "--find-links", str(wheelhouse), *reqs)


def _digest(venv):
    return tree_digest(venv.site, venv.path / "bin")


def _install(venv, *args, **kw):
    return venv.run("install", "--no-index", *args, **kw)


def test_wheel_file_path_follows_the_bubble_rule(omni_venv, wheel, wheelhouse):
    wheel("wfile", "1.0")
    new = wheel("wfile", "2.0")
    fresh = wheel("wnew", "1.0")
    _main(omni_venv, wheelhouse, "wfile==1.0")
    before = _digest(omni_venv)
    out = json.loads(_install(omni_venv, str(new), "--json").stdout)
    assert [(r["name"], r["version"], r["where"], r["action"]) for r in out] == [("wfile", "2.0", "bubble", "created")]
    assert _digest(omni_venv) == before
    out = json.loads(_install(omni_venv, os.path.relpath(fresh), "--json").stdout)
    assert [(r["name"], r["version"], r["where"]) for r in out] == [("wnew", "1.0", "main")]
    assert "wnew @ file://" in omni_venv.run("freeze").stdout


def test_dot_and_editable_install_into_main_and_an_editable_conflict_is_refused(omni_venv, tmp_path):
    proj = make_project(tmp_path / "proj", "localproj", "1.0")
    out = json.loads(omni_venv.run("install", "--no-index", ".", "--json", cwd=proj).stdout)
    assert [(r["name"], r["version"], r["where"], r["action"]) for r in out] == [
        ("localproj", "1.0", "main", "installed")]
    assert (omni_venv.site / "localproj" / "__init__.py").is_file()
    omni_venv.cli("uninstall", "-y", "localproj")

    edit = make_project(tmp_path / "edit", "editproj", "1.0")
    out = json.loads(_install(omni_venv, "-e", str(edit), "--json").stdout)
    assert [(r["name"], r["where"], r["reason"]) for r in out] == [("editproj", "main", "new to main (editable)")]
    assert (omni_venv.site / "_editproj_editable.pth").read_text().strip() == str(edit)

    other = make_project(tmp_path / "other", "editproj", "2.0")
    before = _digest(omni_venv)
    proc = _install(omni_venv, "-e", str(other), check=False)
    assert proc.returncode == 1
    lines = proc.stderr[proc.stderr.index("pip-omni: error:"):].strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("pip-omni: error: cannot install editproj") and "editable" in lines[0]
    assert "would change main: editproj 1.0 -> 2.0" in lines[0]
    assert lines[1].startswith("  hint: a bubble is never editable")
    assert _digest(omni_venv) == before


def test_unknown_pip_options_pass_through_with_their_values(omni_venv, wheel, wheelhouse, tmp_path):
    wheel("passy", "1.0")
    log = tmp_path / "pip-own.log"
    # --exists-action and --log take a value; --no-cache-dir and --no-warn-script-location do not
    out = json.loads(_install(omni_venv, "--no-cache-dir", "--exists-action", "i", "-f", str(wheelhouse),
                              "--log", str(log), "--no-warn-script-location", "--progress-bar=off", "passy",
                              "--json").stdout)
    assert [(r["name"], r["where"]) for r in out] == [("passy", "main")]
    assert "passy" in log.read_text()  # pip itself got --log and its value

    proc = _install(omni_venv, "--index-strategy", "first", "-f", str(wheelhouse), "passy", check=False)
    assert "unrecognized arguments" not in proc.stderr
    assert proc.returncode == 1 and "no such option: --index-strategy" in proc.stderr  # pip's own word


@pytest.mark.parametrize("opt", [["--target", "d"], ["-t", "d"], ["--prefix", "d"], ["--platform", "x"]])
def test_target_and_prefix_are_refused_in_one_line(omni_venv, opt):
    proc = omni_venv.run("install", *opt, "anything", check=False)
    assert proc.returncode == 2
    first, hint = proc.stderr.strip().splitlines()
    assert first.startswith(f"pip-omni: error: {opt[0] if opt[0] != '-t' else '--target'} is not supported: ")
    assert hint.startswith("  hint: ")


def test_constraints_bound_bubbles_and_upgrade_takes_the_newest_bubble(omni_venv, wheel, wheelhouse, tmp_path):
    for v in ("1.0", "2.0", "2.5", "3.0"):
        wheel("cons", v)
    _main(omni_venv, wheelhouse, "cons==3.0")
    c = tmp_path / "c.txt"
    c.write_text("# bound\ncons<2.2\n")
    f = ["-f", str(wheelhouse)]
    out = json.loads(_install(omni_venv, *f, "-c", str(c), "cons", "--json").stdout)
    assert [(r["name"], r["version"], r["where"], r["action"]) for r in out] == [("cons", "2.0", "bubble", "created")]
    # the stored 2.0 bubble does not satisfy a tighter constraint: a new one is made
    c.write_text("cons<1.5\n")
    out = json.loads(_install(omni_venv, *f, "-c", str(c), "cons<2.2", "--json").stdout)
    assert [(r["version"], r["action"]) for r in out] == [("1.0", "created")]
    # without -U the best existing bubble is used; -U makes the newest within the specifier
    out = json.loads(_install(omni_venv, *f, "cons<3", "--json").stdout)
    assert [(r["version"], r["action"]) for r in out] == [("2.0", "present")]
    out = json.loads(_install(omni_venv, *f, "-U", "cons<3", "--json").stdout)
    assert [(r["version"], r["where"], r["action"]) for r in out] == [("2.5", "bubble", "created")]
    assert "cons==3.0" in omni_venv.run("freeze").stdout


def test_two_versions_of_a_name_main_lacks_make_two_bubbles(omni_venv, wheel, wheelhouse):
    wheel("twice", "1.15.0")
    wheel("twice", "1.16.0")
    before = _digest(omni_venv)
    out = json.loads(_install(omni_venv, "-f", str(wheelhouse), "twice==1.15.0", "twice==1.16.0", "--json").stdout)
    assert sorted((r["version"], r["where"]) for r in out) == [("1.15.0", "bubble"), ("1.16.0", "bubble")]
    assert _digest(omni_venv) == before


def test_dry_run_shows_resolved_versions_and_changes_nothing(omni_venv, wheel, wheelhouse):
    wheel("dry", "1.0")
    wheel("dry", "1.4", requires=["drydep"])
    wheel("dry", "3.0")
    wheel("drydep", "1.0")
    wheel("drynew", "0.5")
    _main(omni_venv, wheelhouse, "dry==3.0")
    before = _digest(omni_venv)
    proc = _install(omni_venv, "-f", str(wheelhouse), "--dry-run", "dry<2", "drynew")
    rows = [line.split()[:4] for line in proc.stdout.splitlines()[1:]]
    assert ["drynew", "0.5", "main", "would"] in rows
    assert ["dry", "1.4", "bubble", "would"] in rows
    assert "<2" not in proc.stdout.split("Why")[1].split("main has")[0]
    assert "2 dists" in proc.stdout
    assert _digest(omni_venv) == before
    assert not os.path.exists(os.path.join(omni_venv.env["OMNIPKG_STORE"], "bubbles"))


def test_pip_failure_shows_pips_reason_lines_and_the_log(omni_venv, wheel, wheelhouse):
    wheel("clash", "1.0", requires=["clashdep==1.0"])
    wheel("clashdep", "1.0")
    wheel("clashdep", "2.0")
    proc = _install(omni_venv, "-f", str(wheelhouse), "clash==1.0", "clashdep==2.0", check=False)
    assert proc.returncode == 1
    err = proc.stderr[proc.stderr.index("pip-omni: error:"):]
    assert err.startswith("pip-omni: error: pip could not resolve against the main environment: ")
    assert "The conflict is caused by:" in err
    assert "clash 1.0 depends on clashdep==1.0" in err
    log = err.strip().splitlines()[-1].split("full pip output: ", 1)[1]
    assert os.path.isfile(log) and "ResolutionImpossible" in open(log).read()
