"""am with long-lived peers: change notifications in order, subscribers dropped
when their node goes down, the node observer, hook calls that overlap, and a
hook handler cancelled when its caller dies. The test process runs its own
trio node beside a real am (whose `git` sleeps as long as the test says)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from applikant import envconfig
from applikant.node.node import CallContext, Node, open_node
from harness.am import Am, add_user
from harness.cluster import Cluster
from harness.wait import TIMEOUT, wait_until, wait_until_async
from tests.manager.gitrepo import Repo, make_repo
from tests.manager.helpers import random_ed25519_line


@pytest.fixture(scope="module")
def slow_am(am_cluster: Cluster) -> Iterator[Am]:
    daemon = Am(am_cluster, slow_git=True).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def hookconc(slow_am: Am) -> dict[str, Any]:
    """The user `hookconc`, owner of `hookconc/r` with `main` protected (so that a
    pre-receive runs git in am), made once for the hook tests of this module."""
    owner = add_user(slow_am, "hookconc")
    slow_am.repos("create_repo", actor="system", path="hookconc/r")
    slow_am.repos("protect_branch", actor="system", repo="hookconc/r", pattern="main")
    return owner


@pytest.fixture(scope="module")
def gitrepo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("liverepo"))


class Inbox:
    """The events a test node received, with a way to wait for more."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = trio.Event()

    async def changed(self, ctx: CallContext, event: Any) -> None:
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        with trio.fail_after(timeout):
            while len(self.events) < count:
                await self._changed.wait()
        return self.events


@asynccontextmanager
async def peer(am: Am, name: str, inbox: Inbox | None = None) -> AsyncIterator[Node]:
    raw = envconfig.load_raw(str(am.cluster.config))
    async with open_node(
        f"{name}@localhost", envconfig.cookie(raw), envconfig.dist_settings(raw)
    ) as node:
        if inbox is not None:
            node.register_local("test_events", {"changed": inbox.changed})
        await node.connect(am.node)
        await node.sync()
        yield node


async def test_subscribers_get_changes_in_order(slow_am: Am) -> None:
    am = slow_am
    inbox = Inbox()
    async with peer(am, "subscriber", inbox) as node:
        assert await node.call("am_user_db", "subscribe", {"service": "test_events"}) == {
            "subscribed": True
        }
        # Subscribing twice changes nothing: one event each, not two.
        await node.call("am_user_db", "subscribe", {"service": "test_events"})

        async def call(service: str, method: str, **args: Any) -> Any:
            return await node.call(service, method, {"actor": "system", **args})

        user = await call("am_user_db", "add_user", login="evuser")
        key = await call("am_user_db", "add_key", user="evuser", key=random_ed25519_line())
        await inbox.wait_for(2)  # af rebuilds authorized_keys from this
        await call("am_repo_db", "create_repo", path="evuser/app")
        await call("am_repo_db", "grant", repo="evuser/app", grantee="evuser", level="read")
        await call("am_repo_db", "rename_repo", repo="evuser/app", new_path="evuser/app2")
        await call("am_user_db", "remove_key", key=key["id"])
        await call("am_user_db", "disable_user", user="evuser")
        await call("am_user_db", "enable_user", user="evuser")
        await node.call(
            "am_hook_api",
            "handle_hook",
            {
                "hook": "post-receive",
                "repo": "evuser/app2",
                "user": user["id"],
                "event_id": "ev-1",
                "refs": [{"ref": "refs/heads/main", "old": "0" * 40, "new": "1" * 40}],
            },
        )
        await node.call(
            "am_hook_api",
            "handle_hook",
            {
                "hook": "post-receive",
                "repo": "evuser/app2",
                "user": user["id"],
                "event_id": "ev-1",
                "refs": [{"ref": "refs/heads/main", "old": "0" * 40, "new": "1" * 40}],
            },
        )
        await call("am_repo_db", "delete_repo", repo="evuser/app2")
        events = await inbox.wait_for(10)
        # Nothing more may come: no second subscription, no second repo.pushed.
        await trio.sleep(0.3)
        assert [e["kind"] for e in events] == [
            "user.added",
            "key.added",
            "repo.created",
            "perm.granted",
            "repo.renamed",
            "key.removed",
            "user.disabled",
            "user.enabled",
            "repo.pushed",
            "repo.deleted",
        ]
        assert events[1]["fingerprint"] == key["fingerprint"]
        assert events[4]["old"] == "evuser/app" and events[4]["new"] == "evuser/app2"
        assert events[8]["refs"][0]["new"] == "1" * 40 and events[8]["event_id"] == "ev-1"
        # Unsubscribing stops them.
        await node.call("am_user_db", "unsubscribe", {"service": "test_events"})
        await call("am_user_db", "add_user", login="evuser2")
        await trio.sleep(0.3)
        assert len(inbox.events) == 10


