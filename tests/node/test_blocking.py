"""The blocking driver stays light: what `as` and `ah` import on every git fetch."""

from __future__ import annotations

import subprocess
import sys


def test_ephemeral_path_imports_neither_trio_pydantic_nor_typer() -> None:
    code = (
        "import sys\n"
        "from applikant.node import blocking\n"
        "from applikant import envconfig\n"
        "heavy = sorted(m for m in ('trio', 'pydantic', 'typer', 'logging', 'dataclasses', "
        "'typing', 'socket', 'hashlib') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_ephemeral_names_are_unique_within_a_process() -> None:
    from applikant.node.blocking import ephemeral_name

    first = ephemeral_name("as", "af@localhost")
    second = ephemeral_name("as", "af@localhost")
    assert first != second and first.startswith("as_") and first.endswith("@" + first.split("@")[1])
    assert "." not in first.split("@")[1]  # short, like the peer
    assert "." in ephemeral_name("as", "af@git.example.org").split("@")[1]
