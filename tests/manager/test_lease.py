"""The lease between am sharing a PostgreSQL store (applikant.manager.lease), and
the fencing of writes by the store (store/postgres.py), on a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from applikant.manager.lease import Lease, current
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.postgres import LeaseLost, PostgresBackend
from harness.postgres import PgServer
from harness.wait import wait_until
from tests.manager.conftest import FAST

pytestmark = pytest.mark.slow


@pytest.fixture
def url(pg_server: PgServer) -> Iterator[str]:
    made = pg_server.create_database(migrated=True)
    yield made
    pg_server.drop_database(made)


def fenced_store(url: str, epoch: int | None) -> Store:
    return Store(url, passwords=FAST, backend=PostgresBackend(lease=epoch, timeout=2.0))


def holding(url: str, holder: str, timeout: float = 2.0) -> Lease:
    lease = Lease(url, holder, timeout=timeout)
    lease.connect()
    assert lease.try_acquire()
    lease.take()
    return lease


def still_held(url: str) -> bool:
    """Whether the newest lease's session still holds its lock."""
    probe = Lease(url, "probe")
    probe.connect()
    try:
        info = probe.info()
        return info is not None and info.held
    finally:
        probe.close()


def test_one_holder_at_a_time_and_the_next_takes_the_next_epoch(url: str) -> None:
    first = holding(url, "am@one")
    second = Lease(url, "am@two")
    second.connect()
    try:
        assert first.epoch == 1 and first.check()
        assert not second.try_acquire()
        info = first.info()
        assert info is not None and (info.epoch, info.holder, info.held) == (1, "am@one", True)
        first.close()  # the session ends: the lock goes with it (at once, server-side)
        wait_until(second.try_acquire, timeout=10, what="the lock to be free")
        assert second.take() == 2
        info = current(second.conn)
        assert info is not None and (info.holder, info.held) == ("am@two", True)
    finally:
        first.close()
        second.close()


def test_a_fenced_store_writes_nothing(url: str) -> None:
    first = holding(url, "am@one")
    store = fenced_store(url, first.epoch)
    try:
        store.users.add("alice", actor=SYSTEM)
        entries = len(store.audit.query())
        # Its lock session dies (the am went silent): no write, even before a takeover.
        first.close()
        wait_until(lambda: not still_held(url), timeout=10, what="the old session gone")
        with pytest.raises(LeaseLost, match="no longer holds the lease"):
            store.users.add("bob", actor=SYSTEM)
        # Another am takes over: the old epoch stays refused.
        second = holding(url, "am@two")
        with pytest.raises(LeaseLost):
            store.repos.create("alice/x", actor=SYSTEM)
        with pytest.raises(LeaseLost):
            store.keys.touch("SHA256:x")  # not even an untracked update
        assert [u.login for u in store.users.all()] == ["alice"]
        assert len(store.audit.query()) == entries
        # The new holder writes, and its entries carry its epoch.
        with fenced_store(url, second.epoch) as new:
            new.users.add("carol", actor=SYSTEM)
            assert [e.action for e in new.audit.query(limit=1)] == ["user.add"]
            rows = new.core.connection.execute("SELECT lease FROM audit_log ORDER BY id").fetchall()
            assert [r[0] for r in rows] == [1, 2]
        second.close()
    finally:
        first.close()
        store.close()


def test_a_takeover_waits_for_the_write_in_flight(url: str) -> None:
    first = holding(url, "am@one")
    store = fenced_store(url, first.epoch)
    second = Lease(url, "am@two", timeout=5.0)
    second.connect()
    in_tx, release = threading.Event(), threading.Event()
    taken: list[int] = []

    def write() -> None:
        with store.transaction(SYSTEM):
            store.users.add("alice", actor=SYSTEM)
            in_tx.set()
            release.wait(10)

    writer = threading.Thread(target=write)
    try:
        writer.start()
        assert in_tx.wait(10)
        first.close()  # the lease is free, but the write holds the write lock
        wait_until(second.try_acquire, timeout=10, what="the lock to be free")
        taker = threading.Thread(target=lambda: taken.append(second.take()))
        taker.start()
        time.sleep(0.5)
        assert taken == []  # waiting for the write in flight
        release.set()
        writer.join(10)
        taker.join(10)
        assert taken == [2]
        info = second.info()
        high = store.core.connection.execute("SELECT max(id) FROM audit_log").fetchone()[0]
        assert info is not None and info.audit_high == high  # the write is before the fence
    finally:
        release.set()
        writer.join(10)
        second.close()
        first.close()
        store.close()


def test_a_silent_holder_loses_the_lock_after_its_timeout(url: str) -> None:
    silent = holding(url, "am@silent", timeout=1.0)
    standby = Lease(url, "am@standby", timeout=1.0)
    standby.connect()
    try:
        assert not standby.try_acquire()
        # The holder stops touching its session (a stopped am): the server ends it.
        wait_until(standby.try_acquire, timeout=20, what="the standby to get the lock")
        assert standby.take() == 2
        with pytest.raises(Exception, match=r"idle-session timeout|closed|terminat"):
            silent.check()
    finally:
        silent.close()
        standby.close()
