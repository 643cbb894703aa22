"""Pinning in CI: run the same test command against several versions with OMNIPKG_PINS.

    python examples/ci_pins.py           # offline: tiny local wheels, a temporary store
    python examples/ci_pins.py --real    # rich 13.5.3 / 13.4.2 from the package index

A CI job sets the variable (or points it at a pins file, ``OMNIPKG_PINS=@ci/pins.txt``) and
``OMNIPKG_STRICT=1`` so a missing bubble fails the job instead of testing the wrong version:

    # .github/workflows/test.yml (sketch)
    #   strategy: {matrix: {rich: ["13.5.3", "13.4.2"]}}
    #   - run: pip-omni install "rich==${{ matrix.rich }}"
    #   - run: pytest
    #     env: {OMNIPKG_PINS: "rich==${{ matrix.rich }}", OMNIPKG_STRICT: "1"}

Here the "test suite" is a small script run once per matrix entry; pytest and pytest-xdist
workers inherit the variable the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from _demo import check, setup

demo = setup(sys.argv[1:])

suite = f"""
import importlib.metadata as md, {demo.module} as m
expected = __import__("os").environ["EXPECTED"]
assert md.version({demo.dist!r}) == expected, (md.version({demo.dist!r}), expected)
assert "/dists/{demo.dist}/" + expected + "/" in m.__file__, m.__file__
print("suite passed against", expected)
"""

for version in demo.bubbles:
    env = {**demo.env, "OMNIPKG_PINS": f"{demo.dist}=={version}", "OMNIPKG_STRICT": "1", "EXPECTED": version}
    out = subprocess.run([sys.executable, "-c", suite], env=env, capture_output=True, text=True)
    check(f"matrix entry {demo.dist}=={version}", out.returncode == 0, (out.stdout or out.stderr).strip())

with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    f.write(f"# pins of this CI job\n{demo.dist}=={demo.bubbles[1]}\n")
env = {**demo.env, "OMNIPKG_PINS": f"@{f.name}", "OMNIPKG_STRICT": "1", "EXPECTED": demo.bubbles[1]}
out = subprocess.run([sys.executable, "-c", suite], env=env, capture_output=True, text=True)
check("OMNIPKG_PINS=@pins.txt", out.returncode == 0, (out.stdout or out.stderr).strip())
os.unlink(f.name)

env = {**demo.env, "OMNIPKG_PINS": f"{demo.dist}==0.0.1", "OMNIPKG_STRICT": "1", "EXPECTED": "0.0.1"}
out = subprocess.run([sys.executable, "-c", suite], env=env, capture_output=True, text=True)
check("a version that is not stored fails the job (strict), saying what to run", out.returncode == 1
      and "pip-omni install" in out.stderr, out.stderr.strip().splitlines()[0])  # fmt: skip
