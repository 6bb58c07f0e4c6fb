"""Several git hosts, one copy of each repository (issue 17).

Hosts: `manager` (am), `git1` and `git2` (af and sshd each), `web` (aw), `client`
(git only). git1, git2 and web use one directory as their repository root: the
network namespaces separate the hosts' networks but share the machine's file
system, so that one host path stands in for the network file system (NFS v4,
CephFS) a real deployment mounts on every git host and the web host. A host that
is "cut off" loses its network (clients, am, the other af), not that directory:
the file server's own failures are NFS's business (README: what Applikant relies
on, and the mount options).

What is checked: the store is marked once and an af on any other root refuses
(an unshared empty root, another cluster's root), saying why in its status, in
`applikant status` and in `applikant doctor`; repositories are created, renamed
and deleted once, by the holder of `af_repo_manager`, and seen through every
host; a holder killed between its journal and its act is finished by the af
that takes over; concurrent pushes to one branch through both hosts have exactly
one winner, the other gets git's own refusal; a push through one host is
fetchable at once through the other and through aw; every push is recorded
once and builds once; a git host cut off in the middle of a push leaves the repository
consistent (`git fsck` clean, refs old or new).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.deployment import Deployment, User
from harness.netns import Network, unavailable
from harness.wait import wait_until

Make = Callable[..., Deployment]
TICK = 2.0
REPO = "alice/project"
# What git itself answers the loser of a race for one ref (which one depends on
# whether it lost before or after reading the refs): never a refusal of ours.
GIT_REFUSALS = ("failed to update ref", "cannot lock ref", "fetch first", "non-fast-forward")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # whole clusters on a shared machine


@pytest.fixture
def deploy(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Make]:
    """make(labels) -> a Deployment on a fresh Network, removed after the test."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    made: list[Network] = []

    def make(labels: list[str], **kw: object) -> Deployment:
        base = tmp_path_factory.mktemp("mg")  # no "_" in it: see deployment.py
        net = Network(labels, base)
        made.append(net)
        return Deployment(net, base, pki, tick_time=TICK, **kw)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for net in made:
            net.close()


def store_of(d: Deployment, label: str) -> dict[str, Any]:
    status = d.af_status(label)
    assert status is not None, f"af on {label} does not answer"
    return status["store"]


def intents(d: Deployment) -> list[dict[str, Any]]:
    ops = d.store / ".applikant-ops"
    return [json.loads(p.read_text()) for p in sorted(ops.glob("*.json"))] if ops.exists() else []


def ls_remote(d: Deployment, via: str, user: User, repo: str = REPO) -> dict[str, str]:
    """The refs of `repo` as git host (or aw, for `web`) `via` shows them to `user`."""
    url = d.http_url("web", repo, user) if via == "web" else d.ssh_url(via, repo)
    out = d.git("client", None if via == "web" else user, "ls-remote", url).stdout
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}


def with_remote(d: Deployment, work: Path, via: str, repo: str = REPO) -> None:
    d.git("client", None, "remote", "set-url", "origin", d.ssh_url(via, repo), cwd=work)


def setup_cluster(d: Deployment, *, web: bool = True) -> User:
    d.start_manager("manager")
    d.start_git("git1")
    d.start_git("git2")
    if web:
        d.start_web("web")
    alice = d.add_user("alice", "alice-secret-password-1")
    wait_until(
        lambda: d.key_installed("git1", alice) and d.key_installed("git2", alice),
        what="alice's key on both git hosts",
    )
    return alice


