"""af's delivery of what waits for am, in-process against a recording link and a
real repository: intents settled against the refs on disk, retries held back,
dead letters kept. The end-to-end tests run the same code in a real af."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from applikant.amclient import AmRefused, AmUnavailable
from applikant.frontend import pushid, spool
from applikant.frontend.hookserver import HookServer
from applikant.frontend.repodisk import RepoDisk
from harness.amlink import RecordingLink

ZERO = "0" * 40


class Site:
    def __init__(self, tmp: Path) -> None:
        self.disk = RepoDisk(str(tmp / "repos"), "/bin/true")
        self.git_dir = self.disk.create("team/p")
        self.link = RecordingLink()
        self.server = HookServer(self.link, self.disk, str(tmp / "spool"), "af@test")  # type: ignore[arg-type]
        self.delivery = self.server.delivery
        self.n = 0

    def git(self, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
            "PATH": "/usr/bin:/bin",
        }
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def commit(self) -> str:
        self.n += 1
        return self.git("commit-tree", self.git("write-tree"), "-m", f"c{self.n}")

    def intent(self, refs: list[tuple[str, str, str]], push: dict[str, int] | None) -> str:
        """An intent as af writes it at pre-receive; its event id."""
        event_id = (
            f"0000{self.n:04d}-0000-4000-8000-{len(spool.intents(self.delivery.spool_dir)):012d}"
        )
        request = {
            "hook": "pre-receive",
            "args": [],
            "stdin": "".join(f"{old} {new} {ref}\n" for ref, old, new in refs),
            "env": {
                "APPLIKANT_USER": "user-7",
                "APPLIKANT_REPO": "team/p",
                "GIT_QUARANTINE_PATH": "objects/incoming-x",
            },
            "cwd": self.git_dir,
            "event_id": event_id,
            "push": push,
        }
        record = {"request": request, "push": push, "time": time.time()}
        spool.write_intent(self.delivery.spool_dir, event_id, record)
        return event_id


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


def gone_push() -> dict[str, int]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = pushid.start_time(child.pid)
    child.wait()
    assert start is not None
    return {"pid": child.pid, "start": start}


async def test_an_intent_whose_refs_moved_is_recorded_with_them(site: Site) -> None:
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    event_id = site.intent(
        [("refs/heads/main", ZERO, a), ("refs/heads/other", ZERO, a)], gone_push()
    )
    assert await site.delivery.settle() == 1
    [(_, _, data)] = site.link.calls
    assert data["hook"] == "post-receive" and data["event_id"] == event_id
    assert [r["ref"] for r in data["refs"]] == ["refs/heads/main"]  # the one that moved
    assert "env" not in data  # the quarantine is gone
    assert spool.intents(site.delivery.spool_dir) == []
    assert site.delivery.delivered == 1


async def test_an_intent_whose_refs_never_moved_is_discarded(site: Site) -> None:
    site.intent([("refs/heads/main", ZERO, site.commit())], gone_push())
    assert await site.delivery.settle() == 0
    assert site.link.calls == [] and spool.intents(site.delivery.spool_dir) == []
    assert site.delivery.discarded == 1


async def test_an_intent_of_a_push_still_running_is_left_alone(site: Site) -> None:
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    me = pushid.identify(os.getpid())
    assert me is not None
    site.intent([("refs/heads/main", ZERO, a)], {"pid": os.getpid(), "start": me["start"]})  # type: ignore[dict-item]
    await site.delivery.settle()
    assert site.link.calls == [] and len(spool.intents(site.delivery.spool_dir)) == 1


async def test_an_error_reply_holds_back_that_event_alone(site: Site) -> None:
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    site.git("update-ref", "refs/heads/b", a)
    site.intent([("refs/heads/main", ZERO, a)], gone_push())
    site.intent([("refs/heads/b", ZERO, a)], gone_push())
    site.link.answers = [AmRefused("internal", "database or disk is full")]
    assert await site.delivery.settle() == 1  # the second went on
    assert "database or disk is full" in site.delivery.last_error
    assert await site.delivery.settle() == 0  # held back: no call
    assert len(site.link.calls) == 2
    await trio.sleep(0.3)  # the first backoff (0.2 s +- 10%)
    assert await site.delivery.settle() == 1
    assert spool.intents(site.delivery.spool_dir) == []


async def test_am_away_ends_the_pass_until_it_is_back(site: Site) -> None:
    for _ in range(3):
        spool.write(site.delivery.spool_dir, f"abc{_}", {"request": {}})
    site.link.answers = [AmUnavailable("the manager (am) did not answer within 5 s", "timeout")]
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    site.intent([("refs/heads/main", ZERO, a)], gone_push())
    # the queued junk is parked as unreadable, the intent meets am away
    await site.delivery.settle()
    assert len(site.link.calls) == 1
    await site.delivery.settle()
    assert len(site.link.calls) == 1  # paused
    await site.delivery.on_connect()  # am is back
    assert await site.delivery.settle() == 1
    assert spool.summary(site.delivery.spool_dir)["dead"] == 3


async def test_a_rejection_for_good_is_a_dead_letter(site: Site) -> None:
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    event_id = site.intent([("refs/heads/main", ZERO, a)], gone_push())
    site.link.answers = [AmRefused("not_found", "push not recorded: no repository team/p")]
    assert await site.delivery.settle() == 0
    assert spool.intents(site.delivery.spool_dir) == []
    [dead] = spool.dead_letters(site.delivery.spool_dir)
    assert dead["event_id"] == event_id and dead["reason"].startswith("not_found: ")
    summary = spool.summary(site.delivery.spool_dir)
    assert (summary["intents"], summary["queued"], summary["dead"]) == (0, 0, 1)


async def test_an_intent_of_an_unknown_push_waits_for_its_age(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    site.intent([("refs/heads/main", ZERO, a)], None)
    await site.delivery.settle()
    assert site.link.calls == []
    monkeypatch.setattr("applikant.frontend.delivery.ORPHAN_AGE", 0.0)
    assert await site.delivery.settle() == 1


# ---- the loop: passes when there is something to do, asleep otherwise -------------


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work meant for threads done inline, so that trio's mock clock jumps only
    when the loop really sleeps (not while a thread lists the spool)."""

    async def run_sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_sync)


