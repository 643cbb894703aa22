"""pip-omni install/list/show/uninstall/gc as users run them: a subprocess in a fresh venv."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import tree_digest


def _install_main(venv, wheelhouse, *reqs):
    venv.pip("install", "-q", "--no-index", "--find-links", str(wheelhouse), *reqs)


def _main_digest(venv):
    return tree_digest(venv.site, venv.path / "bin")


def test_other_version_becomes_a_bubble_and_main_is_byte_identical(omni_venv, wheel, wheelhouse):
    wheel("alpha", "1.0", requires=["beta>=1"])
    wheel("alpha", "2.0", requires=["beta>=2"])
    wheel("beta", "1.0")
    wheel("beta", "2.0")
    _install_main(omni_venv, wheelhouse, "alpha==1.0", "beta==1.0")
    before = _main_digest(omni_venv)

    out = omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "alpha==2.0", "--json").stdout

    assert json.loads(out) == [
        {"name": "alpha", "version": "2.0", "where": "bubble", "action": "created",
         "reason": "main has alpha 1.0; 2 dists"}
    ]
    assert _main_digest(omni_venv) == before
    store = omni_venv.env["OMNIPKG_STORE"]
    meta = os.path.join(store, "dists", "alpha", "2.0", "py3-none-any", "alpha-2.0.dist-info", "METADATA")
    assert "Version: 2.0" in open(meta).read()


def test_dependency_that_would_change_main_sends_the_root_to_a_bubble(omni_venv, wheel, wheelhouse):
    # The omnipkg failure: installing an old `requests` downgraded urllib3 in main.
    wheel("oldclient", "1.0", requires=["urllib", "idnax<2"])
    wheel("urllib", "1.0")
    wheel("idnax", "1.5")
    wheel("idnax", "3.0")
    _install_main(omni_venv, wheelhouse, "idnax==3.0")
    before = _main_digest(omni_venv)

    proc = omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "oldclient")

    assert "would change main: idnax 3.0 -> 1.5" in proc.stdout
    assert _main_digest(omni_venv) == before
    listing = json.loads(omni_venv.run("list", "--json").stdout)
    assert {"name": "idnax", "version": "3.0"} in listing["main"]
    assert not any(m["name"] in ("oldclient", "urllib") for m in listing["main"])
    (bubble,) = listing["bubbles"]
    assert (bubble["name"], bubble["version"], bubble["dists"]) == ("oldclient", "1.0", 3)


def test_new_package_that_disturbs_nothing_goes_to_main(omni_venv, wheel, wheelhouse):
    wheel("fresh", "1.0", requires=["helper"])
    wheel("helper", "1.0")
    proc = omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "fresh")
    assert [line.split()[:4] for line in proc.stdout.splitlines()[1:]] == [
        ["fresh", "1.0", "main", "installed"], ["helper", "1.0", "main", "installed"],
    ]
    freeze = omni_venv.run("freeze").stdout  # passes through to pip
    assert "fresh==1.0" in freeze and "helper==1.0" in freeze
    assert json.loads(omni_venv.run("list", "--json").stdout)["bubbles"] == []


def test_already_satisfied_is_reported_and_nothing_runs(omni_venv, wheel, wheelhouse):
    wheel("steady", "1.0")
    _install_main(omni_venv, wheelhouse, "steady==1.0")
    out = json.loads(omni_venv.run("install", "steady>=1", "--json").stdout)
    assert out == [{"name": "steady", "version": "1.0", "where": "main", "action": "present",
                    "reason": "already satisfied"}]


def test_names_are_normalized(omni_venv, wheel, wheelhouse):
    wheel("Markup_Safe", "1.0")
    wheel("markup-safe", "2.0")
    _install_main(omni_venv, wheelhouse, "Markup_Safe==1.0")
    before = _main_digest(omni_venv)
    out = json.loads(omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "MARKUP.safe==2.0", "--json").stdout)
    assert [(r["name"], r["version"], r["where"]) for r in out] == [("markup-safe", "2.0", "bubble")]
    assert _main_digest(omni_venv) == before
    shown = json.loads(omni_venv.run("show", "markup_safe", "--json").stdout)
    assert shown["main"]["version"] == "1.0"
    assert [b["version"] for b in shown["bubbles"]] == ["2.0"]


def test_force_bubble_and_strategy_latest(omni_venv, wheel, wheelhouse):
    wheel("lib", "1.0")
    wheel("lib", "2.0")
    wheel("newbie", "1.0")
    _install_main(omni_venv, wheelhouse, "lib==1.0")
    out = json.loads(omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "--bubble", "newbie", "--json").stdout)
    assert [(r["name"], r["where"]) for r in out] == [("newbie", "bubble")]
    assert "newbie" not in omni_venv.run("freeze").stdout

    out = json.loads(omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "--strategy", "latest",
                                   "lib==2.0", "--json").stdout)
    assert {(r["name"], r["version"], r["where"]) for r in out} == {("lib", "2.0", "main"), ("lib", "1.0", "bubble")}
    assert "lib==2.0" in omni_venv.run("freeze").stdout


def test_bubble_from_stored_dists_needs_no_pip(omni_venv, wheel, wheelhouse, tmp_path):
    wheel("cached", "1.0")
    wheel("cached", "2.0", requires=["cdep"])
    wheel("cdep", "1.0")
    _install_main(omni_venv, wheelhouse, "cached==1.0")
    omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "cached==2.0")
    omni_venv.run("uninstall", "cached==2.0")
    logs = tmp_path / "store" / "logs"
    before = sorted(p.name for p in logs.rglob("*.log"))
    for p in wheelhouse.iterdir():
        p.unlink()  # nothing left to fetch from

    out = json.loads(omni_venv.run("install", "--no-index", "cached==2.0", "--json").stdout)

    assert out[0]["action"] == "created" and "all already stored" in out[0]["reason"]
    assert sorted(p.name for p in logs.rglob("*.log")) == before  # no pip run at all

    # With a source on the command line pip is asked what it would take from there (a
    # different build would not be handed out as the stored one); here it offers nothing.
    omni_venv.run("uninstall", "cached==2.0")
    out = json.loads(omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "cached==2.0", "--json").stdout)

    assert out[0]["action"] == "created" and "all already stored" in out[0]["reason"]
    assert [p.name.split("-", 4)[-1] for p in logs.rglob("*.log") if p.name not in before] == ["resolve-cached--2-0.log"]


def test_a_planned_bubble_is_fetched_as_pip_planned_it_without_a_second_resolve(omni_venv, wheel, wheelhouse, tmp_path):
    """The plan's own report is the bubble's closure: pip resolves once, then fetches exactly
    main's versions of what main already satisfied (``--no-deps``); the planned wheels that
    are local files (this -f folder) are copied without pip."""
    wheel("pclient", "1.0", requires=["pdep<2", "pkeep"])
    wheel("pdep", "1.0")
    wheel("pdep", "3.0")
    wheel("pkeep", "1.0", requires=["pkeepdep"])
    wheel("pkeep", "2.0")
    wheel("pkeepdep", "1.0")
    _install_main(omni_venv, wheelhouse, "pdep==3.0", "pkeep==1.0")
    logs = tmp_path / "store" / "logs"

    out = json.loads(omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "pclient", "--json").stdout)

    assert [(r["name"], r["version"], r["action"]) for r in out] == [("pclient", "1.0", "created")]
    runs = sorted(logs.rglob("*.log"))
    commands = [p.read_text().splitlines()[0] for p in runs]
    assert len(runs) == 2, commands
    assert " install --dry-run --report " in commands[0] or " install --dry-run --report " in commands[1]
    (fetched,) = [c for c in commands if " wheel " in c]
    assert " --no-deps " in fetched
    assert [t for t in fetched.split() if "==" in t or ".whl" in t] == ["pkeep==1.0", "pkeepdep==1.0"]
    store = omni_venv.env["OMNIPKG_STORE"]
    (key,) = os.listdir(os.path.join(store, "bubbles", "pclient", "1.0"))
    with open(os.path.join(store, "bubbles", "pclient", "1.0", key)) as f:
        dists = json.load(f)["dists"]
    # pkeep is main's 1.0 (what pip planned), not the newest 2.0 a second resolve would take
    assert {n: d["version"] for n, d in dists.items()} == {"pclient": "1.0", "pdep": "1.0", "pkeep": "1.0",
                                                            "pkeepdep": "1.0"}
    with open(os.path.join(store, "dists", "pclient", "1.0", "py3-none-any", "omnipkg-dist.json")) as f:
        assert json.load(f)["origin"] == (wheelhouse / "pclient-1.0-py3-none-any.whl").as_uri()


def test_a_planned_bubble_whose_main_dependency_the_index_lacks_is_resolved_by_pip_wheel(omni_venv, wheel, wheelhouse):
    """main's qkeep 1.0 is nowhere to fetch (a local build): pip resolves the bubble itself."""
    wheel("qclient", "1.0", requires=["qdep<2", "qkeep"])
    wheel("qdep", "1.0")
    wheel("qdep", "3.0")
    old = wheel("qkeep", "1.0")
    wheel("qkeep", "2.0")
    _install_main(omni_venv, wheelhouse, "qdep==3.0", "qkeep==1.0")
    old.unlink()

    out = json.loads(omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "qclient", "--json").stdout)

    assert [(r["name"], r["version"], r["action"]) for r in out] == [("qclient", "1.0", "created")]
    store = omni_venv.env["OMNIPKG_STORE"]
    (key,) = os.listdir(os.path.join(store, "bubbles", "qclient", "1.0"))
    with open(os.path.join(store, "bubbles", "qclient", "1.0", key)) as f:
        dists = json.load(f)["dists"]
    assert {n: d["version"] for n, d in dists.items()} == {"qclient": "1.0", "qdep": "1.0", "qkeep": "2.0"}