def test_one_store_one_history_through_both_git_hosts_and_aw(deploy: Make) -> None:
    d = deploy(["manager", "git1", "git2", "web", "client"])
    alice = setup_cluster(d)
    af1, af2 = d.node("af", "git1"), d.node("af", "git2")

    # The store was marked once, by the first af, which manages it; the second joined.
    marker = json.loads((d.store / ".applikant-cluster").read_text())
    one, two = store_of(d, "git1"), store_of(d, "git2")
    assert one["state"] == two["state"] == "ok", (one, two)
    assert one["manages"] and not two["manages"] and one["manager"] == two["manager"] == af1
    assert one["store"] == two["store"] == marker["store"] and marker["by"] == af1
    assert one["cluster"] == two["cluster"] == marker["cluster"]

    # Created once, in the store: every host sees it at once, hooks and all.
    d.cli_ok("manager", "repo", "create", REPO)
    wait_until((d.store / f"{REPO}.git" / "HEAD").exists, what="the repository")
    hook = d.store / f"{REPO}.git" / "hooks" / "pre-receive"
    assert hook.resolve() == d.store / ".applikant-hook"
    assert ls_remote(d, "git2", alice) == ls_remote(d, "web", alice) == {}
    assert intents(d) == []

    # Pushes through either host build one history; each one is fetchable through
    # the other host and through aw as soon as it is done.
    work = d.base / "work"
    d.git("client", alice, "clone", "-q", d.ssh_url("git2", REPO), str(work))
    pushed: list[str] = []
    visible_ms = []
    for i, (via, other) in enumerate([("git1", "git2"), ("git2", "git1"), ("git1", "git2")]):
        with_remote(d, work, via)
        if i == 1:  # from here on every commit has a build script: one build per push
            (work / ".applikant").mkdir()
            (work / ".applikant" / "build.sh").write_text("echo hi\n")
            d.git("client", None, "add", ".applikant", cwd=work)
        commit = d.commit("client", work, f"{i} via {via}")
        r = d.git("client", alice, "push", "origin", "HEAD:refs/heads/main", cwd=work)
        assert ("queued" in r.stderr) == (i >= 1), r.stderr
        done = time.monotonic()
        for seen in (other, "web"):
            assert ls_remote(d, seen, alice)["refs/heads/main"] == commit, (i, seen)
        visible_ms.append((time.monotonic() - done) * 1000)
        pushed.append(commit)
    # ... and fetchable: a fresh clone through aw has the whole history.
    http_work = d.base / "http-work"
    d.git("client", None, "clone", "-q", d.http_url("web", REPO, alice), str(http_work))
    log = d.git("client", None, "log", "--format=%H", cwd=http_work).stdout.split()
    assert log[: len(pushed)] == pushed[::-1]

    # Concurrent pushes to one branch through both hosts: git's ref lock on the
    # shared file system lets exactly one win; the other gets git's own refusal.
    # In the last rounds each push carries 1 MiB over a slow link into its git
    # host, so that both have read the refs before either moves one: the loser
    # then loses at git's ref lock rather than in its client.
    works = {label: d.base / f"race-{label}" for label in ("git1", "git2")}
    for label, w in works.items():
        d.git("client", alice, "clone", "-q", d.ssh_url(label, REPO), str(w))
    refusals: list[str] = []
    for round_ in range(4):
        slow = round_ >= 2
        for w in works.values():
            (w / "payload.bin").write_bytes(os.urandom(1024 * 1024 if slow else 16))
            d.git("client", None, "add", "payload.bin", cwd=w)
        commits = {
            label: d.commit("client", w, f"race {round_} {label}") for label, w in works.items()
        }
        for label in works if slow else ():
            d.net.throttle(label, "4mbit", inbound=True)
        try:
            results = d.push_together("client", alice, works)
        finally:
            for label in works if slow else ():
                d.net.unthrottle(label, inbound=True)
        winners = [label for label, r in results.items() if r.returncode == 0]
        assert len(winners) == 1, {k: (r.returncode, r.stderr) for k, r in results.items()}
        [loser] = set(works) - set(winners)
        err = results[loser].stderr
        assert any(s in err for s in GIT_REFUSALS) and "push refused" not in err, err
        refusals.append(next(s for s in GIT_REFUSALS if s in err))
        assert ls_remote(d, "web", alice)["refs/heads/main"] == commits[winners[0]]
        pushed.append(commits[winners[0]])
        for w in works.values():  # both start the next round from the winner
            d.git("client", alice, "fetch", "-q", "origin", cwd=w)
            d.git("client", None, "reset", "-q", "--hard", "origin/main", cwd=w)

    # Every accepted push recorded once, and built once, whichever host took it.
    entries = wait_until(
        lambda: (lambda e: e if len(e) >= len(pushed) else None)(d.pushes(REPO)),
        what="the pushes audited",
    )
    time.sleep(1.0)  # a second record of any push would be in by now
    entries = d.pushes(REPO)
    assert [e["details"]["refs"][0]["new"] for e in entries] == pushed, entries
    assert len({e["event_id"] for e in entries}) == len(entries)
    assert {e["node"] for e in entries} == {af1, af2}
    builds = d.cli_ok("manager", "build", "list", "--repo", REPO, "--limit", "1000")
    assert sorted(b["commit"] for b in builds) == sorted(pushed[1:]), builds
    r = d.exec("manager", ["git", "--git-dir", str(d.store / f"{REPO}.git"), "fsck", "--strict"])
    assert r.returncode == 0, r.stderr

    # Renamed and deleted once, seen through both hosts and aw.
    d.cli_ok("manager", "repo", "rename", REPO, "alice/renamed")
    wait_until((d.store / "alice" / "renamed.git" / "HEAD").exists, what="the rename")
    assert not (d.store / f"{REPO}.git").exists()
    for via in ("git1", "git2", "web"):
        assert ls_remote(d, via, alice, "alice/renamed")["refs/heads/main"] == pushed[-1], via
    d.cli_ok("manager", "repo", "rm", "alice/renamed", "--yes")
    wait_until(lambda: not (d.store / "alice" / "renamed.git").exists(), what="the delete")
    for via in ("git1", "git2"):
        r = d.git("client", alice, "ls-remote", d.ssh_url(via, "alice/renamed"), check=False)
        assert r.returncode != 0 and "alice/renamed" in r.stderr, r
    assert intents(d) == [] and not [p for p in d.store.iterdir() if p.name.startswith(".trash")]
    print(
        f"a push through one host visible through the other and aw after "
        f"{[round(ms) for ms in visible_ms]} ms; the racing pushes' losers: {refusals}"
    )


