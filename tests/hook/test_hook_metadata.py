"""importlib.metadata agrees with imports under a pin; the finder's metadata answers."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import sys

import omnipkg_hook
from omnipkg_hook import finder

from .conftest import module_files


def _setup(store, bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0"), requires=["omt-old"],
                            entry_points={"console_scripts": {"omt-a-tool": "omt_a:old"}}))  # fmt: skip
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0", {"omt_a/extra.py": ""}),
                          {"requires": ["omt-dep>=1"], "entry_points": {"console_scripts": {"omt-a-tool": "omt_a:new"},
                                                                         "omt.plugins": {"p": "omt_a:plugin"}}}),
           ("omt-dep", "1.0", module_files("omt_dep", "1.0")))  # fmt: skip
    omnipkg_hook.pin("omt-a==2.0")


def test_metadata_describes_the_pinned_version(store, bubble, main_site, wheel):
    _setup(store, bubble, main_site, wheel)
    import omt_a

    dist = md.distribution("OMT_A")
    assert md.version("omt-a") == dist.version == omt_a.VERSION == "2.0"
    assert md.metadata("omt_a")["Version"] == "2.0"
    assert md.requires("omt-a") == ["omt-dep>=1"]
    files = {str(f) for f in md.files("omt-a")}
    assert {"omt_a/__init__.py", "omt_a/extra.py", "omt_a-2.0.dist-info/METADATA"} <= files
    init = next(f for f in md.files("omt-a") if str(f) == "omt_a/__init__.py")
    assert os.path.samefile(init.locate(), omt_a.__file__)
    assert str(dist.locate_file("")).startswith(store.root)
    assert md.version("omt-dep") == "1.0"  # a routed dependency is described too


def test_entry_points_and_distributions_prefer_the_pinned_copy(store, bubble, main_site, wheel):
    _setup(store, bubble, main_site, wheel)
    if sys.version_info >= (3, 11):  # 3.10's reads top_level.txt only, which these wheels lack
        assert md.packages_distributions()["omt_a"][0] == "omt-a"
    if sys.version_info >= (3, 10):
        (ep,) = md.entry_points(group="console_scripts", name="omt-a-tool")  # unique by distribution
        assert ep.value == "omt_a:new"
        assert [e.value for e in md.entry_points(group="omt.plugins")] == ["omt_a:plugin"]
    else:  # 3.9: a dict of every distribution's entry points, the pinned copy's first
        tools = [e.value for e in md.entry_points()["console_scripts"] if e.name == "omt-a-tool"]
        assert tools == ["omt_a:new", "omt_a:old"]
    versions = [d.version for d in md.distributions() if d.metadata["Name"] == "omt-a"]
    assert versions == ["2.0", "1.0"]  # the main copy is listed after it (documented)


def test_unpinned_names_and_explicit_paths_are_left_to_the_other_finders(store, bubble, main_site, wheel):
    _setup(store, bubble, main_site, wheel)
    assert list(finder.FINDER.find_distributions(md.DistributionFinder.Context(name="omt-old"))) == []
    ctx = md.DistributionFinder.Context(name="omt-a", path=[str(main_site.path)])
    assert list(finder.FINDER.find_distributions(ctx)) == []
    (main_copy,) = md.distributions(name="omt-a", path=[str(main_site.path)])
    assert main_copy.version == "1.0"


def test_unpin_and_invalidate_caches(store, bubble, main_site, wheel):
    _setup(store, bubble, main_site, wheel)
    assert md.version("omt-a") == "2.0"
    finder.FINDER.cache["x"] = 1
    importlib.invalidate_caches()
    assert finder.FINDER.cache == {}
    assert md.version("omt-a") == "2.0"
    omnipkg_hook.unpin("omt-a")
    assert md.version("omt-a") == "1.0"
    assert list(finder.FINDER.find_distributions(md.DistributionFinder.Context())) == []
