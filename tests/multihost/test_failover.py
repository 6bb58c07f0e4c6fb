"""No single point of failure (issue 18): two am on two hosts share a PostgreSQL
store on a third; one is active, the other a standby that takes over.

Hosts db (PostgreSQL), manager1 and manager2 (an am each), git (af and a real
sshd), web (aw) and client (git and curl). Pushes and web requests run all the
time while the active am is SIGKILLed, then SIGSTOPped, then cut off (its
cable pulled). Each time the pushes resume through the other am; the one that
lost the lease comes back as a standby. At the end, read from the database
itself: every acknowledged push is recorded exactly once, and no am wrote
anything after its lease was taken over (fencing).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import postgres
from harness.deployment import Deployment, User
from harness.netns import Network, unavailable
from harness.wait import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

HOSTS = ["db", "manager1", "manager2", "git", "web", "client"]
PG_PORT = 5432
LEASE_TIMEOUT = 3.0  # the default: a loaded machine must not look like a silent am
REPO = "alice/stream"


@dataclass
class Site:
    d: Deployment
    pg: postgres.PgServer
    database: str = "applikant"

    def am(self, label: str) -> str:
        return self.d.node("am", label)

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        return self.pg.sql(statement, self.database)

    def owner_seen_by_af(self) -> str | None:
        return self.d.global_names("git", self.d.node("af", "git")).get("am_hook_api")

    def am_log(self, label: str) -> str:
        return self.d.log(label, "am")


@pytest.fixture
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    reason = unavailable() or postgres.unavailable()
    if reason is not None:
        pytest.skip(f"the failover test needs network namespaces and PostgreSQL: {reason}")
    base = tmp_path_factory.mktemp("failover")  # no "_" in it: see deployment.py
    pg_dir = postgres.new_directory()
    with Network(HOSTS, base) as net:
        try:
            d = Deployment(net, base, None, tick_time=1.0, manager="manager1")
            pg = postgres.PgServer(pg_dir, host=d.ip("db"), port=PG_PORT)
            pg.initdb()
            server = net.run("db", pg.argv(), name="postgres")
            net.wait_listening("db", PG_PORT, proc=server)
            pg.wait_ready()
            pg.sql('CREATE DATABASE "applikant" TEMPLATE template0')
            url = pg.url("applikant")
            managers = ["manager1", "manager2"]
            for label in managers:
                other = d.node("am", managers[1 - managers.index(label)])
                d.write_config(
                    label,
                    am={
                        "node": d.node("am", label),
                        "db": url,
                        "lease_timeout": LEASE_TIMEOUT,
                        "standby": [other],
                    },
                )
            for label in ("git", "web"):
                d.write_config(label, am={"standby": [d.node("am", "manager2")]})
            d.start_manager("manager1")
            d.start_portmapper("manager2")
            d.start("manager2", "am")
            d.start_git("git")
            d.start_web("web")
            yield Site(d, pg)
        finally:
            net.close()
            pg.stop()


@dataclass
class Workload:
    """Pushes (one new commit after another, a refused one retried) and web
    requests from the client host, in two threads, until stopped."""

    site: Site
    user: User
    work: Path
    acknowledged: list[tuple[float, str]] = field(default_factory=list)
    refused: list[tuple[float, str]] = field(default_factory=list)
    web: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)

    def start(self) -> None:
        self.threads = [
            threading.Thread(target=self._guard, args=(self._push,), daemon=True),
            threading.Thread(target=self._guard, args=(self._browse,), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not self.errors, self.errors

    def _guard(self, fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except BaseException as exc:  # reported by finish()
            self.errors.append(exc)

    def _push(self) -> None:
        d = self.site.d
        commit = d.commit("client", self.work, "push 0")
        while not self.stop.is_set():
            r = d.git(
                "client",
                self.user,
                "push",
                "origin",
                "HEAD:refs/heads/main",
                cwd=self.work,
                check=False,
            )
            if r.returncode == 0:
                self.acknowledged.append((time.monotonic(), commit))
                commit = d.commit("client", self.work, f"push {len(self.acknowledged)}")
            else:
                self.refused.append((time.monotonic(), r.stderr.strip()[-300:]))
                time.sleep(0.2)

    def _browse(self) -> None:
        d = self.site.d
        url = d.http_url("web", REPO, self.user) + "/info/refs?service=git-upload-pack"
        while not self.stop.is_set():
            status, _ = d.http("client", url)
            self.web.append((time.monotonic(), status))
            time.sleep(0.3)

    def pushed_since(self, moment: float) -> int:
        return sum(1 for at, _ in self.acknowledged if at > moment)

    def web_ok_since(self, moment: float) -> bool:
        return any(at > moment and status == 200 for at, status in self.web)


def survive(site: Site, load: Workload, moment: float, new_active: str) -> float:
    """After a disruption at `moment`: the names move to `new_active`, pushes
    and web requests go through again. The seconds until the first push after."""
    wait_until(
        lambda: site.owner_seen_by_af() == site.am(new_active),
        timeout=60,
        what=f"af to find am's names on {new_active}",
    )
    wait_until(lambda: load.pushed_since(moment) >= 3, timeout=90, what="pushes to resume")
    wait_until(lambda: load.web_ok_since(moment), timeout=60, what="aw to answer again")
    return min(at for at, _ in load.acknowledged if at > moment) - moment


def standby_again(site: Site, label: str, since: int) -> None:
    """The am on `label` says it waits as a standby (after log offset `since`)."""
    wait_until(
        lambda: "event=am_standby" in site.am_log(label)[since:],
        timeout=60,
        what=f"the am on {label} to be a standby again",
    )


def test_the_standby_takes_over_from_a_killed_a_stopped_and_a_cut_off_am(site: Site) -> None:
    d = site.d
    alice = d.add_user("alice", "alice-secret-password-1")
    wait_until(lambda: d.key_installed("git", alice), what="alice's key on the git host")
    d.cli_ok("manager1", "repo", "create", REPO)
    repo_dir = d.git_hosts["git"].repo_root / "alice" / "stream.git"
    wait_until(lambda: (repo_dir / "HEAD").exists(), what="the repo on the git host")
    work = d.base / "work"
    d.git("client", alice, "clone", "-q", d.ssh_url("git", REPO), str(work))
    assert site.owner_seen_by_af() == site.am("manager1")
    assert "event=am_standby" in site.am_log("manager2")

    load = Workload(site, alice, work)
    load.start()
    wait_until(lambda: len(load.acknowledged) >= 3, timeout=60, what="the first pushes")

    # ---- 1. manager1's am SIGKILLed: manager2 takes over; manager1 comes back as standby.
    killed_at = time.monotonic()
    d.daemons[("manager1", "am")].signal(signal.SIGKILL)
    after_kill = survive(site, load, killed_at, "manager2")
    d.stop("manager1", "am")
    d.start("manager1", "am")
    standby_again(site, "manager1", 0)

    # ---- 2. manager2's am SIGSTOPped: manager1 takes over; manager2, resumed, stands by.
    stopped = d.daemons[("manager2", "am")]
    mark2 = len(site.am_log("manager2"))
    stopped_at = time.monotonic()
    stopped.signal(signal.SIGSTOP)
    try:
        after_stop = survive(site, load, stopped_at, "manager1")
    finally:
        stopped.signal(signal.SIGCONT)
    standby_again(site, "manager2", mark2)

    # ---- 3. manager1 cut off: manager2 takes over; healed, manager1 stands by.
    mark1 = len(site.am_log("manager1"))
    cut_at = time.monotonic()
    d.net.cut("manager1")
    try:
        after_cut = survive(site, load, cut_at, "manager2")
    finally:
        d.net.heal("manager1")
    standby_again(site, "manager1", mark1)
    more = len(load.acknowledged)
    wait_until(lambda: len(load.acknowledged) >= more + 2, timeout=60, what="pushes after heal")
    load.finish()
    assert site.owner_seen_by_af() == site.am("manager2")

    # ---- Nothing acknowledged lost, nothing recorded twice (in the database itself).
    acknowledged = [commit for _, commit in load.acknowledged]

    def recorded() -> Counter[str] | None:
        seen: Counter[str] = Counter()
        for (details,) in site.sql(
            f"SELECT details FROM audit_log WHERE action = 'push' AND repo = '{REPO}'"
        ):
            for ref in json.loads(str(details))["refs"]:
                seen[ref["new"]] += 1
        return seen if all(c in seen for c in acknowledged) else None

    seen = wait_until(recorded, timeout=60, what="every acknowledged push in the audit log")
    assert not [c for c, n in seen.items() if n > 1], seen
    assert len(acknowledged) == len(set(acknowledged)) >= 12

    # ---- Fencing: after each takeover, nothing written under an older lease.
    leases = site.sql("SELECT epoch, holder, audit_high FROM am_leases ORDER BY epoch")
    holders = [str(holder) for _, holder, _ in leases]
    # An am may take the lease again after a hiccup of its own: the same holder twice.
    holders = [h for i, h in enumerate(holders) if i == 0 or holders[i - 1] != h]
    assert holders == [
        site.am("manager1"),
        site.am("manager2"),
        site.am("manager1"),
        site.am("manager2"),
    ], leases
    for epoch, _, audit_high in leases[1:]:
        late = site.sql(
            f"SELECT id, lease, action FROM audit_log WHERE id > {audit_high}"
            f" AND (lease IS NULL OR lease < {epoch})"
        )
        assert late == [], (epoch, audit_high, late)
    # The am that was stopped was fenced when it resumed: it logged the loss.
    log2 = site.am_log("manager2")[mark2:]
    assert "event=am_lease_lost" in log2 or "event=am_stepped_down" in log2, log2[-3000:]
    print(
        f"first push accepted {after_kill:.1f} s after the kill, {after_stop:.1f} s after "
        f"the stop, {after_cut:.1f} s after the cut; {len(acknowledged)} pushes acknowledged, "
        f"{len(load.refused)} refused and retried"
    )
