"""Pure decisions: plan.plan_install / items_from_report, bubbles.resolve_closure, and the
two store look-ups that need no pip (bubble_from_store, find_bubble).

Markers are evaluated against an explicit environment (the plan) or a made-up
interpreter (the closure), never against whatever runs the tests.
"""

from __future__ import annotations

import re

import pytest
from conftest import tree_digest
from packaging.markers import default_environment
from wheelmaker import make_wheel

from omnipkg_hook.store import WriteLock
from omnipkg_pip import plan
from omnipkg_pip.plan import ReportItem
from omnipkg_pip.pythons import interp
from omnipkg_pip.writers import bubbles
from omnipkg_pip.writers.bubbles import ClosureError
from omnipkg_pip.writers.ingest import ingest_wheel

ENV = {**default_environment(), "python_version": "3.11", "python_full_version": "3.11.7", "sys_platform": "linux"}


def R(name, version, *requires, requested=False, extras=()):
    return ReportItem(name, version, requested, tuple(requires), tuple(extras))


# -- plan_install ----------------------------------------------------------------------

# id, report items, main's {name: version}, plan_install options, env overrides,
# expected (to_main names, to_bubble [(name, reason)], keep_as_bubble)
PLAN_CASES = [
    ("new package and its new dependency go to main",
     [R("fresh", "1.0", "helper", requested=True), R("helper", "1.0")], {}, {}, {},
     (["fresh"], [], [])),
    ("root upgrade becomes a bubble",
     [R("lib", "2.0", requested=True)], {"lib": "1.0"}, {}, {},
     ([], [("lib", "would change main: lib 1.0 -> 2.0")], [])),
    ("root downgrade becomes a bubble",
     [R("lib", "0.9", requested=True)], {"lib": "1.0"}, {}, {},
     ([], [("lib", "would change main: lib 1.0 -> 0.9")], [])),
    ("a dependency downgrade sends the root to a bubble",
     [R("oldclient", "1.0", "idnax<2", requested=True), R("idnax", "1.5")], {"idnax": "3.0"}, {}, {},
     ([], [("oldclient", "would change main: idnax 3.0 -> 1.5")], [])),
    ("a change deep in the closure counts",
     [R("top", "1.0", "mid", requested=True), R("mid", "1.0", "deep<2"), R("deep", "1.0")], {"deep": "2.0"}, {}, {},
     ([], [("top", "would change main: deep 2.0 -> 1.0")], [])),
    ("every change is named, sorted",
     [R("app", "1.0", "zeta", "alpha", requested=True), R("zeta", "2.0"), R("alpha", "2.0")],
     {"zeta": "1.0", "alpha": "1.0"}, {}, {},
     ([], [("app", "would change main: alpha 1.0 -> 2.0, zeta 1.0 -> 2.0")], [])),
    ("a dependency main already satisfies is not in the report and changes nothing",
     [R("app", "1.0", "present>=1", requested=True)], {"present": "1.5"}, {}, {},
     (["app"], [], [])),
    ("roots are decided one by one",
     [R("calm", "1.0", "shared", requested=True), R("pushy", "1.0", "shared", "old<2", requested=True),
      R("shared", "1.0"), R("old", "1.0")], {"old": "2.0"}, {}, {},
     (["calm"], [("pushy", "would change main: old 2.0 -> 1.0")], [])),
    ("a false marker keeps a change out of the closure",
     [R("app", "1.0", 'dep; python_version < "3.0"', requested=True), R("other", "1.0", "dep", requested=True),
      R("dep", "2.0")], {"dep": "1.0"}, {}, {},
     (["app"], [("other", "would change main: dep 1.0 -> 2.0")], [])),
    ("a true marker keeps it in",
     [R("app", "1.0", 'dep; python_version >= "3.8"', requested=True), R("dep", "2.0")], {"dep": "1.0"}, {}, {},
     ([], [("app", "would change main: dep 1.0 -> 2.0")], [])),
    ("markers are evaluated for the target interpreter",
     [R("app", "1.0", 'backport; python_version < "3.10"', requested=True), R("backport", "2.0")],
     {"backport": "1.0"}, {}, {"python_version": "3.9"},
     ([], [("app", "would change main: backport 1.0 -> 2.0")], [])),
    ("a requested extra pulls its dependency into the closure",
     [R("app", "1.0", 'socks; extra == "socks"', requested=True, extras=["socks"]), R("socks", "2.0")],
     {"socks": "1.0"}, {}, {},
     ([], [("app", "would change main: socks 1.0 -> 2.0")], [])),
    ("an extra nobody asked for does not",
     [R("app", "1.0", 'socks; extra == "socks"', requested=True), R("socks", "2.0")], {"socks": "1.0"}, {}, {},
     (["app"], [], [])),
    ("extras propagate through a dependency",
     [R("app", "1.0", "mid[fast]", requested=True), R("mid", "1.0", 'accel; extra == "fast"'), R("accel", "2.0")],
     {"accel": "1.0"}, {}, {},
     ([], [("app", "would change main: accel 1.0 -> 2.0")], [])),
    ("a dependency cycle terminates",
     [R("ping", "1.0", "pong", requested=True), R("pong", "1.0", "ping")], {}, {}, {},
     (["ping"], [], [])),
    ("an unparsable requires_dist line is skipped",
     [R("app", "1.0", "this is not a requirement !!", requested=True)], {}, {}, {},
     (["app"], [], [])),
    ("--bubble sends every root to a bubble",
     [R("fresh", "1.0", requested=True), R("lib", "2.0", requested=True)], {"lib": "1.0"},
     {"force_bubble": True}, {},
     ([], [("fresh", "--bubble"), ("lib", "--bubble")], [])),
    ("--strategy latest puts roots in main and keeps every replaced version",
     [R("lib", "2.0", "dep>=2", requested=True), R("dep", "2.0"), R("fresh", "1.0", requested=True)],
     {"lib": "1.0", "dep": "1.0"}, {"strategy": "latest"}, {},
     (["lib", "fresh"], [], [("dep", "1.0"), ("lib", "1.0")])),
    ("--bubble wins over --strategy latest",
     [R("lib", "2.0", requested=True)], {"lib": "1.0"}, {"strategy": "latest", "force_bubble": True}, {},
     ([], [("lib", "--bubble")], [])),
]


