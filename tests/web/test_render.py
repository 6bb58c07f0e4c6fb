"""Every template compiles (a syntax error would otherwise show only on its page)."""

from __future__ import annotations

import os

import pytest

from applikant.web.render import HERE, templates

NAMES = sorted(n for n in os.listdir(os.path.join(HERE, "templates")) if n.endswith(".html"))


@pytest.mark.parametrize("name", NAMES)
def test_template_compiles(name: str) -> None:
    assert templates.get_template(name) is not None


# The frame and the code pages write their own symbols as character references:
# a page whose content is ASCII then stays ASCII, and turning it into bytes is a
# copy (a single other character makes it a per-character encode, about 1 ms per
# megabyte, on every request).
ASCII_ONLY = [
    "base.html",
    "repo.html",
    "_repohead.html",
    "_refpick.html",
    "_commitbar.html",
    "tags.html",
    "blob.html",
    "commits.html",
    "commit.html",
    "blame.html",
    "compare.html",
]


@pytest.mark.parametrize("name", ASCII_ONLY)
def test_template_is_ascii(name: str) -> None:
    with open(os.path.join(HERE, "templates", name), encoding="utf-8") as f:
        text = f.read()
    assert text.isascii(), sorted({c for c in text if not c.isascii()})
