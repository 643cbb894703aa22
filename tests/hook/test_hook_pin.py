"""pin(), unpin(), pins(), explain(): routing, dependencies, and every error with its message."""

from __future__ import annotations

import os
import re
import sys

import pytest

import omnipkg_hook
from omnipkg_hook import finder
from omnipkg_hook.errors import (
    AlreadyImportedError,
    BubbleNotFoundError,
    InvalidPinError,
    OmnipkgError,
    PinConflictError,
)
from omnipkg_hook.store import interpreter_key

from .conftest import module_files

KEY = interpreter_key()


def _quote(text: str) -> str:
    return re.escape(text)


def _cmd(req: str) -> str:
    """The install command the hint names (``--python`` when pip-omni is not beside this python)."""
    here = os.path.dirname(sys.executable)
    if os.path.exists(os.path.join(here, "pip-omni")):
        return f"pip-omni install '{req}'"
    return f"pip-omni install --python '{sys.executable}' '{req}'"


def test_pin_routes_top_level_name_to_the_store_and_main_stays_untouched(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0", {"omt_a/sub.py": "S = 1"})))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/sub.py": "S = 2"})))

    assert omnipkg_hook.pin("omt-a==2.0") == ["omt-a==2.0"]
    import omt_a
    import omt_a.sub

    assert (omt_a.VERSION, omt_a.sub.S) == ("2.0", 2)
    assert omt_a.__file__.startswith(store.root + os.sep)
    assert omt_a.sub.__file__.startswith(os.path.dirname(omt_a.__file__))
    assert sys.meta_path[0] is finder.FINDER
    assert omnipkg_hook.pins() == ["omt-a==2.0"]


def test_pin_picks_the_best_stored_version_satisfying_the_specifier(store, bubble, wheel):
    for v in ("1.0", "1.5", "2.0", "2.1rc1"):
        bubble(f"omt-a=={v}", ("omt-a", v, module_files("omt_a", v)))
    omnipkg_hook.pin("omt-a>=1,<2")
    import omt_a

    assert omt_a.VERSION == "1.5"


def test_pin_accepts_several_requirements_and_the_OMNIPKG_PINS_syntax(store, bubble):
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    bubble("omt-b==3.0", ("omt-b", "3.0", module_files("omt_b", "3.0")))
    assert omnipkg_hook.pin("omt-a>=2,<3, omt_b==3.0") == ["omt-a<3,>=2", "omt_b==3.0"]
    import omt_a
    import omt_b

    assert (omt_a.VERSION, omt_b.VERSION) == ("2.0", "3.0")


def test_a_pin_main_satisfies_routes_nothing(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0")))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    omnipkg_hook.pin("omt-a>=1")
    import omt_a

    assert omt_a.VERSION == "1.0"
    assert finder.FINDER.routes == {}
    assert os.environ["OMNIPKG_PINS"] == "omt-a>=1"
    assert "main environment's 1.0 satisfies it, nothing routed" in omnipkg_hook.explain()


def test_import_name_differs_from_distribution_name(store, bubble, main_site, wheel):
    files = {"omtpretty/__init__.py": "V = '2'"}
    bubble("OMT_Pretty.Name==2.0", ("OMT_Pretty.Name", "2.0", files))
    omnipkg_hook.pin("omt-pretty-name==2.0")
    import omtpretty

    assert omtpretty.V == "2"
    assert list(finder.FINDER.routes) == ["omtpretty"]
    import importlib.metadata as md

    assert md.version("OMT_pretty.name") == "2.0"
    if sys.version_info >= (3, 11):  # 3.10's reads top_level.txt only, which this wheel lacks
        assert md.packages_distributions()["omtpretty"] == ["OMT_Pretty.Name"]


def test_distribution_with_several_top_level_names(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-multi", "1.0", {"omtm_one/__init__.py": "V = 1", "omtm_two/__init__.py": "V = 1",
                                                  "omtm_three.py": "V = 1"}))  # fmt: skip
    bubble("omt-multi==2.0", ("omt-multi", "2.0", {"omtm_one/__init__.py": "V = 2", "omtm_two/__init__.py": "V = 2",
                                                    "omtm_three.py": "V = 2"}))  # fmt: skip
    omnipkg_hook.pin("omt-multi==2.0")
    import omtm_one
    import omtm_three
    import omtm_two

    assert (omtm_one.V, omtm_two.V, omtm_three.V) == (2, 2, 2)
    assert sorted(finder.FINDER.routes) == ["omtm_one", "omtm_three", "omtm_two"]