@pytest.mark.parametrize("items, installed, options, env, expected", [c[1:] for c in PLAN_CASES],
                         ids=[c[0] for c in PLAN_CASES])
def test_plan_install(items, installed, options, env, expected):
    by_name = {it.name: it for it in items}
    result = plan.plan_install(by_name, installed, {**ENV, **env}, **options)
    assert (
        [r.name for r in result.to_main],
        [(r.name, reason) for r, reason in result.to_bubble],
        result.keep_as_bubble,
    ) == expected
    assert result.changes == {n: (installed[n], it.version) for n, it in by_name.items() if n in installed}


# -- items_from_report -----------------------------------------------------------------

REPORT = {  # the shape of `pip install --dry-run --report -` (report version 1, pip 23-26)
    "version": "1",
    "pip_version": "24.0",
    "install": [
        {
            "download_info": {
                "url": "file:///wheels/Fancy_App-1.0-py3-none-any.whl",
                "archive_info": {"hashes": {"sha256": "89" * 32}, "hash": "sha256=" + "89" * 32},
            },
            "is_direct": False,
            "is_yanked": False,
            "requested": True,
            "metadata": {
                "metadata_version": "2.1",
                "name": "Fancy_App",
                "version": "1.0",
                "requires_dist": ["helper>=1", 'socks-lib; extra == "socks"'],
                "provides_extra": ["socks"],
            },
            "requested_extras": ["socks"],
        },
        {
            "download_info": {"url": "file:///wheels/helper-1.2-py3-none-any.whl",
                              "archive_info": {"hashes": {"sha256": "80" * 32}}},
            "is_direct": False,
            "is_yanked": False,
            "requested": False,
            "metadata": {"metadata_version": "2.1", "name": "helper", "version": "1.2"},
        },
        {
            "download_info": {"url": "file:///src/local-pkg", "dir_info": {}},
            "is_direct": True,
            "is_yanked": False,
            "requested": True,
            "metadata": {"metadata_version": "2.3", "name": "Local.Pkg", "version": "0.1.dev0",
                         "requires_dist": []},
        },
    ],
    "environment": dict(ENV),
}


