"""Pin at interpreter start-up with OMNIPKG_PINS: no code change in the program that runs.

    python examples/pin_at_startup.py           # offline: tiny local wheels, a temporary store
    python examples/pin_at_startup.py --real    # rich 13.5.3 / 13.4.2 from the package index

Each line printed is a fact checked in a fresh interpreter.
"""

from __future__ import annotations

import sys

from _demo import check, setup

demo = setup(sys.argv[1:])
new, old = demo.bubbles

if demo.main_version:
    version, served = demo.child()
    check(f"without OMNIPKG_PINS {demo.module} comes from the main environment", served.endswith("(main)"),
          f"{version}, {served}")  # fmt: skip

for v in (new, old):
    version, served = demo.child({"OMNIPKG_PINS": f"{demo.dist}=={v}"})
    check(f"OMNIPKG_PINS={demo.dist}=={v}: import and importlib.metadata agree", (version, served) == (v, v),
          f"metadata {version}, imported from {served}")  # fmt: skip

version, served = demo.child({"OMNIPKG_PINS": f"{demo.dist}>={old},<{new}"})
check("a range picks the best stored version inside it", served == old, served)

import subprocess  # noqa: E402

out = subprocess.run([sys.executable, "-c", "print('started')"], capture_output=True, text=True,
                     env={**demo.env, "OMNIPKG_PINS": f"{demo.dist}=1"})  # fmt: skip
check("a bad OMNIPKG_PINS prints one line and Python still starts", out.stdout == "started\n"
      and out.stderr.count("\n") == 1, out.stderr.strip())  # fmt: skip

out = subprocess.run([sys.executable, "-c", "print('started')"], capture_output=True, text=True,
                     env={**demo.env, "OMNIPKG_PINS": f"{demo.dist}==0.0.1", "OMNIPKG_STRICT": "1"})  # fmt: skip
check("OMNIPKG_STRICT=1 makes an unsatisfiable pin fatal", out.returncode == 1, out.stderr.strip())
