"""The guard in front of the portmapper and the node listeners: caps in total and
per address, the oldest unproven connection closed to make room, proven ones
kept, and running out of descriptors met with one log line and a pause (on the
mock clock, with a listener that fails as the kernel does)."""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio
import trio.testing

from applikant.logs import EventLog
from applikant.node.guard import BACKOFF, Admission, Guard, descriptor_budget

log = EventLog("test")


def guard(total: int = 4, per_address: int = 3) -> Guard:
    return Guard("test", max_total=total, max_per_address=per_address, log=log)


async def test_caps_evict_the_oldest_unproven_connection() -> None:
    g = guard(total=4, per_address=3)
    a1, a2, a3 = (g.admit("10.0.0.1") for _ in range(3))
    assert a1 and a2 and a3 and g.total == 3
    a1.prove()
    a4 = g.admit("10.0.0.1")  # over the address's cap: a2, the oldest unproven, goes
    assert a4 is not None and a2.scope.cancel_called and not a3.scope.cancel_called
    assert g.per_address == {"10.0.0.1": 3}
    b1 = g.admit("10.0.0.2")
    assert b1 is not None and g.total == 4
    b2 = g.admit("10.0.0.2")  # the total is full: the oldest unproven of any address
    assert b2 is not None and a3.scope.cancel_called and not a1.scope.cancel_called
    assert g.total == 4
    g.release(a3)  # an evicted connection's handler ends: counted once only
    assert g.total == 4


async def test_proven_connections_are_never_evicted() -> None:
    g = guard(total=2, per_address=2)
    adms = [g.admit("127.0.0.1") for _ in range(2)]
    for adm in adms:
        assert adm is not None
        adm.prove()
    assert g.admit("127.0.0.1") is None  # nobody to push out: the newcomer is refused
    assert g.admit("10.9.9.9") is None
    assert not any(a.scope.cancel_called for a in adms if a is not None)
    g.release(adms[0])  # type: ignore[arg-type]
    assert g.admit("127.0.0.1") is not None


def test_descriptor_budget_stays_under_the_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 8 <= descriptor_budget() < soft
    assert guard(total=10**9).max_total < soft


class _Sock:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 40000 + self.n)

    def close(self) -> None:
        self.closed = True


class _Stream(trio.abc.Stream):
    def __init__(self, n: int) -> None:
        self.socket = _Sock(n)

    async def send_all(self, data: Any) -> None:
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def aclose(self) -> None:
        self.socket.close()
        await trio.lowlevel.checkpoint()


class _StarvedListener(trio.abc.Listener[Any]):
    """Hands out `pending` streams, then waits for more; accept() fails with
    EMFILE while `starved` (as the kernel's accept does)."""

    def __init__(self) -> None:
        self.pending = 0
        self.starved = False
        self.failures = 0
        self.made = 0
        self.more = trio.Event()

    def give(self, n: int = 0, *, starved: bool = False) -> None:
        self.pending += n
        self.starved = starved
        self.more.set()
        self.more = trio.Event()

    async def accept(self) -> Any:
        while not self.starved and not self.pending:
            await self.more.wait()
        await trio.lowlevel.checkpoint()
        if self.starved:
            self.failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        self.pending -= 1
        self.made += 1
        return _Stream(self.made)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_out_of_descriptors_is_one_log_line_and_a_pause(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="applikant")
    g = guard(total=1000, per_address=1000)
    listener = _StarvedListener()
    handled: list[Admission] = []

    async def handler(stream: Any, adm: Admission) -> None:
        handled.append(adm)
        if len(handled) == 1:
            adm.prove()  # a node's own link: kept
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(g.serve, [listener], handler)
        listener.give(50)
        await trio.testing.wait_all_tasks_blocked()
        assert len(handled) == 50 and g.unproven() == 49
        listener.give(starved=True)
        await trio.sleep(10)
        # unproven connections were closed to free descriptors, the proven one kept
        assert not handled[0].scope.cancel_called
        assert all(adm.scope.cancel_called for adm in handled[1:])
        assert g.total == 1
        # then, with nothing left to close, accepting pauses between tries
        assert 49 < listener.failures <= 49 + 10 / BACKOFF + 2
        listener.give(1)
        await trio.sleep(1)
        assert len(handled) == 51
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records]
    assert lines.count("out_of_descriptors") == 1
    assert lines.count("descriptors_available") == 1
    assert not any(r.exc_info for r in caplog.records)
