"""heap.keep_freed_memory: glibc's thresholds set once per process, unless the
environment sets them (then those rule), and nothing elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from applikant.node import heap

SCRIPT = (
    "from applikant.node import heap; print(heap.keep_freed_memory(), heap.keep_freed_memory())"
)


def _run(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in heap._ENV}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not heap._is_glibc(), reason="glibc only")
def test_set_once_on_glibc() -> None:
    assert _run() == "True True"


@pytest.mark.skipif(not heap._is_glibc(), reason="glibc only")
@pytest.mark.parametrize("name", heap._ENV)
def test_the_environment_rules(name: str) -> None:
    value = "glibc.malloc.trim_threshold=1000000" if name == "GLIBC_TUNABLES" else "1000000"
    assert _run(**{name: value}) == "False False"


def test_not_glibc_nothing_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_done", False)
    monkeypatch.setattr(heap.os, "confstr", lambda name: "musl 1.2")
    assert heap.keep_freed_memory() is False
    monkeypatch.setattr(heap.os, "confstr", lambda name: (_ for _ in ()).throw(ValueError()))
    assert heap.keep_freed_memory() is False
