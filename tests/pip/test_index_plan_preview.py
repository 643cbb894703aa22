"""``pip-omni install --dry-run --bubble`` previews a cold bubble through the index plan, as
the bubble would be made: the version and dists pip would pick, no pip run, nothing written
to the store (a wheel read for its METADATA goes to a temporary directory outside it)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import store_state
from simple_index import index, venv  # noqa: F401 (fixtures)
from test_index_plan import _env, _pip_commands


def _preview(venv, index, req: str, **env) -> list:
    proc = venv.run("install", "--dry-run", "--bubble", "--json", req, env=_env(index, **env))
    return [(r["name"], r["version"], r["action"], r["reason"]) for r in json.loads(proc.stdout)]


def test_a_cold_preview_is_the_plan_without_pip(venv, index):
    index.add("omt-pa", "1.0", requires=["omt-pb>=1"])
    index.add("omt-pa", "2.0", requires=["omt-pb>=1", "omt-pc"])  # no PEP 658 file: its wheel is read
    for n, v in (("omt-pb", "1.0"), ("omt-pb", "1.5"), ("omt-pc", "3.0")):
        index.add(n, v)
    rows = _preview(venv, index, "omt-pa")

    assert rows == [("omt-pa", "2.0", "would create", "--bubble; 3 dists")]
    assert _pip_commands(venv) == []  # no pip run
    store = Path(venv.env["OMNIPKG_STORE"])
    assert store_state(store) == {}  # nothing written to the store (no object, dist, bubble, tmp entry)
    # pip's own preview, the index plan off, says the same
    assert _preview(venv, index, "omt-pa", OMNIPKG_INDEX_PLAN="0") == rows
    assert _pip_commands(venv) != []
