"""Fixtures for multi-host tests: a namespace network per test, removed after it
(also when the test fails); skipped, saying why, where namespaces cannot be made."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.netns import Network, unavailable
from tests.multihost.sites import Sites

NetFactory = Callable[..., Sites]


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[NetFactory]:
    """make(labels, tick_time=...) -> Sites on a fresh Network; one per test."""
    reason = unavailable()
    if reason is not None:
        print(f"\nmultihost tests SKIPPED: {reason}", file=sys.stderr)
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    made: list[Network] = []

    def make(labels: list[str], **kw: object) -> Sites:
        net = Network(labels, tmp_path)
        made.append(net)
        return Sites(net, tmp_path, **kw)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for net in made:
            net.close()