class Passes:
    """Counts run()'s passes over the spool."""

    def __init__(self, site: Site) -> None:
        self.count = 0
        self.settle = site.delivery.settle
        site.delivery.settle = self  # type: ignore[method-assign]

    async def __call__(self) -> int:
        self.count += 1
        return await self.settle()


async def test_at_rest_the_loop_sleeps_but_for_the_sweep(
    site: Site, inline: None, autojump_clock: trio.testing.MockClock
) -> None:
    from applikant.frontend.delivery import SWEEP

    passes = Passes(site)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(site.delivery.run)
        await trio.sleep(10 * SWEEP + 1)
        assert passes.count == 11  # the first, then one per sweep
        site.delivery.wake()  # something new: a pass now
        await trio.sleep(0.01)
        assert passes.count == 12
        nursery.cancel_scope.cancel()


async def test_the_loop_retries_an_error_reply_with_backoff(
    site: Site, inline: None, autojump_clock: trio.testing.MockClock
) -> None:
    a = site.commit()
    site.git("update-ref", "refs/heads/main", a)
    site.intent([("refs/heads/main", ZERO, a)], gone_push())
    site.link.answers = [AmRefused("internal", "database or disk is full")] * 3

    async def prepare(request: dict[str, Any]) -> dict[str, Any]:
        return site.server.build(request)  # no git processes under the mock clock

    site.delivery.prepare = prepare
    passes = Passes(site)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(site.delivery.run)
        # 0.05 s of am_retry (the floor is 0.2 s): 0.2, 0.4, 0.8 s (+- 10%), then recorded
        await trio.sleep(2.0)
        assert len(site.link.calls) == 4 and site.delivery.delivered == 1
        assert passes.count == 4 and spool.intents(site.delivery.spool_dir) == []
        nursery.cancel_scope.cancel()


async def test_the_loop_settles_a_watched_intent_once_its_push_is_over(
    site: Site, inline: None, autojump_clock: trio.testing.MockClock
) -> None:
    """pre-receive wrote an intent and the push died before any ref moved (no
    post-receive): the loop looks at it when due and drops it, unwoken."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(site.delivery.run)
        await trio.sleep(1.0)  # the first pass found nothing; asleep until the sweep
        event_id = site.intent([("refs/heads/main", ZERO, site.commit())], gone_push())
        site.delivery.watch(spool.intent_path(site.delivery.spool_dir, event_id))
        await trio.sleep(1.0)
        assert spool.intents(site.delivery.spool_dir) == [] and site.delivery.discarded == 1
        assert site.link.calls == []
        nursery.cancel_scope.cancel()


async def test_an_intent_forgotten_by_its_post_receive_costs_no_pass(
    site: Site, inline: None, autojump_clock: trio.testing.MockClock
) -> None:
    """A push whose post-receive reached am (watch, then forget) wakes nothing;
    the sweep still comes on time however many pushes there are."""
    from applikant.frontend.delivery import SWEEP, WATCH_FIRST

    passes = Passes(site)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(site.delivery.run)
        await trio.sleep(1.0)
        assert passes.count == 1  # the first pass; asleep until the sweep
        path = spool.intent_path(site.delivery.spool_dir, "cafe")
        for _ in range(int(SWEEP / 2) - 1):  # one push every 2 s
            site.delivery.watch(path)
            await trio.sleep(0.1)
            site.delivery.forget(path)
            await trio.sleep(1.9)
        assert passes.count == 1
        await trio.sleep(2.0)  # the sweep, 60 s after the first pass
        assert passes.count == 2
        site.delivery.watch(path)  # a push whose post-receive never came: looked at
        await trio.sleep(WATCH_FIRST + 0.01)
        assert passes.count == 3
        nursery.cancel_scope.cancel()