def test_a_root_that_is_not_the_clusters_store_is_refused_and_says_why(deploy: Make) -> None:
    d = deploy(["manager", "git1", "git2"])
    d.start_manager("manager")
    d.start_git("git1")
    af1, af2 = d.node("af", "git1"), d.node("af", "git2")
    d.add_user("alice", "alice-secret-password-1", key=False)
    d.cli_ok("manager", "repo", "create", REPO)
    wait_until((d.store / f"{REPO}.git" / "HEAD").exists, what="the repository")

    def refused(label: str, root: Path, says: str) -> None:
        store = store_of(d, label)
        assert store["state"] == "refused" and says in store["reason"], store
        assert store["root"] == str(root) and not store["manages"], store
        assert "repo_root_refused" in d.log(label, "af")
        # It claims none of the cluster-wide names, and serves nobody.
        assert af2 not in d.global_names("manager", d.am).values()
        decision = d.call(
            label, d.node("af", label), "af_auth", "check_access",
            {"user": "user-1", "repo": REPO, "access": "read"},
        )  # fmt: skip
        assert decision["allowed"] is False and "does not serve repositories" in decision["reason"]

        # `applikant status` on the manager host and `applikant doctor` on the git host say why.
        def af2_in_status() -> dict[str, Any] | None:
            entries = [n for n in d.cli_ok("manager", "status")["nodes"] if n["node"] == af2]
            reported = entries and any(says in e["error"] for e in entries[0]["errors"])
            return entries[0] if reported else None

        entry = wait_until(af2_in_status, what="af's refusal reported to am")
        assert entry["store"]["state"] == "refused" and says in entry["store"]["reason"], entry
        table = d.cli("manager", "status").stdout
        assert "repo root refused" in table, table
        r = d.cli(label, "doctor", "--json")
        [check] = [c for c in json.loads(r.stdout) if c["check"] == "repo store"]
        assert check["status"] == "fail" and says in check["found"], check
        assert r.returncode == 1

    # 1. An unshared empty root (the share is not mounted on git2): refused, left unmarked.
    private = d.base / "private"
    d.start_git("git2", repo_root=private, sshd=False)
    refused("git2", private, "no cluster marker")
    assert [p.name for p in private.iterdir()] == []

    # 2. Another cluster's root (made by `applikant init` with its own cookie).
    other_cfg = d.base / "other.toml"
    r = d.exec(
        "git2",
        [
            sys.executable,
            "-m",
            "applikant.cli.main",
            "init",
            "--data-dir",
            str(d.base / "other"),
            "--password-stdin",
        ],
        env={**d.env("git2"), "APPLIKANT_CONFIG": str(other_cfg)},
        input="other-admin-password-1\n",
    )
    assert r.returncode == 0, r.stderr
    other_root = d.base / "other" / "repos"
    assert (other_root / ".applikant-cluster").exists()
    d.stop("git2", "af")
    d.start_git("git2", repo_root=other_root, sshd=False)
    refused("git2", other_root, "another cluster")

    # 3. Nobody manages the store (af1 stopped) and git2 comes up on an empty root:
    #    am knows a repository, so the store is elsewhere: still refused.
    d.stop("git1", "af")
    d.stop("git2", "af")
    empty = d.base / "empty"
    d.start_git("git2", repo_root=empty, sshd=False)
    refused("git2", empty, "am knows 1 repositories")

    # 4. On the shared store it serves, and manages it now that af1 is gone.
    d.stop("git2", "af")
    d.start_git("git2", sshd=False)
    store = store_of(d, "git2")
    assert store["state"] == "ok" and store["manages"] and store["manager"] == af2, store
    r = d.cli("git2", "doctor", "--json")
    [check] = [c for c in json.loads(r.stdout) if c["check"] == "repo store"]
    assert check["status"] == "ok" and af2 in check["found"], check
    assert af1 not in d.global_names("manager", d.am).values()


