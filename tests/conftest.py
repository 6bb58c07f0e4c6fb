"""Shared fixtures: every process a test starts is stopped when it ends.

The layers: a test that starts daemons (a portmapper, am, af, aw, ab, sshd, a
browser, network namespaces) or drives the `applikant` command line process by
process is end-to-end and marked `slow`; the rest is the unit layer that
`make test-fast` runs (`pytest -m "not slow"`). A test is marked here when it
uses one of the fixtures below that start daemons; a module that starts
processes itself says `pytestmark = pytest.mark.slow`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import postgres
from harness.cluster import Cluster

#: Fixtures that start daemons: whoever uses one (directly or through another
#: fixture) is an end-to-end test.
DAEMON_FIXTURES = frozenset(
    {
        "cluster",  # a portmapper and nodes (below)
        "am_cluster",  # tests/manager: a portmapper for am, then am itself
        "site",  # a whole suite: GitSite, BuildSite, WebSite
        "own_site",
        "sites",  # tests/multihost: hosts made of network namespaces
        "deploy",
        "sshd",  # a real OpenSSH server
        "browser",  # headless Chromium
        "pg_server",  # a PostgreSQL server (the store tests' `postgresql` half)
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if DAEMON_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


#: The backends every store test runs on; PostgreSQL needs a server (slow).
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a store lives: a SQLite file, or the URL of a fresh PostgreSQL
    database already at the current schema (one server per session)."""
    if request.param == "sqlite":
        yield str(tmp_path / "am.sqlite3")
        return
    server = request.getfixturevalue("pg_server")
    url = server.create_database(migrated=True)
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[postgres.PgServer]:
    """One PostgreSQL server for the whole session (initdb in a temporary
    directory, run as an unprivileged user on a free loopback port); tests take
    a fresh database each (PgServer.create_database). Skipped, saying why, where
    no server can be started."""
    reason = postgres.unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests need a server: {reason}")
    server = postgres.PgServer.start_new()
    try:
        yield server
    finally:
        server.stop()
