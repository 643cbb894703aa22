"""The examples run as printed (offline variant): every line they print is a checked fact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import needs_pth

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NETWORK = ["rich_switching.py"]  # needs the package index: tests/test_network_rich.py runs it
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_") and p.name not in NETWORK)


@needs_pth
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs_and_every_check_passes(script, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("OMNIPKG_PINS", "OMNIPKG_STORE", "PYTHONPATH")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "FAIL"))]
    assert checks and all(line.startswith("ok ") for line in checks), proc.stdout
    assert not list(tmp_path.glob("pip-omni-example-*"))  # cleaned up after itself


def test_there_is_an_example_per_scenario():
    assert SCRIPTS == ["ci_pins.py", "pin_at_startup.py", "pin_in_code.py", "switch_with_using.py"]
    assert all((EXAMPLES / name).exists() for name in NETWORK)