def test_similar_names_are_not_routed(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-sim", "1.0", {"omtsim/__init__.py": "V = 1"}))
    main_site.install(wheel("omt-simbar", "1.0", {"omtsimbar/__init__.py": "V = 'main'", "omtsim_x.py": "V = 'main'"}))
    bubble("omt-sim==2.0", ("omt-sim", "2.0", {"omtsim/__init__.py": "V = 2", "omtsim/bar.py": "V = 'sub'"}))
    omnipkg_hook.pin("omt-sim==2.0")
    import omtsim
    import omtsim.bar
    import omtsim_x
    import omtsimbar

    assert (omtsim.V, omtsim.bar.V, omtsimbar.V, omtsim_x.V) == (2, "sub", "main", "main")
    import importlib.metadata as md

    assert (md.version("omt-sim"), md.version("omt-simbar")) == ("2.0", "1.0")


def test_unrouted_and_submodule_lookups_never_reach_pathfinder(store, bubble, monkeypatch):
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/sub.py": ""})))
    omnipkg_hook.pin("omt-a==2.0")
    calls = []
    real = finder.OmnipkgFinder.PathFinder

    class Spy:
        @staticmethod
        def find_spec(name, path=None, target=None):
            calls.append(name)
            return real.find_spec(name, path, target)

    monkeypatch.setattr(finder.OmnipkgFinder, "PathFinder", Spy)
    import json  # noqa: F401  (already imported: never asks)

    import omt_a
    import omt_a.sub  # a submodule: found through omt_a.__path__, not by the finder

    assert finder.FINDER.find_spec("omt_a_not_routed") is None
    assert finder.FINDER.find_spec("omt_a.sub", omt_a.__path__) is None
    assert calls == ["omt_a"]


def test_dependency_keeps_main_copy_when_it_satisfies_the_requirement(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-lib", "3.0", module_files("omt_lib", "3.0")))
    bubble(
        "omt-app==2.0",
        ("omt-app", "2.0", module_files("omt_app", "2.0"), {"requires": ["omt-lib>=2"]}),
        ("omt-lib", "2.5", module_files("omt_lib", "2.5")),
    )
    omnipkg_hook.pin("omt-app==2.0")
    import omt_app
    import omt_lib

    assert (omt_app.VERSION, omt_lib.VERSION) == ("2.0", "3.0")
    assert list(finder.FINDER.routes) == ["omt_app"]
    assert "omt-lib 3.0 [main] from" in omnipkg_hook.explain()
    assert "the main environment's 3.0 satisfies omt-app==2.0 -> omt-lib>=2" in omnipkg_hook.explain()


def test_dependency_is_routed_when_main_does_not_satisfy_it(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-lib", "1.0", module_files("omt_lib", "1.0")))
    bubble(
        "omt-app==2.0",
        ("omt-app", "2.0", module_files("omt_app", "2.0"), {"requires": ["omt-lib>=2"]}),
        ("omt-lib", "2.5", module_files("omt_lib", "2.5"), {"requires": ["omt-deep"]}),
        ("omt-deep", "1.0", module_files("omt_deep", "1.0")),
    )
    omnipkg_hook.pin("omt-app==2.0")
    import omt_deep
    import omt_lib

    assert (omt_lib.VERSION, omt_deep.VERSION) == ("2.5", "1.0")
    text = omnipkg_hook.explain()
    assert "the main environment's 1.0 does not satisfy omt-app==2.0 -> omt-lib>=2" in text
    assert "not in the main environment; needed by omt-app==2.0 -> omt-lib>=2 -> omt-deep" in text


def test_bubble_not_found_names_the_install_command(store, bubble):
    bubble("omt-a==1.0", ("omt-a", "1.0", module_files("omt_a", "1.0")))
    message = (
        f"no stored version of 'omt-a' satisfies 'omt-a==2.0' for this interpreter ({KEY}) (stored: 1.0)\n"
        f"  hint: run: {_cmd('omt-a==2.0')}"
    )
    with pytest.raises(BubbleNotFoundError, match=f"^{_quote(message)}$") as info:
        omnipkg_hook.pin("omt-a==2.0")
    assert isinstance(info.value, ModuleNotFoundError) and isinstance(info.value, OmnipkgError)
    assert info.value.name == "omt-a"
    assert omnipkg_hook.pins() == [] and "OMNIPKG_PINS" not in os.environ


def test_bubble_not_found_for_a_name_never_stored(store):
    with pytest.raises(BubbleNotFoundError, match=_quote(f"satisfies 'omt-none>=1' for this interpreter ({KEY})\n")):
        omnipkg_hook.pin("omt-none>=1")


def test_conflicting_pins_name_both_chains(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-lib", "1.0", module_files("omt_lib", "1.0")))
    bubble(
        "omt-app==2.0",
        ("omt-app", "2.0", module_files("omt_app", "2.0"), {"requires": ["omt-lib>=2"]}),
        ("omt-lib", "2.5", module_files("omt_lib", "2.5")),
    )
    message = (
        "pins need incompatible versions of 'omt-lib': omt-app==2.0 -> omt-lib>=2 vs omt-lib==1.0 (pinned)\n"
        "  hint: copies at hand: 1.0 (main environment), 2.5 (store); change a pin so that one version "
        "satisfies both, or run one side in a worker (omnipkg_hook.workers) for true isolation"
    )
    with pytest.raises(PinConflictError, match=f"^{_quote(message)}$"):
        omnipkg_hook.pin("omt-app==2.0", "omt-lib==1.0")
    assert omnipkg_hook.pins() == [] and finder.FINDER.routes == {}


def test_conflict_between_two_bubbles(store, bubble):
    bubble("omt-x==1.0", ("omt-x", "1.0", module_files("omt_x", "1.0"), {"requires": ["omt-lib<2"]}),
           ("omt-lib", "1.0", module_files("omt_lib", "1.0")))  # fmt: skip
    bubble("omt-y==1.0", ("omt-y", "1.0", module_files("omt_y", "1.0"), {"requires": ["omt-lib>=2"]}),
           ("omt-lib", "2.0", module_files("omt_lib", "2.0")))  # fmt: skip
    omnipkg_hook.pin("omt-x==1.0")
    with pytest.raises(PinConflictError, match=_quote("omt-x==1.0 -> omt-lib<2 vs omt-y==1.0 -> omt-lib>=2\n")):
        omnipkg_hook.pin("omt-y==1.0")
    assert omnipkg_hook.pins() == ["omt-x==1.0"]


def test_two_bubbles_share_a_dependency_copy_that_satisfies_both(store, bubble):
    bubble("omt-x==1.0", ("omt-x", "1.0", module_files("omt_x", "1.0"), {"requires": ["omt-lib>=1"]}),
           ("omt-lib", "1.0", module_files("omt_lib", "1.0")))  # fmt: skip
    bubble("omt-y==1.0", ("omt-y", "1.0", module_files("omt_y", "1.0"), {"requires": ["omt-lib>=1,<3"]}),
           ("omt-lib", "2.0", module_files("omt_lib", "2.0")))  # fmt: skip
    omnipkg_hook.pin("omt-x==1.0", "omt-y==1.0")
    import omt_lib

    assert omt_lib.VERSION == "1.0"  # the first pin's copy satisfies both


def test_a_pin_on_a_dependency_overrides_the_bubble_copy(store, bubble):
    bubble("omt-app==2.0", ("omt-app", "2.0", module_files("omt_app", "2.0"), {"requires": ["omt-lib>=2"]}),
           ("omt-lib", "2.0", module_files("omt_lib", "2.0")))  # fmt: skip
    bubble("omt-lib==2.7", ("omt-lib", "2.7", module_files("omt_lib", "2.7")))
    omnipkg_hook.pin("omt-app==2.0", "omt-lib==2.7")
    import omt_lib

    assert omt_lib.VERSION == "2.7"


def test_already_imported_is_an_error_unless_replace(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0", {"omt_a/sub.py": ""})))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/sub.py": ""})))
    import omt_a
    import omt_a.sub

    old = omt_a
    target = os.path.join(store.root, "dists", "omt-a", "2.0", "py3-none-any")
    message = (
        f"'omt_a' is already imported from {os.path.join(str(main_site.path), 'omt_a', '__init__.py')!r}; "
        f"omt-a==2.0 routes it to {target!r}\n"
        "  hint: pin before importing it, or pass replace=True to drop the imported modules "
        "(objects made from them keep the old classes), or use omnipkg_hook.using()"
    )
    with pytest.raises(AlreadyImportedError, match=f"^{_quote(message)}$"):
        omnipkg_hook.pin("omt-a==2.0")
    assert sys.modules["omt_a"] is old and omnipkg_hook.pins() == []

    omnipkg_hook.pin("omt-a==2.0", replace=True)
    assert "omt_a" not in sys.modules and "omt_a.sub" not in sys.modules
    import omt_a

    assert omt_a.VERSION == "2.0" and old.VERSION == "1.0"


def test_repinning_another_version_after_import_needs_replace(store, bubble):
    bubble("omt-a==1.0", ("omt-a", "1.0", module_files("omt_a", "1.0")))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    omnipkg_hook.pin("omt-a==1.0")
    import omt_a  # noqa: F401

    with pytest.raises(AlreadyImportedError, match=r"^'omt_a' is already imported from .*1\.0.*; omt-a==2\.0 routes"):
        omnipkg_hook.pin("omt-a==2.0")
    omnipkg_hook.pin("omt-a==2.0", replace=True)
    import omt_a  # noqa: F811  (a fresh import after the purge)

    assert omt_a.VERSION == "2.0"


def test_unpin_goes_back_to_main(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0")))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    bubble("omt-b==2.0", ("omt-b", "2.0", module_files("omt_b", "2.0")))
    omnipkg_hook.pin("omt-a==2.0", "omt-b==2.0")
    import omt_a

    assert omt_a.VERSION == "2.0"
    assert omnipkg_hook.unpin("OMT_A") == ["omt-b==2.0"]
    assert os.environ["OMNIPKG_PINS"] == "omt-b==2.0"
    import omt_a

    assert omt_a.VERSION == "1.0"
    assert omnipkg_hook.unpin("omt-not-pinned") == ["omt-b==2.0"]
    assert omnipkg_hook.unpin() == []
    assert "OMNIPKG_PINS" not in os.environ and finder.FINDER.routes == {}


def test_pin_exports_pins_store_and_bubble_bin_on_path(store, bubble, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0"),
                          {"entry_points": {"console_scripts": {"omt-a-tool": "omt_a:main"}}}))  # fmt: skip
    bubble("omt-b==1.0", ("omt-b", "1.0", module_files("omt_b", "1.0")))
    omnipkg_hook.pin("omt-a==2.0", "omt-b==1.0")
    bin_dir = store.bubble_bin("omt-a", "2.0", KEY)
    assert os.environ["OMNIPKG_PINS"] == "omt-a==2.0,omt-b==1.0"
    assert os.environ["OMNIPKG_STORE"] == store.root
    assert os.environ["PATH"] == f"{bin_dir}:/usr/bin:/bin"  # omt-b has no scripts: no bin dir
    omnipkg_hook.pin("omt-a==2.0")  # same pin again: PATH is not stacked
    assert os.environ["PATH"] == f"{bin_dir}:/usr/bin:/bin"
    omnipkg_hook.unpin("omt-a")
    assert os.environ["PATH"] == "/usr/bin:/bin"


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        (("omt-a=2",), "pin('omt-a=2'): invalid requirement 'omt-a=2': expected a version operator"),
        (("omt-a @ https://x/y.whl",), "pin('omt-a @ https://x/y.whl'): pin 'omt-a @ https://x/y.whl' is a URL"),
        (("omt-a==1", "OMT_A==2"), "pin(): 'omt-a' is pinned twice: 'omt-a==1' and 'OMT_A==2'"),
        ((), "pin() needs at least one requirement"),
        ((b"omt-a",), "pin() takes requirement strings, not b'omt-a'"),
    ],
)
def test_invalid_pins_are_rejected_with_the_input_quoted(store, pins, message):
    with pytest.raises(InvalidPinError, match=f"^{_quote(message)}"):
        omnipkg_hook.pin(*pins)
    assert omnipkg_hook.pins() == []