def test_items_from_a_real_shaped_report():
    items = plan.items_from_report(REPORT)
    assert items == {
        "fancy-app": ReportItem("fancy-app", "1.0", True, ("helper>=1", 'socks-lib; extra == "socks"'), ("socks",)),
        "helper": ReportItem("helper", "1.2", False),
        "local-pkg": ReportItem("local-pkg", "0.1.dev0", True, url="file:///src/local-pkg"),
    }
    assert [it.requirement() for it in items.values()] == [
        "fancy-app[socks]==1.0", "helper==1.2", "local-pkg @ file:///src/local-pkg",
    ]


def test_items_from_an_empty_report():
    assert plan.items_from_report({"version": "1", "install": []}) == {}
    assert plan.items_from_report({"version": "1"}) == {}


# -- resolve_closure -------------------------------------------------------------------


def _interpreter(version: str, tags: list[str]) -> interp.Interpreter:
    major_minor = ".".join(version.split(".")[:2])
    cp = "cp" + major_minor.replace(".", "")
    return interp.Interpreter(
        executable=f"/opt/python{major_minor}/bin/python", version=version,
        version_info=tuple(int(x) for x in major_minor.split(".")), cache_tag=f"cpython-{cp[2:]}",
        key=f"cpython-{cp[2:]}-linux-x86_64",
        markers={**ENV, "python_version": major_minor, "python_full_version": version,
                 "implementation_version": version},
        tags=[t.replace("CP", cp) for t in tags],
    )


TAGS = ["CP-CP-manylinux_2_17_x86_64", "CP-abi3-manylinux_2_17_x86_64", "CP-none-manylinux_2_17_x86_64",
        "CP-none-any", "py3-none-any"]
PY39 = _interpreter("3.9.18", TAGS)
PY312 = _interpreter("3.12.4", TAGS)


def M(name, version, *requires, tag="py3-none-any"):
    """A dist manifest as far as the closure reads it."""
    return {"name": name, "version": version, "tag": tag, "requires_dist": list(requires)}


def _resolve(root, dists, interpreter=PY39):
    by_name: dict[str, list[dict]] = {}
    for m in dists:
        by_name.setdefault(m["name"], []).append(m)
    picked = bubbles.resolve_closure(bubbles.parse_requirement(root), lambda n: by_name.get(n, []), interpreter)
    return {n: (p.manifest["version"], p.manifest["tag"], p.requires) for n, p in picked.items()}


def test_closure_picks_the_highest_version_every_requirement_allows():
    dists = [M("app", "1.0", "dep<2", "dep>=1.1"), M("dep", "1.0"), M("dep", "1.5"), M("dep", "2.0"), M("dep", "1.9")]
    assert _resolve("app", dists) == {
        "app": ("1.0", "py3-none-any", {"dep": "<2,>=1.1"}),
        "dep": ("1.9", "py3-none-any", {}),
    }


def test_closure_compares_versions_as_versions():
    assert _resolve("dep", [M("dep", "1.9"), M("dep", "1.10"), M("dep", "1.2")])["dep"][0] == "1.10"


