"""Switch versions inside one process with using(): main, then two bubbles, then main again.

    python examples/switch_with_using.py           # offline: tiny local wheels, a temporary store
    python examples/switch_with_using.py --real    # main rich + bubbles 13.5.3 and 13.4.2

This is the scenario of omnipkg's loader docs (``omnipkgLoader`` is accepted as an alias).
What it cannot do, and this script shows: objects made inside a block belong to that
block's version (``isinstance`` against another version's class is False); it is not
thread isolation. For that, run the code in a worker (omnipkg_hook.workers).
"""

from __future__ import annotations

import importlib.metadata as md
import sys

from _demo import check, setup

import omnipkg_hook

demo = setup(sys.argv[1:])
demo.activate()
new, old = demo.bubbles

if demo.main_version:
    version, served = demo.here()
    check("outside any block: the main environment's version", served.endswith("(main)"), served)
outer = sys.modules.get(demo.module)

with omnipkg_hook.using(f"{demo.dist}=={new}"):
    version, served = demo.here()
    check(f"using('{demo.dist}=={new}')", (version, served) == (new, new), f"{version}, {served}")
    inner_module = sys.modules[demo.module]
    with omnipkg_hook.omnipkgLoader(f"{demo.dist}=={old}"):
        version, served = demo.here()
        check(f"nested omnipkgLoader('{demo.dist}=={old}')", (version, served) == (old, old), f"{version}, {served}")
    version, served = demo.here()
    check("the nested block restored the outer block's version", served == new and sys.modules[demo.module]
          is inner_module, served)  # fmt: skip

check("after the blocks: the very same module objects as before", sys.modules.get(demo.module) is outer)
if demo.main_version:
    check("and metadata says main's version again", md.version(demo.dist) == demo.main_version, md.version(demo.dist))

if demo.module == "omni_greeting":  # the limit, shown rather than told
    import omni_greeting

    with omnipkg_hook.using(f"{demo.dist}=={new}"):
        import omni_greeting as inside

        made_inside = inside.Greeter()
        print("     ", made_inside.hello())
    check("an object made inside is not an instance of the outer version's class",
          not isinstance(made_inside, omni_greeting.Greeter))  # fmt: skip

try:
    with omnipkg_hook.using(f"{demo.dist}=={new}"):
        raise RuntimeError("boom")
except RuntimeError:
    pass
check("a block that raises restores everything too", sys.modules.get(demo.module) is outer)
