"""Fixtures for the manager tests: a store on each backend (a real SQLite file,
and a fresh database on a real PostgreSQL server), and real SSH keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Event, Store
from harness.am import Am
from harness.cluster import Cluster
from tests.conftest import BACKENDS
from tests.manager.helpers import RealKeys

FAST = Passwords(fast=True)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def store(db: str, events: list[Event]) -> Iterator[Store]:
    s = Store(db, on_change=events.append, passwords=FAST)
    yield s
    s.close()


@pytest.fixture(scope="session")
def real_keys(tmp_path_factory: pytest.TempPathFactory) -> RealKeys:
    return RealKeys(tmp_path_factory.mktemp("sshkeys"))


@pytest.fixture
def alice(store: Store) -> str:
    return store.users.add("alice", actor=SYSTEM, password="alice-password").id


@pytest.fixture
def bob(store: Store) -> str:
    return store.users.add("bob", actor=SYSTEM).id


@pytest.fixture
def root(store: Store) -> str:
    return store.users.add("root", actor=SYSTEM, is_admin=True).id


# ---- am as a real process (service, hook and CLI tests) ----------------------


@pytest.fixture(scope="module")
def am_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster (config, portmapper) shared by one test module."""
    c = Cluster(tmp_path_factory.mktemp("amcluster"))
    try:
        c.start_portmapper()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def am(request: pytest.FixtureRequest, am_cluster: Cluster) -> Iterator[Am]:
    """am running on a real SQLite file, then on a PostgreSQL database, each
    shared by one test module: tests use names of their own."""
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_server").create_database()
    daemon = Am(am_cluster, db=url).start()
    try:
        yield daemon
    finally:
        daemon.stop()
        if url is not None:
            request.getfixturevalue("pg_server").drop_database(url)