def test_closure_evaluates_markers_for_the_target_interpreter():
    dists = [M("app", "1.0", 'backport; python_version < "3.10"', 'winonly; sys_platform == "win32"'),
             M("backport", "1.0"), M("winonly", "1.0")]
    assert set(_resolve("app", dists, PY39)) == {"app", "backport"}
    assert set(_resolve("app", dists, PY312)) == {"app"}


def test_closure_skips_wheels_the_interpreter_cannot_use_and_prefers_the_best_tag():
    dists = [
        M("dep", "3.0", tag="cp27-cp27mu-manylinux1_x86_64"),
        M("dep", "2.0", tag="py3-none-any"),
        M("dep", "2.0", tag="cp39-cp39-manylinux_2_17_x86_64"),
        M("dep", "2.0", tag="cp39-abi3-manylinux_2_17_x86_64"),
    ]
    assert _resolve("dep", dists)["dep"][:2] == ("2.0", "cp39-cp39-manylinux_2_17_x86_64")
    # The same stored dists seen from 3.12: only the pure wheel fits.
    assert _resolve("dep", dists, PY312)["dep"][:2] == ("2.0", "py3-none-any")


def test_closure_follows_requested_extras_and_propagates_them():
    dists = [M("app", "1.0", 'mid[fast]; extra == "all"', "plain"), M("plain", "1.0"),
             M("mid", "1.0", 'accel; extra == "fast"'), M("accel", "1.0")]
    assert set(_resolve("app", dists)) == {"app", "plain"}
    assert set(_resolve("app[all]", dists)) == {"app", "plain", "mid", "accel"}


def test_closure_adds_an_extra_met_after_the_dist_was_picked():
    # "mid" is reached first without extras (from app), then with [fast] (from other).
    dists = [M("app", "1.0", "mid", "other"), M("other", "1.0", "mid[fast]"),
             M("mid", "1.0", 'accel; extra == "fast"'), M("accel", "2.0")]
    resolved = _resolve("app", dists)
    assert set(resolved) == {"app", "other", "mid", "accel"}
    assert resolved["mid"][2] == {"accel": ""}


