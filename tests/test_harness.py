"""The harness the benchmarks stand on: a server's CPU counted over all its
processes, a site run as a service account made for the run, and big sites
filled straight into am's store (on either backend)."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.paging import every
from harness.account import ServiceAccount
from harness.bulk import fill
from harness.cpu import ServerCpu
from harness.gitenv import GitSite
from tests.manager.helpers import random_ed25519_line

# A parent that forks a child burning 0.3 s of CPU, then waits for a line on stdin.
BURNER = """
import os, sys, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
sys.stdin.readline()
pid = os.fork()
if pid == 0:
    burn(0.3)
    os._exit(0)
os.waitpid(pid, 0)
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("cgroup", [True, False])
def test_server_cpu_counts_the_children_and_waits_for_them(cgroup: bool) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def run() -> None:  # like a client's command: returns once the work is done
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        assert proc.stdout.readline() == "done\n"  # type: ignore[union-attr]

    try:
        with ServerCpu([proc.pid], name="applikant-test", cgroup=cgroup) as cpu:
            if not cgroup:  # with cgroups asked for, /proc is the fallback without root
                assert cpu.how == "proc"
            wall, used = cpu.measure(run)
            # The child's CPU is counted once it has ended, however long it took
            # on a busy machine; ticks of 10 ms when read from /proc.
            assert 280 <= used < 1000, (cpu.how, used)
            assert wall >= 300
    finally:
        proc.stdin.write("end\n")
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="making an account needs root")
def test_a_site_as_a_service_account(tmp_path: Path) -> None:
    """Clients log in as the account; the forced command, git and the daemons
    run as it; the account and its directory are gone afterwards."""
    account = ServiceAccount("aktest")
    with account:
        name, base = account.name, account.base
        with GitSite(base / "site", account=account) as site:
            user = site.add_user("acct")
            site.create_repo("acct/r")
            work = tmp_path / "w"
            site.clone(user, "acct/r", work, check=True)
            site.commit(work)
            site.push(user, work)
            objects = site.repo_root / "acct" / "r.git" / "objects"
            owners = {p.stat().st_uid for p in objects.rglob("*") if p.is_file()}
            assert owners == {account.uid}
            daemons = [p for p in site.cluster.procs if p.alive()]
            assert daemons and all(os.stat(f"/proc/{p.pid}").st_uid == account.uid for p in daemons)
            assert pwd.getpwnam(name).pw_shell == "/bin/sh"
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    assert not base.exists()


def test_a_bulk_site_on_either_store(db: str) -> None:
    """What fill makes is what its docstring says, and the store goes on after it
    (new users, keys and repositories get ids of their own, on PostgreSQL too)."""
    with Store(db, passwords=Passwords(fast=True)) as store:
        before = store.users.add("early", actor=SYSTEM).id
    shape = fill(db, 60, readable=20, prefix="b")
    assert (shape.users, shape.repos, shape.readable) == (60, 60, 20)
    with Store(db, passwords=Passwords(fast=True)) as store:
        reader = store.users.add("reader", actor=SYSTEM).id
        assert reader not in (before, store.users.get("bu60").id)
        store.keys.add(reader, random_ed25519_line(), actor=SYSTEM)
        store.repos.create("reader/own", actor=SYSTEM)
        store.groups.create("later", actor=SYSTEM)
        store.groups.add_member(shape.readers, reader, actor=SYSTEM)
        seen = list(every(lambda c: store.repos.page(limit=7, cursor=c, visible_to=reader)))
        names = {r["full_name"] for r in seen}
        assert len(names) == len(seen) == 21 and "reader/own" in names
        assert all(store.access.check(reader, n, "read").allowed for n in names)
        public = list(every(lambda c: store.repos.page(limit=5, cursor=c, public_only=True)))
        assert len(public) == 2  # a tenth of the readable ones
        assert len(store.keys.of("bu7")) == 1 and store.groups.get("bg6").members
