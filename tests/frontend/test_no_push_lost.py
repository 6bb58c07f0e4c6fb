"""Nothing acknowledged is lost, through real processes: am and af killed at each
phase of a push, am stopped and continued, and full disks (am's database, af's
spool, the repositories, each on a small tmpfs this test mounts).

In each: every acknowledged push is in the repository and recorded exactly
once, and every refused push changed nothing (harness.faults.Ledger)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness.faults import HookGate, Ledger, Tmpfs, Watch, tmpfs_unavailable
from harness.gitenv import GitSite
from harness.wait import wait_until

pytestmark = pytest.mark.slow

REPO = "alice/p"


def open_site(tmp: Path, **kwargs: object) -> tuple[GitSite, Ledger]:
    """A started site with alice, her repository, a working copy and a first push."""
    site = GitSite(tmp / "site", **kwargs)  # type: ignore[arg-type]
    try:
        site.start()
        alice = site.add_user("alice")
        site.create_repo(REPO)
        work = tmp / "work"
        site.clone(alice, REPO, work)
        site.commit(work, "base")
        site.push(alice, work)
    except BaseException:
        site.stop()
        raise
    return site, Ledger(site, REPO, work, alice)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[GitSite, Ledger]]:
    site, ledger = open_site(tmp_path)
    try:
        yield site, ledger
    finally:
        site.stop()


def verdict(ledger: Ledger, **expected: int) -> dict:
    counts = ledger.settle()
    assert counts["lost"] == 0 and counts["duplicated"] == 0, counts
    assert counts["refused_changed"] == 0, counts
    for key, value in expected.items():
        assert counts[key] == value, (key, counts, [p.output for p in ledger.pushes])
    return counts


def wait_head(site: GitSite, ref: str, new: str) -> None:
    wait_until(lambda: site.head(REPO, ref) == new, 30, f"{ref} at {new[:8]}", every=0.005)


def stopped_in_pre_receive(site: GitSite, ledger: Ledger) -> tuple[object, object]:
    """A push whose pre-receive asks a stopped am: held at the hook (its access
    check behind it) until am is stopped."""
    assert site.am_proc is not None
    gate = HookGate.of(site, REPO)
    gate.hold()
    push = ledger.prepare()
    proc = ledger.spawn(push)
    try:
        gate.wait_arrived()
        site.am_proc.signal(signal.SIGSTOP)
    finally:
        gate.open()
    time.sleep(1.0)  # pre-receive now waits for am (or finds it gone: refused too)
    return push, proc


# ---- processes killed at each phase of a push -------------------------------------


def test_am_killed_while_deciding(cluster: tuple[GitSite, Ledger]) -> None:
    site, ledger = cluster
    push, proc = stopped_in_pre_receive(site, ledger)
    site.kill_am()
    ledger.collect(push, proc)
    assert not push.acknowledged and "push refused, nothing changed" in push.output
    site.start_am()
    site.wait_synced()
    ledger.push()  # works again
    verdict(ledger, acknowledged=1, refused=1)


def test_am_killed_while_recording(cluster: tuple[GitSite, Ledger]) -> None:
    site, ledger = cluster
    assert site.am_proc is not None
    watch = Watch.intents(site.spool_dir)
    push = ledger.prepare()
    proc = ledger.spawn(push)
    assert watch.wait(20), "no intent written"
    site.am_proc.signal(signal.SIGSTOP)  # approved; its record will find am stopped
    watch.close()
    wait_head(site, push.ref, push.new)  # the refs moved: post-receive is on its way
    time.sleep(0.3)
    site.kill_am()
    ledger.collect(push, proc)
    assert push.acknowledged, push.output
    site.start_am()
    verdict(ledger, acknowledged=1)


def test_af_killed_while_am_decides(cluster: tuple[GitSite, Ledger]) -> None:
    """af killed while am (stopped) holds its question; af back before am goes on.
    The push is refused, or `as` asks the new af and it goes through; am, which
    then answers a caller that is gone, stays up."""
    site, ledger = cluster
    am = site.am_proc
    assert am is not None
    for _ in range(3):
        push, proc = stopped_in_pre_receive(site, ledger)
        site.stop_af(signal.SIGKILL)
        site.start_af()
        am.signal(signal.SIGCONT)
        ledger.collect(push, proc)
        assert push.acknowledged or "nothing changed" in push.output, push.output
        site.wait_synced()
    assert am.alive() and site.am_proc is am
    verdict(ledger)


def test_af_killed_as_it_writes_the_intent(cluster: tuple[GitSite, Ledger]) -> None:
    """Whether af answered before it died or not, the push is whole or nothing."""
    site, ledger = cluster
    outcomes = set()
    for _ in range(3):
        watch = Watch.intents(site.spool_dir)
        push = ledger.prepare()
        proc = ledger.spawn(push)
        assert watch.wait(20), "no intent written"
        site.stop_af(signal.SIGKILL)
        watch.close()
        ledger.collect(push, proc)
        outcomes.add(push.acknowledged)
        site.start_af()
        site.wait_synced()
    verdict(ledger)


def test_af_killed_while_am_records(cluster: tuple[GitSite, Ledger]) -> None:
    site, ledger = cluster
    assert site.am_proc is not None
    watch = Watch.intents(site.spool_dir)
    push = ledger.prepare()
    proc = ledger.spawn(push)
    assert watch.wait(20), "no intent written"
    site.am_proc.signal(signal.SIGSTOP)
    watch.close()
    wait_head(site, push.ref, push.new)
    time.sleep(0.3)  # post-receive reached af, which waits for the stopped am
    site.stop_af(signal.SIGKILL)
    site.am_proc.signal(signal.SIGCONT)
    ledger.collect(push, proc)
    assert push.acknowledged, push.output
    site.start_af()
    verdict(ledger, acknowledged=1)


def test_am_stopped_and_continued(cluster: tuple[GitSite, Ledger]) -> None:
    """Pushes during the stop are refused (fail closed) or wait and go through;
    none is lost, and pushes work again right after am continues."""
    site, ledger = cluster
    assert site.am_proc is not None
    site.am_proc.signal(signal.SIGSTOP)
    waiting = [ledger.prepare() for _ in range(3)]
    procs = [ledger.spawn(p) for p in waiting]
    time.sleep(3.0)
    site.am_proc.signal(signal.SIGCONT)
    continued = time.monotonic()
    for push, proc in zip(waiting, procs, strict=True):
        ledger.collect(push, proc)
    wait_until(lambda: ledger.push().acknowledged, 30, "a push to go through after SIGCONT")
    assert time.monotonic() - continued < 20
    counts = verdict(ledger)
    assert counts["acknowledged"] >= 1


# ---- full disks ----------------------------------------------------------------------


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[dict[str, Tmpfs]]:
    reason = tmpfs_unavailable()
    if reason:
        pytest.skip(reason)
    with ExitStack() as stack:
        yield {
            name: stack.enter_context(Tmpfs(tmp_path / f"fs-{name}", size))
            for name, size in (("db", 16), ("spool", 4), ("repos", 16))
        }


@pytest.fixture
def full_site(tmp_path: Path, disks: dict[str, Tmpfs]) -> Iterator[tuple[GitSite, Ledger]]:
    data = {"db": disks["db"].path, "spool": disks["spool"].path, "repos": disks["repos"].path}
    data["keys"] = disks["repos"].path / "ssh"
    site, ledger = open_site(tmp_path, data=data, disk_reserve_mb=0)
    try:
        yield site, ledger
    finally:
        for disk in disks.values():
            disk.release()
        site.stop()


def test_am_database_full(full_site: tuple[GitSite, Ledger], disks: dict[str, Tmpfs]) -> None:
    """am cannot commit the record: the push is kept and retried, recorded once freed."""
    _, ledger = full_site
    disks["db"].fill()
    push = ledger.push()
    assert push.acknowledged, push.output
    assert "the manager could not record it yet (internal: " in push.output
    time.sleep(1.0)  # af retries, am still full
    assert ledger.waiting() == 1 and ledger.count()["lost"] == 1  # not recorded yet
    disks["db"].release()
    verdict(ledger, acknowledged=1)


def test_spool_full_refuses_the_push(
    full_site: tuple[GitSite, Ledger], disks: dict[str, Tmpfs]
) -> None:
    _, ledger = full_site
    disks["spool"].fill()
    push = ledger.push()
    assert not push.acknowledged
    assert "the git host's disk is full; nothing changed" in push.output
    disks["spool"].release()
    ledger.push()
    verdict(ledger, acknowledged=1, refused=1)


def test_spool_full_after_approval_with_am_away(
    full_site: tuple[GitSite, Ledger], disks: dict[str, Tmpfs]
) -> None:
    """The issue's lost push: am away at post-receive and the spool full. The
    intent written ahead keeps it."""
    site, ledger = full_site
    assert site.am_proc is not None
    watch = Watch.intents(site.spool_dir)
    push = ledger.prepare()
    proc = ledger.spawn(push)
    assert watch.wait(20), "no intent written"
    site.am_proc.signal(signal.SIGSTOP)
    watch.close()
    disks["spool"].fill()
    wait_head(site, push.ref, push.new)
    site.kill_am()
    ledger.collect(push, proc)
    assert push.acknowledged, push.output
    site.start_am()
    disks["spool"].release()  # a full spool does not stop delivery; freeing it is tidy
    verdict(ledger, acknowledged=1)


def test_repositories_full(full_site: tuple[GitSite, Ledger], disks: dict[str, Tmpfs]) -> None:
    """git refuses the pack and nothing changes; af keeps its last good keys file,
    stays up (also when restarted on the full disk) and serves clones."""
    site, ledger = full_site
    disks["repos"].fill(leave=16 * 1024)
    (ledger.work / "big.bin").write_bytes(os.urandom(64 * 1024))
    site.git(None, "add", "big.bin", cwd=ledger.work)  # goes into the push's commit
    push = ledger.push()
    assert not push.acknowledged
    disks["repos"].fill()
    keys_before = site.keys_file.read_text()
    bob = site.add_user("bob", wait=False)
    wait_until(
        lambda: site.status()["keys_error"], 30, "af to report the keys file it cannot write"
    )
    assert site.keys_file.read_text() == keys_before
    site.stop_af(signal.SIGKILL)
    site.start_af()  # starts on a full disk
    clone = site.clone(ledger.user, REPO, ledger.work.parent / "clone", check=False)
    assert clone.returncode == 0, clone.stderr
    disks["repos"].release()
    wait_until(lambda: bob.pub.split()[1] in site.keys_file.read_text(), 30, "bob's key written")
    ledger.push()
    verdict(ledger, acknowledged=1, refused=1)


def test_disk_reserve_refuses_pushes_not_clones(tmp_path: Path, disks: dict[str, Tmpfs]) -> None:
    data = {"db": disks["db"].path, "spool": disks["spool"].path, "repos": disks["repos"].path}
    site, ledger = open_site(tmp_path, data=data, disk_reserve_mb=1)  # 1 MiB (and <= 10%)
    try:
        disks["repos"].fill(leave=512 * 1024)
        push = ledger.push()
        assert not push.acknowledged
        assert "the git host's disk is nearly full (only 0 MiB free on" in push.output
        clone = site.clone(ledger.user, REPO, tmp_path / "clone", check=False)
        assert clone.returncode == 0, clone.stderr
        disks["repos"].release()
        disks["db"].fill(leave=512 * 1024)
        push = ledger.push()
        assert not push.acknowledged and "the manager's disk is nearly full" in push.output
        r = site.cluster.cli("user", "add", "carol")
        assert r.returncode != 0 and "the manager's disk is nearly full" in r.stderr + r.stdout
        # Reading goes on, with its bookkeeping: a login, a session's use.
        made = site.call_am("am_sessions", "start", {"user": ledger.user.id})
        found = site.call_am("am_sessions", "resolve", {"secret": made["secret"]})
        assert found["user"]["login"] == ledger.user.login
        disks["db"].release()
        ledger.push()
        verdict(ledger, acknowledged=1, refused=2)
    finally:
        site.stop()
