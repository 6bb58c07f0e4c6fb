"""The daemons' am client against real nodes: a real am process (restarted under
it), node-layer errors mapped to the client's two, and am's names followed to
another node, with and without the old node going down. The client runs on a
trio node in the test process; its log lines are watched as they come."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from applikant import envconfig
from applikant.amclient import PROBE_NAME, AmClient, AmError, AmRefused, AmUnavailable, am_error
from applikant.node.errors import (
    CallTimeout,
    NodeDown,
    NoSuchName,
    Refused,
    RemoteError,
    ServiceError,
)
from applikant.node.node import CallContext, Node, NodeDownEvent, open_node
from harness.am import Am
from harness.cluster import Cluster

# ---- helpers ----------------------------------------------------------------------


class LogWatch(logging.Handler):
    """The events one component logs, and a way to wait for them (no polling)."""

    def __init__(self, component: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(f"applikant.{component}")
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed: trio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append((record.getMessage(), dict(getattr(record, "fields", {}))))
        if self._changed is not None:
            self._changed.set()

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]

    async def wait_for(self, event: str, count: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        """The fields of the `count`-th `event`, once it is logged."""
        with trio.fail_after(timeout):
            while len(self.named(event)) < count:
                self._changed = trio.Event()
                await self._changed.wait()
        return self.named(event)[count - 1]


@pytest.fixture
def watch() -> Iterator[Any]:
    """watch("ab") -> a LogWatch on that component's log, removed at the end."""
    made: list[tuple[LogWatch, int]] = []

    def start(component: str) -> LogWatch:
        w = LogWatch(component)
        made.append((w, w.logger.level))
        w.logger.addHandler(w)
        w.logger.setLevel(logging.DEBUG)
        return w

    yield start
    for w, level in made:
        w.logger.removeHandler(w)
        w.logger.setLevel(level)


@asynccontextmanager
async def node(cluster: Cluster, name: str, cookie: bytes | None = None) -> AsyncIterator[Node]:
    raw = envconfig.load_raw(str(cluster.config))
    async with open_node(
        cluster.node(name), cookie or envconfig.cookie(raw), envconfig.dist_settings(raw)
    ) as n:
        yield n


@asynccontextmanager
async def running(client: AmClient) -> AsyncIterator[AmClient]:
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        nursery.cancel_scope.cancel()


async def whoami(ctx: CallContext, args: Any) -> str:
    return ctx.node.name


async def nap(ctx: CallContext, args: Any) -> str:
    await trio.sleep(float(args))
    return "slept"


async def refuse(ctx: CallContext, args: Any) -> None:
    raise ServiceError("no such thing", kind="not_found")


FAKE_AM = {"whoami": whoami, "nap": nap, "refuse": refuse}


async def fake_am(
    cluster: Cluster, name: str, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED
) -> None:
    """A node serving am's probe name with FAKE_AM's methods, until cancelled."""
    async with node(cluster, name) as n:
        await n.register_global(PROBE_NAME, FAKE_AM)
        task_status.started(n)
        await trio.sleep_forever()


@pytest.fixture
def am(cluster: Cluster) -> Am:
    cluster.start_portmapper()
    return Am(cluster).start()


# ---- the mapping, one error at a time ------------------------------------------------


def test_node_errors_map_to_two_kinds_in_words() -> None:
    refused = am_error(RemoteError("not_found", "no user bob"), 10)
    assert isinstance(refused, AmRefused) and isinstance(refused, RemoteError)
    assert (refused.kind, refused.message, str(refused)) == (
        "not_found",
        "no user bob",
        "not_found: no user bob",
    )
    cases = {
        NoSuchName("no service is registered as am_user_db"): (
            "not_running",
            "the manager (am) is not running",
        ),
        CallTimeout("x"): ("timeout", "the manager (am) did not answer within 2.5 s"),
        NodeDown("could not connect to am@h\nsecond line"): (
            "unreachable",
            "the manager (am) cannot be reached (could not connect to am@h)",
        ),
        Refused("am@h refused the connection: bad cookie"): (
            "unreachable",
            "the manager (am) cannot be reached (am@h refused the connection: bad cookie)",
        ),
        # A fenced am (it lost its lease to a standby) answers so: like an am away.
        RemoteError("unavailable", "the manager (am) cannot serve now: lost the lease"): (
            "unavailable",
            "the manager (am) cannot serve now: lost the lease",
        ),
    }
    for exc, (reason, words) in cases.items():
        mapped = am_error(exc, 2.5)
        assert isinstance(mapped, AmUnavailable) and isinstance(mapped, AmError)
        assert (mapped.reason, mapped.kind, str(mapped), mapped.message) == (
            reason,
            "unavailable",
            words,
            words,
        )


