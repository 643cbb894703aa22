"""writers/indexplan.py's last check, each requirement on a dist alone, reads only the
requirements that apply: a marker or an extra that excludes a requirement leaves it out, as
pip's resolver leaves it out, so the plan stays pip's own and no pip runs."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("url", [
    "https://files.example/packages/ab/cd/rich-13.4.2-py3-none-any.whl",
    "http://h:8080/a/b.whl;param", "https://h/a/../b.whl", "https://h/a/./b.whl", "https://h", "https://h/",
    "https://h/a/b%20c.whl", "https://h/a/b%2Fc.whl", "https://h/a/b.whl?x=1", "https://h/a/b.whl#sha256=00",
    "https://h//b.whl", "https://user@h/b.whl", "https://h/a/b c.whl", "HTTPS://h/b.whl", "../../x/b.whl",
    "/abs/b.whl", "b.whl", "https://h/a/b\u00e9.whl", "https://h/a/b.whl\n", "file:///tmp/b.whl",
])
def test_the_shortcut_for_plain_urls_gives_what_urljoin_and_urlsplit_give(url):
    """PEP 691 pages give hundreds of absolute URLs; those that skip urljoin and urlsplit must
    come out exactly as through them, and any other goes through them."""
    from urllib.parse import unquote, urljoin, urlsplit

    from omnipkg_pip.writers import indexplan

    page = "https://pypi.example/simple/rich/"
    body = json.dumps({"meta": {"api-version": "1.0"}, "files": [{"url": url, "hashes": {}}]}).encode()
    (raw,) = indexplan.parse_page(body, "application/vnd.pypi.simple.v1+json", page)
    assert raw["url"] == urljoin(page, url)
    try:
        name = indexplan._filename(raw["url"])
    except indexplan.Unsure:
        name = None
    expected = unquote(urlsplit(raw["url"]).path.rstrip("/").rsplit("/", 1)[-1])
    unsafe = "/" in expected or "\\" in expected or "\0" in expected or expected.startswith(".")
    assert name == (None if unsafe else expected)
