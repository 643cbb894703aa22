from __future__ import annotations

import omnipkg_hook

from .conftest import module_files


def test_pin_imports_the_stored_version(bubble, main_site, wheel):
    main_site.install(wheel("omt-a", "1.0", module_files("omt_a", "1.0")))
    bubble("omt-a==2.0", ("omt-a", "2.0", module_files("omt_a", "2.0")))
    omnipkg_hook.pin("omt-a==2.0")
    import omt_a

    assert omt_a.VERSION == "2.0"