async def test_a_refusal_escaping_a_handler_reaches_its_caller_as_is(cluster: Cluster) -> None:
    """af's handlers let some of am's refusals through: their callers see am's words."""
    cluster.start_portmapper()

    async def relay(ctx: CallContext, args: Any) -> None:
        raise AmRefused("forbidden", "alice may not read team/p")

    async with node(cluster, "relay") as relay_node, node(cluster, "asker") as asker:
        relay_node.register_local("relay", {"go": relay})
        with pytest.raises(RemoteError) as caught:
            await asker.call("relay", "go", node=relay_node.name, timeout=5)
    assert (caught.value.kind, caught.value.message) == ("forbidden", "alice may not read team/p")


# ---- against a real am ------------------------------------------------------------------


async def test_connects_to_am_calls_it_and_logs_as_its_component(
    am: Am, cluster: Cluster, watch: Any
) -> None:
    log, af_log = watch("ab"), watch("af")
    async with node(cluster, "abtest") as me:
        # the first seed is not running: the next one is tried
        client = AmClient(me, [cluster.node("nobody"), am.node], component="ab", retry=0.1)
        connected: list[str | None] = []

        async def on_connect() -> None:
            connected.append(client.am)

        client.on_connect(on_connect)
        assert not client.up
        async with running(client):
            fields = await log.wait_for("am_connected")
            assert fields == {"am": am.node, "connects": 1}
            assert client.up and client.am == am.node and connected == [am.node]
            counts = await client.call("am_repo_db", "counts", {"actor": "system"})
            assert isinstance(counts, dict) and "users" in counts
            with pytest.raises(AmRefused) as refused:
                await client.call("am_repo_db", "no_such_call", {})
            assert refused.value.kind == "no_such_method"
            with pytest.raises(AmRefused) as refused:
                await client.call("am_user_db", "get_user", {"user": "nobody-at-all"})
            assert refused.value.kind in ("not_found", "bad_request")
            # a name nobody serves: looked for once more, then "not running"
            with pytest.raises(AmUnavailable) as missing:
                await client.call("am_nothing_here", "x", {}, timeout=5)
            assert (missing.value.reason, str(missing.value)) == (
                "not_running",
                "the manager (am) is not running",
            )
    assert not af_log.events  # ab's link logs as ab (it used to borrow af's name)


async def test_reconnects_and_subscribes_again_when_am_restarts(
    am: Am, cluster: Cluster, watch: Any
) -> None:
    log = watch("af")
    async with node(cluster, "aftest") as me:
        kinds: list[str] = []
        arrived = trio.Event()

        async def changed(ctx: CallContext, event: Any) -> None:
            kinds.append(event["kind"])
            arrived.set()

        async def added(login: str) -> None:
            nonlocal arrived
            arrived = trio.Event()
            await trio.to_thread.run_sync(lambda: am.users("add_user", actor="system", login=login))
            with trio.fail_after(30):
                await arrived.wait()

        me.register_local("test_events", {"changed": changed})
        client = AmClient(me, am.node, component="af", retry=0.1, timeout=5)
        client.subscribe("test_events")
        subscribed_first: list[bool] = []

        async def on_connect() -> None:
            # am keeps a subscriber per node: the one made just before is there
            found = await client.call("am_observer", "subscribers", {})
            subscribed_first.append(
                {"node": me.name, "service": "test_events"}
                in [{"node": f["node"], "service": f["service"]} for f in found]
            )

        client.on_connect(on_connect)
        async with running(client):
            await log.wait_for("am_connected")
            await added("sub1")
            assert kinds == ["user.added"]
            await trio.to_thread.run_sync(am.kill)
            assert (await log.wait_for("am_down")) == {"am": am.node}
            assert not client.up
            with pytest.raises(AmUnavailable) as away:
                await client.call("am_repo_db", "counts", {"actor": "system"})
            assert away.value.reason == "unreachable"
            assert str(away.value).startswith("the manager (am) cannot be reached (")
            await trio.to_thread.run_sync(am.start)
            assert (await log.wait_for("am_connected", 2)) == {"am": am.node, "connects": 2}
            assert client.up and subscribed_first == [True, True]
            await added("sub2")  # the fresh am knows af's subscription again
            assert kinds == ["user.added", "user.added"]
            assert log.named("am_unreachable"), "retries while am was away are logged (debug)"