@pytest.mark.parametrize("bad", ["rich=13", "rich==", "==1.0", "rich[", "-"])
def test_invalid_requirement_is_one_line_and_changes_nothing(omni_venv, bad):
    before = _main_digest(omni_venv)
    proc = omni_venv.run("install", "--", bad, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"pip-omni: error: invalid requirement {bad!r}")
    assert lines[1].startswith("  hint: ")
    assert "Traceback" not in proc.stderr
    assert _main_digest(omni_venv) == before
    assert not os.path.exists(omni_venv.env["OMNIPKG_STORE"] + "/bubbles")


def test_missing_version_gives_pips_reason_and_the_log(omni_venv, wheel, wheelhouse):
    wheel("exists", "1.0")
    _install_main(omni_venv, wheelhouse, "exists==1.0")
    proc = omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "exists==9.9", check=False)
    assert proc.returncode == 1
    first, hint = proc.stderr.strip().splitlines()[-2:]
    assert "No matching distribution found for exists==9.9" in first
    log = hint.split("full pip output: ", 1)[1]
    assert os.path.isfile(log) and "exists==9.9" in open(log).read()


def test_uninstall_removes_only_the_bubble_and_gc_reclaims(omni_venv, wheel, wheelhouse):
    wheel("gone", "1.0")
    wheel("gone", "2.0")
    _install_main(omni_venv, wheelhouse, "gone==1.0")
    omni_venv.run("install", "--no-index", "-f", str(wheelhouse), "gone==2.0")
    store = omni_venv.env["OMNIPKG_STORE"]
    assert os.path.isdir(os.path.join(store, "dists", "gone", "2.0"))

    omni_venv.run("uninstall", "gone==2.0")
    assert json.loads(omni_venv.run("list", "--json").stdout)["bubbles"] == []
    assert "gone==1.0" in omni_venv.run("freeze").stdout

    dry = json.loads(omni_venv.run("gc", "--dry-run", "--json").stdout)
    assert dry["dists"] == 1 and dry["objects"] > 0
    assert os.path.isdir(os.path.join(store, "dists", "gone", "2.0"))
    omni_venv.run("gc")
    assert not os.path.exists(os.path.join(store, "dists", "gone"))
    assert json.loads(omni_venv.run("gc", "--dry-run", "--json").stdout)["objects"] == 0

    proc = omni_venv.run("uninstall", "gone==1.0", check=False)
    assert proc.returncode == 1
    assert "'gone==1.0' is installed in the main environment, not a bubble" in proc.stderr