async def test_subscriber_going_down_is_dropped(slow_am: Am) -> None:
    am = slow_am
    stays = Inbox()
    async with peer(am, "stays", stays) as node:
        await node.call("am_user_db", "subscribe", {"service": "test_events"})
        async with peer(am, "leaves", Inbox()) as leaving:
            await leaving.call("am_user_db", "subscribe", {"service": "test_events"})
            subs = await node.call("am_observer", "subscribers", {})
            assert {s["node"] for s in subs} >= {"stays@localhost", "leaves@localhost"}
            seen = await node.call("am_observer", "cluster", {})
            states = {n["node"]: n["state"] for n in seen["nodes"]}
            assert states["leaves@localhost"] == "up" and states["am@localhost"] == "up"

        async def gone() -> bool:
            subs = await node.call("am_observer", "subscribers", {})
            return "leaves@localhost" not in {s["node"] for s in subs}

        await wait_until_async(gone, what="the subscriber that left dropped")
        seen = await node.call("am_observer", "cluster", {})
        left = next(n for n in seen["nodes"] if n["node"] == "leaves@localhost")
        assert left["state"] == "down" and left["downs"] == 1 and left["last_down_reason"]
        await node.call("am_user_db", "add_user", {"actor": "system", "login": "afterleave"})
        events = await stays.wait_for(1)
        assert events[0]["login"] == "afterleave"
    assert "nodedown" in am.log_text() and "leaves@localhost" in am.log_text()


async def test_ten_hook_calls_run_concurrently(
    slow_am: Am, hookconc: dict[str, Any], gitrepo: Repo
) -> None:
    am, owner = slow_am, hookconc
    am.set_git_delay(1.0)  # every git am runs now takes a second
    data = {
        "hook": "pre-receive",
        "repo": "hookconc/r",
        "user": owner["id"],
        "git_dir": str(gitrepo.bare),
        "refs": [{"ref": "refs/heads/main", "old": gitrepo.a, "new": gitrepo.b}],
    }
    answers: list[Any] = []
    try:
        async with peer(am, "hookcaller") as node:
            async with trio.open_nursery() as nursery:
                for _ in range(10):

                    async def one() -> None:
                        answers.append(
                            await node.call("am_hook_api", "handle_hook", data, timeout=30)
                        )

                    nursery.start_soon(one)
            stats = await node.call("am_hook_api", "stats", {})
    finally:
        am.set_git_delay(0)
    assert answers == [{"ok": True, "messages": []}] * 10
    assert stats["max_in_flight"] >= 10  # all ten at once, each in its one-second git


CALLER = """
import sys
from applikant import envconfig
from applikant.node import blocking
raw = envconfig.load_raw()
print("calling", flush=True)
blocking.call(sys.argv[1], envconfig.cookie(raw), "am_hook_api", "handle_hook", {
    "hook": "pre-receive", "repo": "hookconc/r", "user": sys.argv[2], "git_dir": sys.argv[3],
    "refs": [{"ref": "refs/heads/main", "old": sys.argv[4], "new": sys.argv[5]}]},
    settings=envconfig.dist_settings(raw), timeout=120)
"""


def test_handler_is_cancelled_when_its_caller_dies(
    slow_am: Am, hookconc: dict[str, Any], gitrepo: Repo
) -> None:
    am, owner = slow_am, hookconc
    before = am.call("am_hook_api", "stats", {})
    am.set_git_delay(60)
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CALLER,
            am.node,
            owner["id"],
            str(gitrepo.bare),
            gitrepo.a,
            gitrepo.b,
        ],
        env={**os.environ, **am.cluster.env},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:

        def calling() -> bool:
            assert caller.poll() is None, "the caller exited before its call was in flight"
            return am.call("am_hook_api", "stats", {})["in_flight"] >= 1

        wait_until(calling, what="the hook call in flight")
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
        stats = wait_until(
            lambda: (s := am.call("am_hook_api", "stats", {}))["in_flight"] == 0 and s,
            what="the handler cancelled",
        )
    finally:
        am.set_git_delay(0)
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        if caller.stdout is not None:
            caller.stdout.close()
    assert stats["cancelled"] == before["cancelled"] + 1
    assert "hook_cancelled" in am.log_text()