CLOSURE_ERRORS = [
    ("root not stored", "app>=5", [M("app", "1.0")],
     "no app matching 'app>=5' is available for Python 3.9.18"),
    ("dependency not stored", "app", [M("app", "1.0", "dep>=2"), M("dep", "1.0")],
     "no dep matching 'app -> dep>=2' is available for Python 3.9.18"),
    ("dependency only for another interpreter", "app",
     [M("app", "1.0", "dep"), M("dep", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")],
     "no dep matching 'app -> dep' is available for Python 3.9.18"),
    ("two requirements that no version meets", "app",
     [M("app", "1.0", "left", "right"), M("left", "1.0", "dep>=2"), M("right", "1.0", "dep<2"),
      M("dep", "1.0"), M("dep", "2.0")],
     "'right -> dep<2' conflicts with dep 2.0 already in the closure"),
    # Greedy, no backtracking: dep 1.0 would satisfy both, but 2.0 was picked first.
    # bubble_from_store then returns None and pip resolves the bubble instead.
    ("a choice it would have to undo", "app",
     [M("app", "1.0", "left", "right"), M("left", "1.0", "dep>=1"), M("right", "1.0", "dep<2"),
      M("dep", "1.0"), M("dep", "2.0")],
     "'right -> dep<2' conflicts with dep 2.0 already in the closure"),
]


@pytest.mark.parametrize("root, dists, message", [c[1:] for c in CLOSURE_ERRORS], ids=[c[0] for c in CLOSURE_ERRORS])
def test_closure_error_names_what_is_missing(root, dists, message):
    with pytest.raises(ClosureError, match=f"^{re.escape(message)}$"):
        _resolve(root, dists)


# -- bubble_from_store / find_bubble ---------------------------------------------------

CURRENT = interp.current()


def _stored(store, wheelhouse, *wheels):
    """Ingest wheels (name, version, requires) into the store without making a bubble."""
    with WriteLock(store):
        for name, version, requires in wheels:
            ingest_wheel(store, str(make_wheel(wheelhouse, name, version, requires=requires)), CURRENT)


def test_bubble_from_store_is_none_when_a_dependency_is_not_stored(store, wheelhouse):
    _stored(store, wheelhouse, ("app", "1.0", ["dep>=1"]))
    before = tree_digest(store.root, skip=())
    assert bubbles.bubble_from_store(store, "app") is None
    assert tree_digest(store.root, skip=()) == before


def test_bubble_from_store_is_none_when_its_greedy_closure_fails(store, wheelhouse):
    _stored(store, wheelhouse, ("app", "1.0", ["left", "right"]), ("left", "1.0", ["dep>=1"]),
            ("right", "1.0", ["dep<2"]), ("dep", "1.0", []), ("dep", "2.0", []))
    assert bubbles.bubble_from_store(store, "app") is None
    assert store.bubble_names() == []


def test_bubble_from_store_uses_the_best_stored_versions(store, wheelhouse):
    _stored(store, wheelhouse, ("app", "1.0", ["dep<2"]), ("app", "2.0", ["dep>=2"]),
            ("dep", "1.0", []), ("dep", "1.5", []), ("dep", "2.0", []))
    manifest = bubbles.bubble_from_store(store, "app<2")
    assert {n: d["version"] for n, d in manifest["dists"].items()} == {"app": "1.0", "dep": "1.5"}
    assert manifest["dists"]["dep"]["path"] == "dists/dep/1.5/py3-none-any"
    assert manifest["dists"]["app"]["requires"] == {"dep": "<2"}
    assert store.load_bubble("app", "1.0", CURRENT.key) == manifest


def test_find_bubble_selects_the_best_stored_version_for_the_specifier(store, wheelhouse):
    for version in ("1.0", "1.9", "1.10"):
        bubbles.bubble_from_wheels(store, [make_wheel(wheelhouse, "x", version)], f"x=={version}")
    found = {spec: (m or {}).get("version") for spec in ("x", "x<1.10", "x==1.0", "x>=1.1,<1.10", "x>2", "X")
             for m in [bubbles.find_bubble(store, spec, CURRENT)]}
    assert found == {"x": "1.10", "x<1.10": "1.9", "x==1.0": "1.0", "x>=1.1,<1.10": "1.9", "x>2": None, "X": "1.10"}
    other = PY312 if CURRENT.key == PY39.key else PY39
    assert bubbles.find_bubble(store, "x", other) is None  # bubbles are per interpreter
    # A bubble made without the extra does not answer for it: the caller makes one with it.
    assert bubbles.find_bubble(store, "x[fancy]", CURRENT) is None
    bubbles.bubble_from_wheels(store, [make_wheel(wheelhouse, "x", "1.10")], "x[fancy]==1.10")
    assert bubbles.find_bubble(store, "x[fancy]", CURRENT)["extras"] == ["fancy"]


@pytest.mark.parametrize("root, expected", [
    ("app", "1.0"),            # a stored pre-release is not chosen unless asked for, as in pip
    ("app>=2.0rc1", "2.0rc1"),  # a specifier that names a pre-release admits it
])
def test_closure_takes_pre_releases_only_when_a_specifier_names_one(root, expected):
    dists = [M("app", "1.0"), M("app", "2.0rc1")]
    assert _resolve(root, dists)["app"][0] == expected


def test_closure_of_wheels_pip_chose_accepts_their_pre_releases():
    by_name = {"app": [M("app", "2.0rc1")]}
    picked = bubbles.resolve_closure(bubbles.parse_requirement("app"), lambda n: by_name.get(n, []), PY39,
                                     prereleases=True)
    assert picked["app"].manifest["version"] == "2.0rc1"
