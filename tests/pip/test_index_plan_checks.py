"""writers/indexplan.py's last check, each requirement on a dist alone, reads only the
requirements that apply: a marker or an extra that excludes a requirement leaves it out, as
pip's resolver leaves it out, so the plan stays pip's own and no pip runs."""

from __future__ import annotations

import pytest
from simple_index import index, venv  # noqa: F401 (fixtures)
from test_index_plan import _assert_without_pip, _install


@pytest.mark.parametrize("excluded", ['omt-kb<1; python_version < "3"', 'omt-kb<2; extra == "feat"'],
                         ids=["marker", "extra not asked for"])
def test_a_requirement_that_does_not_apply_is_not_checked(venv, index, excluded):
    index.add("omt-ka", "1.0", requires=["omt-kb>=1", excluded])
    for v in ("0.5", "1.0", "2.0"):
        index.add("omt-kb", v)

    proc = _install(venv, index, "omt-ka==1.0")

    got = _assert_without_pip(venv, index, "omt-ka==1.0", "omt-ka", proc)
    assert {(n, v) for n, v, _u in got} == {("omt-ka", "1.0"), ("omt-kb", "2.0")}
