"""Every template compiles (a syntax error would otherwise show only on its page)."""

from __future__ import annotations

import os

import pytest

from applikant.web.render import HERE, templates

NAMES = sorted(n for n in os.listdir(os.path.join(HERE, "templates")) if n.endswith(".html"))


@pytest.mark.parametrize("name", NAMES)
def test_template_compiles(name: str) -> None:
    assert templates.get_template(name) is not None