async def test_a_call_never_outlasts_its_timeout(cluster: Cluster) -> None:
    cluster.start_portmapper()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake_am, cluster, "slowam")
        async with node(cluster, "waiter") as me:
            await me.connect(cluster.node("slowam"))
            await me.sync()
            client = AmClient(me, cluster.node("slowam"), component="aw", timeout=0.3)
            with pytest.raises(AmUnavailable) as slow:
                await client.call(PROBE_NAME, "nap", 5)
            assert (slow.value.reason, str(slow.value)) == (
                "timeout",
                "the manager (am) did not answer within 0.3 s",
            )
            with pytest.raises(AmRefused) as refused:
                await client.call(PROBE_NAME, "refuse", None)
            assert (refused.value.kind, refused.value.message) == ("not_found", "no such thing")
        nursery.cancel_scope.cancel()


async def test_a_failing_callback_is_tried_again(cluster: Cluster, watch: Any) -> None:
    """A callback whose call to am fails (slow, refused) leaves the link down and
    is run again on the next attempt; the daemon goes on."""
    log = watch("ab")
    cluster.start_portmapper()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake_am, cluster, "moodyam")
        async with node(cluster, "patient") as me:
            client = AmClient(me, cluster.node("moodyam"), component="ab", retry=0.05)
            attempts = 0

            async def on_connect() -> None:
                nonlocal attempts
                attempts += 1
                if attempts == 1:
                    await client.call(PROBE_NAME, "nap", 5, timeout=0.2)
                elif attempts == 2:
                    await client.call(PROBE_NAME, "refuse", None)

            client.on_connect(on_connect)
            async with running(client):
                assert (await log.wait_for("am_connected"))["connects"] == 1
                assert attempts == 3 and client.up
            reasons = [f["reason"] for f in log.named("am_unreachable")]
            assert reasons == [
                "the manager (am) did not answer within 0.2 s",
                "not_found: no such thing",
            ]
        nursery.cancel_scope.cancel()


# ---- am's names on another node ----------------------------------------------------------


async def test_follows_am_names_to_another_node(tmp_path: Path, watch: Any) -> None:
    log = watch("af")
    cluster = Cluster(tmp_path, tick_time=1.0)  # the client looks at the names every tick
    try:
        cluster.start_portmapper()
        async with trio.open_nursery() as nursery:
            scopes = {}
            nodes = {}
            for name in ("am1", "am2"):
                scopes[name] = trio.CancelScope()

                async def serve(
                    name: str = name,
                    *,
                    task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    with scopes[name]:
                        async with node(cluster, name) as n:
                            task_status.started(n)
                            await trio.sleep_forever()

                nodes[name] = await nursery.start(serve)
            am1, am2 = nodes["am1"], nodes["am2"]
            await am1.register_global(PROBE_NAME, FAKE_AM)
            async with node(cluster, "follower") as me:
                client = AmClient(me, am1.name, component="af", retry=0.1, timeout=5)
                served_by: list[str] = []

                async def on_connect() -> None:
                    served_by.append(await client.call(PROBE_NAME, "whoami"))

                client.on_connect(on_connect)
                async with running(client):
                    await log.wait_for("am_connected")
                    assert served_by == [am1.name] and client.am == am1.name
                    await am2.connect(me.name)  # am2 is in the mesh, idle
                    await am2.connect(am1.name)

                    # The names move while am1's node stays up (a standby takes over).
                    await am1.unregister_global(PROBE_NAME)
                    await am2.sync()  # am2 has heard am1 let go
                    await am2.register_global(PROBE_NAME, FAKE_AM)
                    moved = await log.wait_for("am_moved")
                    assert moved["am"] == am1.name
                    assert (await log.wait_for("am_connected", 2))["am"] == am2.name
                    assert served_by == [am1.name, am2.name] and client.am == am2.name

                    # am2's node goes down; am1 takes the names again.
                    am1_events = am1.monitor()
                    scopes["am2"].cancel()
                    assert (await log.wait_for("am_down")) == {"am": am2.name}
                    with trio.fail_after(30):
                        async for event in am1_events:
                            if isinstance(event, NodeDownEvent) and event.node == am2.name:
                                break
                    await am1.register_global(PROBE_NAME, FAKE_AM)
                    assert (await log.wait_for("am_connected", 3))["am"] == am1.name
                    assert served_by == [am1.name, am2.name, am1.name]
                    assert await client.call(PROBE_NAME, "whoami") == am1.name
            nursery.cancel_scope.cancel()
    finally:
        cluster.stop()
