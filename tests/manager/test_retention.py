"""Retention with a real am: it prunes finished builds beyond the newest
`keep_builds` of each repository, and webhook deliveries that are over once
older than `keep_deliveries_days`, in the background, leaving queued builds
and pending deliveries alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.gitenv import GitSite
from harness.wait import wait_until
from tests.webhooks.receiver import SECRET
from tests.webhooks.threaded import ThreadedReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="OpenSSH server not installed"),
]

# Deliveries are kept 0.00003 days: about 2.6 seconds.
RETENTION = (
    "\n[am]\nkeep_builds = 2\nkeep_deliveries_days = 0.00003\nprune_interval = 0.5\n"
    '\n[webhooks]\nallowed_hosts = ["loopback"]\n'  # the receiver is on loopback
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitSite]:
    with GitSite(tmp_path_factory.mktemp("retention"), af_toml=RETENTION) as s:
        yield s


def test_old_builds_and_deliveries_are_pruned(site: GitSite, tmp_path: Path) -> None:
    alice = site.add_user("alice")
    site.create_repo("alice/app")
    work = tmp_path / "w"
    site.clone(alice, "alice/app", work)
    (work / ".applikant").mkdir()
    (work / ".applikant" / "build.sh").write_text("echo hi\n")
    site.git(None, "add", ".applikant", cwd=work)
    with ThreadedReceiver() as receiver:
        hook = site.call_am(
            "am_webhooks",
            "add_hook",
            {"repo": "alice/app", "url": receiver.url("/ok/kept"), "secret": SECRET, "ping": False},
        )
        for i in range(4):  # no builder runs: the builds wait in the queue
            site.commit(work, f"change {i}")
            site.push(alice, work, "HEAD:refs/heads/main")
        wait_until(lambda: len(receiver.seen("/ok/kept", "push")) == 4, what="4 deliveries")

    def numbers() -> list[int]:
        page = site.call_am("am_builds", "list", {"repo": "alice/app"})
        return [b["number"] for b in page["items"]]

    assert numbers() == [4, 3, 2, 1]
    wait_until(
        lambda: not site.call_am("am_webhooks", "list_deliveries", {"hook": hook["id"]})["items"],
        timeout=30,
        what="the delivered deliveries pruned",
    )
    # Passes ran meanwhile; queued builds are never pruned.
    assert numbers() == [4, 3, 2, 1]
    for number in (1, 2, 4):
        site.call_am("am_builds", "cancel", {"build": f"alice/app#{number}"})

    # Finished and older than the newest two: gone (with their logs); #4 is kept.
    wait_until(lambda: numbers() == [4, 3], timeout=30, what="builds 1 and 2 pruned")
    am_log = site.am_proc.log_text() if site.am_proc else ""
    assert "pruned" in am_log and "builds=2" in am_log
