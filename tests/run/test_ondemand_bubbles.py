"""The bubbles a run makes on demand: one `pip-omni install --bubble` per interpreter, with all
of that interpreter's requirements, which it makes at once (omnipkg_pip/run/ondemand.py)."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from test_interpreters import need  # noqa: E402

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"
OTHER = "3.12" if HERE != "3.12" else "3.13"

CHECK = "import sys, lib\nprint('lib', lib.V, 'on', '%d.%d' % sys.version_info[:2])\n"


def _tables(stderr: str) -> int:
    return sum(1 for line in stderr.splitlines() if line.split()[:3] == ["Package", "Version", "Where"])


def test_a_matrix_makes_each_interpreters_bubbles_in_one_install(omni_venv, libs, wheelhouse, tmp_path):
    need(OTHER)
    omni_venv.cli("python", "adopt", OTHER)
    (tmp_path / "check.py").write_text(CHECK)
    proc = omni_venv.run("run", "--matrix", "lib=1.0,2.0,3.0", "--python", f"{HERE},{OTHER}", "--no-index",
                         "-f", str(wheelhouse), "--json", "--", "check.py", cwd=tmp_path)
    # one install per interpreter (one table each, three bubbles made at once in it), not one per bubble
    assert _tables(proc.stderr) == 2, proc.stderr
    assert proc.stderr.count("pip-omni: make 3 bubbles ...") == 2
    created = [line.split() for line in proc.stderr.splitlines() if line.startswith("lib ")]
    assert sorted(c[1] for c in created) == ["1.0", "1.0", "2.0", "2.0", "3.0", "3.0"]
    assert all(c[2:4] == ["bubble", "created"] for c in created)
    rows = json.loads(proc.stdout)
    assert sorted((r["cell"], r["python"], r["exit"]) for r in rows) == sorted(
        (f"lib={v}", py, 0) for v in ("1.0", "2.0", "3.0") for py in (HERE, OTHER))


def test_one_bubble_that_cannot_be_made_is_the_one_named(omni_venv, libs, wheelhouse, tmp_path):
    (tmp_path / "check.py").write_text(CHECK)
    proc = omni_venv.run("run", "--matrix", "lib=1.0,9.9,3.0", "--no-index", "-f", str(wheelhouse), "check.py",
                         check=False, cwd=tmp_path)
    assert proc.returncode == 1
    # the cells whose bubbles were made ran; the other is reported failed, with the error
    table = proc.stdout[proc.stdout.index("Cell"):].splitlines()
    assert [row.split()[0:3:2] for row in table[1:]] == [["lib=1.0", "0"], ["lib=9.9", "1"], ["lib=3.0", "0"]]
    assert table[2].endswith("FAILED") and sum(row.endswith("FAILED") for row in table) == 1
    assert "==== lib=9.9" in proc.stdout and "pip-omni: not run: the bubble 'lib==9.9' was not made" in proc.stdout
    assert _tables(proc.stderr) == 1  # the install's table: two made, one failed
    last = proc.stderr.strip().splitlines()
    error = next(ln for ln in last if ln.startswith("pip-omni: error: could not make the bubbles"))
    assert "lib==9.9" in error and "lib==1.0" not in error and "lib==3.0" not in error
    hint = last[last.index(error) + 1]
    assert "pip-omni install --bubble --python " in hint and hint.endswith(" lib==9.9")  # only the failed one
    # the other two were made by that same install
    proc = omni_venv.run("run", "--matrix", "lib=1.0,3.0", "--offline", "--stream", "check.py", cwd=tmp_path)
    assert f"lib 1.0 on {HERE}" in proc.stdout and f"lib 3.0 on {HERE}" in proc.stdout
