"""`pip-omni run` with real rich versions from the index: a PEP 723 script and a matrix."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.network

SCRIPT = """\
# /// script
# dependencies = ["rich==13.4.2"]
# ///
import importlib.metadata, os, rich
from rich.text import Text
print(importlib.metadata.version("rich"), Text("x").plain, rich.__file__.startswith(os.environ["OMNIPKG_STORE"]))
"""

CHECK = """\
import importlib.metadata, os, sys
have = importlib.metadata.version("rich")
sys.exit(0 if "rich==" + have in os.environ.get("OMNIPKG_PINS", "") else 3)
"""


def test_real_rich_script_and_matrix(network_venv, tmp_path, runtime_dir):
    (tmp_path / "tool.py").write_text(SCRIPT)
    proc = network_venv.run("run", "tool.py", cwd=tmp_path)
    assert proc.stdout == "13.4.2 x True\n"
    assert network_venv.run("run", "--offline", "tool.py", cwd=tmp_path).stdout == proc.stdout  # warm
    (tmp_path / "check.py").write_text(CHECK)
    # this test's runtime directory: the cell zygote the run keeps is stopped after the test
    proc = network_venv.run("run", "--matrix", "rich=13.4.2,13.5.3", "--json", "check.py", cwd=tmp_path,
                            env={"OMNIPKG_RUNTIME_DIR": runtime_dir})
    rows = json.loads(proc.stdout)
    assert [(r["cell"], r["exit"]) for r in rows] == [("rich=13.4.2", 0), ("rich=13.5.3", 0)]