def test_a_holder_killed_between_journal_and_act_is_finished_by_the_next(deploy: Make) -> None:
    d = deploy(["manager", "git1", "git2"])
    d.start_manager("manager")
    # af1 stops itself right after it journals a rename (APPLIKANT_TEST_FAULT, repoops.py).
    d.start_git("git1", env={"APPLIKANT_TEST_FAULT": "stop-after-intent:rename"}, sshd=False)
    d.start_git("git2", sshd=False)
    af1, af2 = d.node("af", "git1"), d.node("af", "git2")
    assert store_of(d, "git1")["manages"] and not store_of(d, "git2")["manages"]
    d.add_user("alice", "alice-secret-password-1", key=False)
    d.cli_ok("manager", "repo", "create", REPO)
    # The id is written once the repository is in place: wait for it, not for HEAD.
    wait_until((d.store / f"{REPO}.git" / "applikant-id").exists, what="the repository's id")
    repo_id = (d.store / f"{REPO}.git" / "applikant-id").read_text().strip()

    d.cli_ok("manager", "repo", "rename", REPO, "alice/moved")
    [intent] = wait_until(lambda: intents(d), what="af1's intent in the journal")
    assert intent == {"op": "rename", "old": REPO, "new": "alice/moved", "id": repo_id, "by": af1}
    time.sleep(0.5)  # stopped: it does not act
    assert (d.store / f"{REPO}.git").exists() and not (d.store / "alice" / "moved.git").exists()
    assert "test_fault" in d.log("git1", "af")
    d.kill("git1", "af")

    # af2 sees af1's node go down, takes af_repo_manager over and finishes the rename.
    wait_until(
        lambda: d.global_names("manager", d.am).get("af_repo_manager") == af2,
        4 * TICK + 5,
        what="af2 holding af_repo_manager",
    )
    wait_until((d.store / "alice" / "moved.git" / "HEAD").exists, what="the rename finished")
    assert not (d.store / f"{REPO}.git").exists()
    assert (d.store / "alice" / "moved.git" / "applikant-id").read_text().strip() == repo_id
    assert intents(d) == []
    assert "intent_replayed" in d.log("git2", "af")
    assert store_of(d, "git2")["manages"]
    # and it manages from now on: a new repository is made by af2.
    d.cli_ok("manager", "repo", "create", "alice/after")
    wait_until((d.store / "alice" / "after.git" / "HEAD").exists, what="a new repository")


