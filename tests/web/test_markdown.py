"""Markdown as on forges, safely: GFM features, no raw HTML or script links, relative
links and images resolved against the document's directory and ref."""

from __future__ import annotations

import pytest

from applikant.web.markdown import Base, render

BASE = Base("o/r", "feature/x", "docs/sub")


def test_gfm_features() -> None:
    html = render(
        "# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [x] done\n- [ ] open\n\n"
        "~~gone~~ https://example.org\n\n```python\nx = 1\n```\n"
    )
    assert '<h1 id="user-content-title">' in html and 'href="#user-content-title"' in html
    assert "<table>" in html and "<td>1</td>" in html
    assert html.count('type="checkbox"') == 2 and 'checked="checked"' in html
    assert "<s>gone</s>" in html and '<a href="https://example.org">' in html
    assert '<pre class="hl"><code class="language-python"><span class="n">x</span>' in html


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](vbscript:msgbox)",
        "![x](javascript:alert(1))",
        '<img src=x onerror="alert(1)">',
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
    ],
)
def test_no_markup_or_script_from_the_document(source: str) -> None:
    html = render(source, BASE)
    assert "<script" not in html and "<img src=x" not in html
    assert 'href="javascript' not in html.lower() and 'src="javascript' not in html.lower()
    assert 'href="vbscript' not in html and 'href="data:' not in html


@pytest.mark.parametrize(
    "source,expected",
    [
        ("![l](logo.png)", 'src="/o/r/raw?ref=feature%2Fx&amp;path=docs/sub/logo.png"'),
        ("![l](../img/a.png)", 'src="/o/r/raw?ref=feature%2Fx&amp;path=docs/img/a.png"'),
        ("![l](/top.png)", 'src="/o/r/raw?ref=feature%2Fx&amp;path=top.png"'),
        ("[g](guide.md)", 'href="/o/r/blob?ref=feature%2Fx&amp;path=docs/sub/guide.md"'),
        ("[g](guide.md#Usage)", 'path=docs/sub/guide.md#user-content-Usage"'),
        ("[d](../)", 'href="/o/r/tree?ref=feature%2Fx&amp;path=docs"'),
        ("[x](../../../../etc/passwd)", 'href="#"'),
        ("[s](#install)", 'href="#user-content-install"'),
        ("[e](https://example.org/a.md)", 'href="https://example.org/a.md"'),
        ("[m](mailto:a@example.org)", 'href="mailto:a@example.org"'),
    ],
)
def test_relative_links_and_images(source: str, expected: str) -> None:
    assert expected in render(source, BASE)