def test_quiet_prints_nothing_and_python_m_works(omni_venv, wheel, wheelhouse):
    wheel("hush", "1.0")
    proc = omni_venv.run("python", "-m", "omnipkg_pip", "install", "-q", "--no-index", "-f", str(wheelhouse), "hush")
    assert proc.stdout == "" and proc.stderr == ""


def test_two_installs_at_once_into_one_store(omni_venv, wheel, wheelhouse):
    files = {f"big/m{i}.py": f"X = {i}\n" * 50 for i in range(200)}
    files["big/__init__.py"] = ""
    for v in ("1.0", "2.0", "3.0"):
        wheel("big", v, files={**files, "big/v.py": f"V = {v!r}\n"})
    _install_main(omni_venv, wheelhouse, "big==1.0")
    cmd = [str(omni_venv.path / "bin" / "pip-omni"), "install", "-q", "--no-index", "-f", str(wheelhouse)]
    procs = [subprocess.Popen([*cmd, f"big=={v}"], env=omni_venv.env, stderr=subprocess.PIPE, text=True)
             for v in ("2.0", "3.0")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    listing = json.loads(omni_venv.run("list", "--json").stdout)
    assert sorted(b["version"] for b in listing["bubbles"]) == ["2.0", "3.0"]
    # 200 identical modules are stored once for both versions.
    store = omni_venv.env["OMNIPKG_STORE"]
    a = os.stat(os.path.join(store, "dists/big/2.0/py3-none-any/big/m7.py"))
    b = os.stat(os.path.join(store, "dists/big/3.0/py3-none-any/big/m7.py"))
    assert a.st_ino == b.st_ino