def test_explain_without_pins_and_with_hypothetical_pins(store, bubble):
    assert omnipkg_hook.explain() == "no pins: every import comes from the main environment"
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    path = os.path.join(store.root, "dists", "omt-a", "2.0", "py3-none-any")
    assert omnipkg_hook.explain("omt-a==2.0") == (
        f"pins: omt-a==2.0  (store {store.root}, interpreter {KEY})\n"
        f"  omt-a 2.0 [store] imports omt_a from {path}\n"
        f"      pinned omt-a==2.0: best stored version for {KEY}"
    )
    assert omnipkg_hook.pins() == []  # explaining changes nothing


def test_pins_module_is_also_the_pins_function():
    import omnipkg_hook.pins as module

    assert omnipkg_hook.pins is module and module() == [] and callable(omnipkg_hook.pin)


def test_finder_installs_once_first_and_is_removable():
    class Other:
        @staticmethod
        def find_spec(name, path=None, target=None):
            return None

    assert finder.install() is finder.FINDER and finder.install() is finder.FINDER
    assert sys.meta_path.count(finder.FINDER) == 1 and sys.meta_path[0] is finder.FINDER
    sys.meta_path.insert(0, Other)
    try:
        finder.install()  # pushed back by another finder: moved to the front, not added twice
        assert sys.meta_path[0] is finder.FINDER and sys.meta_path.count(finder.FINDER) == 1
    finally:
        sys.meta_path.remove(Other)
    finder.uninstall()
    finder.uninstall()
    assert finder.FINDER not in sys.meta_path and not finder.installed()
