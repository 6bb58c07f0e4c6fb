"""The package's public names: each one resolves to its module's object, on first
use only, so that what `as` and `ah` import stays what they use."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import applikant.node as node_pkg


def test_every_public_name_resolves_to_its_module_object() -> None:
    assert set(node_pkg.__all__) == set(node_pkg._PUBLIC)
    for name, (module, attr) in node_pkg._PUBLIC.items():
        expected = getattr(importlib.import_module(f"applikant.node.{module}"), attr)
        assert getattr(node_pkg, name) is expected, name
    assert set(node_pkg.__all__) <= set(dir(node_pkg))


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        node_pkg.no_such_thing  # noqa: B018


def test_names_are_imported_on_first_use_only() -> None:
    code = (
        "import sys\n"
        "import applikant.node as n\n"
        "before = sorted(m for m in sys.modules if m.startswith('applikant.node.'))\n"
        "n.NodeDown, n.blocking_call\n"
        "light = 'trio' not in sys.modules\n"
        "n.open_node\n"
        "print(before, light, 'trio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True True"