def test_a_git_host_cut_off_mid_push_leaves_the_repository_consistent(deploy: Make) -> None:
    d = deploy(["manager", "git1", "git2", "web", "client"])
    alice = setup_cluster(d)
    d.cli_ok("manager", "repo", "create", REPO)
    git_dir = d.store / f"{REPO}.git"
    wait_until((git_dir / "HEAD").exists, what="the repository")
    base = d.base / "base"
    d.git("client", alice, "clone", "-q", d.ssh_url("git1", REPO), str(base))
    first = d.commit("client", base, "first")
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=base)
    slow = d.base / "slow"
    d.git("client", alice, "clone", "-q", d.ssh_url("git2", REPO), str(slow))
    (slow / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # incompressible
    d.git("client", None, "add", "big.bin", cwd=slow)
    big = d.commit("client", slow, "a big one through git2")

    # The client's uplink made slow, a push through git2 started; once git2 is
    # receiving the pack (its quarantine directory exists), git2's cable is pulled.
    d.net.throttle("client", "2mbit")
    env = {"HOME": str(d.home), "GIT_SSH_COMMAND": d.ssh_command(alice)}
    pusher = d.net.run(
        "client",
        ["git", "-C", str(slow), "push", "origin", "HEAD:refs/heads/main"],
        env=env,
        name="push-git2",
    )
    objects = git_dir / "objects"
    wait_until(
        lambda: [p for p in objects.iterdir() if p.name.startswith("tmp_objdir-incoming")],
        30,
        every=0.05,
        what="git2 receiving the pack",
    )
    d.net.cut("git2")
    d.net.unthrottle("client")

    # Meanwhile git1 takes a push to the same branch: nothing of git2's is in its way.
    second = d.commit("client", base, "second, through git1")
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=base)
    assert ls_remote(d, "web", alice)["refs/heads/main"] == second
    pusher.signal(9)  # the client gives up on git2
    pusher.popen.wait(10)
    assert pusher.popen.returncode != 0

    # git2 comes back; its receive-pack sees the connection gone and cleans up.
    d.net.heal("git2")
    wait_until(
        lambda: not [p for p in objects.iterdir() if p.name.startswith("tmp_objdir")],
        90,
        what="git2's half-received push gone",
    )
    d.wait_af_synced("git2", timeout=30)
    r = d.exec("manager", ["git", "--git-dir", str(git_dir), "fsck", "--strict", "--no-dangling"])
    assert r.returncode == 0, r.stdout + r.stderr
    refs = d.exec("manager", ["git", "--git-dir", str(git_dir), "show-ref"]).stdout
    assert refs.split() == [second, "refs/heads/main"], refs  # git1's: old for git2's push
    assert big not in refs and not list(git_dir.rglob("*.lock"))
    assert first != second

    # git2 serves again: the big commit, rebased, goes through it and is seen everywhere.
    d.git("client", alice, "pull", "-q", "--rebase", "origin", "main", cwd=slow)
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=slow)
    head = d.git("client", None, "rev-parse", "HEAD", cwd=slow).stdout.strip()
    for via in ("git1", "web"):
        assert ls_remote(d, via, alice)["refs/heads/main"] == head, via
    pushes = wait_until(
        lambda: (lambda e: e if len(e) == 3 else None)(d.pushes(REPO)), what="audited"
    )
    assert [e["details"]["refs"][0]["new"] for e in pushes] == [first, second, head]
