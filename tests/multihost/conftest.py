"""Fixtures for multi-host tests: a namespace network per test, removed after it
(also when the test fails); skipped, saying why, where namespaces cannot be made."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.netns import Network, unavailable
from tests.multihost.sites import Sites

NetFactory = Callable[..., Sites]
HOSTS = ["10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.5"]


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


def tls_cli(*args: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "tls", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<pki>/ca (the cluster's CA) with a certificate per host in <pki>/<ip>/, and
    <pki>/rogue, another CA, with one for 10.77.0.2 in <pki>/rogue-10.77.0.2/."""
    d = tmp_path_factory.mktemp("pki")
    tls_cli("init-ca", str(d / "ca"))
    for ip in HOSTS:
        tls_cli("issue", "--ca", str(d / "ca"), ip, str(d / ip))
    tls_cli("init-ca", str(d / "rogue"))
    tls_cli("issue", "--ca", str(d / "rogue"), HOSTS[0], str(d / f"rogue-{HOSTS[0]}"))
    return d


def tls_of(pki: Path, ip: str, ca: str = "ca", certdir: str | None = None) -> dict[str, str]:
    cd = pki / (certdir or ip)
    return {
        "ca": str(pki / ca / "ca.pem"),
        "cert": str(cd / f"{ip}.pem"),
        "key": str(cd / f"{ip}.key"),
    }
