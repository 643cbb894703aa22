"""pin() in code: this process, its imports, its metadata and its child processes.

    python examples/pin_in_code.py           # offline: tiny local wheels, a temporary store
    python examples/pin_in_code.py --real    # rich 13.4.2 from the package index
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys

from _demo import check, setup

import omnipkg_hook

demo = setup(sys.argv[1:])
demo.activate()
_, old = demo.bubbles

omnipkg_hook.pin(f"{demo.dist}=={old}")  # before the first import
version, served = demo.here()
check(f"pin('{demo.dist}=={old}') imports {old} from the store", served == old, served)
check("importlib.metadata agrees", md.version(demo.dist) == old, md.version(demo.dist))
check("OMNIPKG_PINS is exported for children", os.environ["OMNIPKG_PINS"] == f"{demo.dist}=={old}")

out = subprocess.run([sys.executable, "-c", demo.version_code()], capture_output=True, text=True,
                     env={**os.environ, "PYTHONPATH": demo.env.get("PYTHONPATH", "")})  # fmt: skip
check("a subprocess gets the same version", demo.served(out.stdout.split()[1]) == old, out.stdout.strip())

print()
print(omnipkg_hook.explain())
print()

try:
    omnipkg_hook.pin(f"{demo.dist}=={demo.bubbles[0]}")
except omnipkg_hook.AlreadyImportedError as e:
    check("re-pinning after the import is refused, with a hint", True, e.message)
omnipkg_hook.pin(f"{demo.dist}=={demo.bubbles[0]}", replace=True)
version, served = demo.here()
check("replace=True purges the old modules; the next import loads the new pin", served == demo.bubbles[0], served)

try:
    omnipkg_hook.pin(f"{demo.dist}==0.0.1", replace=True)
except omnipkg_hook.BubbleNotFoundError as e:
    check("a version that is not stored names the command to run", "pip-omni install" in str(e), e.hint)
