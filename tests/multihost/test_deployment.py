"""The reference deployment across hosts (issue 8): am on `manager`, af with a real
sshd on `git`, aw on `web`, each with its own portmapper and config, TLS on every
link between them; git clients on `client`, a fourth host with no Applikant on it.
Then partitions (a host's cable pulled and plugged back in) and two git hosts
sharing one repository store (test_multigit.py has the store's own tests)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.deployment import (
    HTTP_PORT,
    LISTEN_MAX,
    LISTEN_MIN,
    PM_PORT,
    SSH_PORT,
    Deployment,
)
from harness.netns import Network, unavailable
from harness.wait import wait_until

# Several hosts, each a whole suite; partitions wait for tick times.
pytestmark = pytest.mark.timeout(300)

Make = Callable[..., Deployment]
TICK = 2.0


@pytest.fixture
def deploy(tmp_path_factory: pytest.TempPathFactory, pki: Path) -> Iterator[Make]:
    """make(labels) -> a Deployment on a fresh Network (hosts 10.77.0.2, .3, ... in
    the order of `labels`; the pki has certificates for .2 to .5). Everything is
    stopped and the namespaces removed after the test, also when it fails."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    made: list[Network] = []

    def make(labels: list[str], **kw: object) -> Deployment:
        base = tmp_path_factory.mktemp("dep")  # no "_" in it: see deployment.py
        net = Network(labels, base)
        made.append(net)
        return Deployment(net, base, pki, **kw)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        for net in made:
            net.close()


def reference(d: Deployment) -> None:
    d.start_manager("manager")
    d.start_git("git")
    d.start_web("web")


def test_the_reference_deployment_push_over_ssh_audit_and_clone_over_http(deploy: Make) -> None:
    d = deploy(["manager", "git", "web", "client"], tick_time=5.0)
    reference(d)
    alice = d.add_user("alice", "alice-secret-password-1")
    wait_until(lambda: d.key_installed("git", alice), what="alice's key on the git host")
    d.cli_ok("manager", "repo", "create", "alice/project")
    repo_dir = d.git_hosts["git"].repo_root / "alice" / "project.git"
    wait_until(lambda: (repo_dir / "HEAD").exists(), what="the repo on the git host")

    # Clone and push over SSH from the client host to the git host's sshd.
    work = d.base / "work"
    d.git("client", alice, "clone", "-q", d.ssh_url("git", "alice/project"), str(work))
    first = d.commit("client", work, "first")
    r = d.git("client", alice, "push", "--porcelain", "origin", "HEAD:refs/heads/main", cwd=work)
    assert "refs/heads/main" in r.stdout, r
    assert d.head("git", "alice/project") == first

    # The push is in am's audit log, asked from the manager host and from the web host.
    entries = wait_until(lambda: d.pushes("alice/project"), what="the push audited")
    [entry] = entries
    assert entry["actor"] == alice.id and entry["repo"] == "alice/project", entry
    assert entry["node"] == d.node("af", "git"), entry
    assert [ref["new"] for ref in entry["details"]["refs"]] == [first], entry
    assert d.pushes("alice/project", label="web") == entries

    # Clone over HTTP from aw on the web host (a private repo: alice's password).
    http_work = d.base / "http-work"
    d.git("client", None, "clone", "-q", d.http_url("web", "alice/project", alice), str(http_work))
    assert d.git("client", None, "rev-parse", "HEAD", cwd=http_work).stdout.strip() == first
    status, body = d.http(
        "client", d.http_url("web", "alice/project") + "/info/refs?service=git-upload-pack"
    )
    assert status == 401, (status, body)

    # What a firewall between the hosts has to allow: the portmapper port and the
    # distribution range on each host's own address, sshd on the git host, HTTP on
    # the web host; the portmapper also on loopback, for registrations.
    expected = {"manager": set(), "git": {SSH_PORT}, "web": {HTTP_PORT}, "client": None}
    for label, extra in expected.items():
        listening = {(addr, port) for addr, port, _ in d.net.listening(label)}
        if extra is None:
            assert listening == set(), listening
            continue
        ip = d.ip(label)
        assert ("127.0.0.1", PM_PORT) in listening and (ip, PM_PORT) in listening, listening
        for addr, port in listening - {("127.0.0.1", PM_PORT)}:
            assert addr == ip, (label, listening)
            assert port in extra | {PM_PORT} or LISTEN_MIN <= port <= LISTEN_MAX, (label, port)

    # Every node link is TLS: a node without a certificate is refused by am, and
    # the long names are the hosts' addresses.
    plain = d.write_config("client", variant="plain", tls=False)
    r = d.cli("client", "ping", d.am, config=plain)
    assert r.returncode == 1 and d.am in r.stderr, r
    wait_until(
        lambda: f"event=handshake_failed address={d.ip('client')}:" in d.log("manager", "am"),
        what="am logged the refused plain node",
    )
    assert set(d.cli_ok("manager", "global-names").values()) >= {
        d.node("am", "manager"),
        d.node("af", "git"),
    }
    r = d.cli("manager", "ping", d.node("aw", "web"))
    assert r.returncode == 0 and r.stdout.strip() == f"pong from {d.node('aw', 'web')}", r


def info_refs(d: Deployment, label: str, web: str, user: object, repo: str) -> tuple[int, str]:
    return d.http(label, d.http_url(web, repo, user) + "/info/refs?service=git-upload-pack")  # type: ignore[arg-type]


def test_partitions_fail_closed_spool_and_heal_by_themselves(deploy: Make) -> None:
    d = deploy(["manager", "git", "web", "client"], tick_time=TICK)
    reference(d)
    git = d.git_hosts["git"]
    alice = d.add_user("alice", "alice-secret-password-1")
    wait_until(lambda: d.key_installed("git", alice), what="alice's key on the git host")
    d.cli_ok("manager", "repo", "create", "alice/project")
    repo_dir = git.repo_root / "alice" / "project.git"
    wait_until(lambda: (repo_dir / "HEAD").exists(), what="the repo on the git host")
    work = d.base / "work"
    d.git("client", alice, "clone", "-q", d.ssh_url("git", "alice/project"), str(work))
    first = d.commit("client", work, "first")
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    wait_until(lambda: d.pushes("alice/project"), what="the first push audited")
    assert info_refs(d, "client", "web", alice, "alice/project")[0] == 200
    everywhere = d.global_names("manager", d.am)
    assert {"am_user_db", "am_hook_api", "af_auth", "af_hook_server"} <= set(everywhere)
    assert everywhere["af_auth"] == d.node("af", "git")

    # ---- 1. The manager's cable pulled: git and web lose am. ----------------------
    cut_at = time.monotonic()
    d.net.cut("manager")
    wait_until(
        lambda: (d.af_status("git") or {}).get("am_up") is False,
        what="af to see am down",
    )
    wait_until(
        lambda: "am_user_db" not in d.global_names("web", d.node("aw", "web")),
        what="aw to see am down",
    )
    seen_down = time.monotonic() - cut_at
    # Each side goes on with its own names.
    af_view = d.global_names("git", d.node("af", "git"))
    assert not [n for n in af_view if n.startswith("am_")] and "af_auth" in af_view, af_view
    assert d.global_names("manager", d.am).keys() == {
        n for n, node in everywhere.items() if node == d.am
    }

    # A push meanwhile is refused, in words, and changes nothing (fails closed).
    second = d.commit("client", work, "while am is away")
    r = d.git("client", alice, "push", "origin", "HEAD:refs/heads/main", cwd=work, check=False)
    assert r.returncode != 0
    assert "applikant: the manager (am) cannot be reached" in r.stderr, r.stderr
    assert d.head("git", "alice/project") == first
    assert not [p for p in repo_dir.joinpath("refs", "heads").rglob("*") if p.name != "main"]

    # aw answers 503 with the reason to the client, which can still reach it.
    status, body = info_refs(d, "client", "web", alice, "alice/project")
    assert status == 503 and "the manager (am)" in body, (status, body)

    # A post-receive on the git host while am is away (what `ah` runs after a push
    # made on the git host itself) is spooled there by af.
    spooled = d.exec(
        "git",
        [str(repo_dir / "hooks" / "post-receive")],
        input=f"{'0' * 40} {first} refs/heads/spooled\n",
        cwd=repo_dir,
        env=d.env("git", APPLIKANT_USER=alice.id, APPLIKANT_REPO="alice/project", GIT_DIR="."),
    )
    assert spooled.returncode == 0, spooled
    assert "recorded when the manager is back" in spooled.stderr, spooled.stderr
    assert [p for p in git.spool_dir.iterdir() if p.suffix == ".json"]

    # ---- Healed: nobody dials, the nodes find each other again. -------------------
    healed_at = time.monotonic()
    d.net.heal("manager")
    d.wait_af_synced("git")
    wait_until(
        lambda: info_refs(d, "client", "web", alice, "alice/project")[0] == 200,
        what="aw answering again",
    )
    back_after = time.monotonic() - healed_at
    # The spooled event arrives, once.
    wait_until(
        lambda: not [p for p in git.spool_dir.iterdir() if p.suffix == ".json"],
        what="af's spool drained",
    )

    def spooled_entries() -> list[dict]:
        return [
            e
            for e in d.pushes("alice/project")
            if any(ref["ref"] == "refs/heads/spooled" for ref in e["details"]["refs"])
        ]

    wait_until(spooled_entries, what="the spooled post-receive recorded")
    # The names converge: am, af and aw see the same cluster again.
    for label, node in (
        ("manager", d.am),
        ("git", d.node("af", "git")),
        ("web", d.node("aw", "web")),
    ):
        wait_until(
            lambda label=label, node=node: d.global_names(label, node) == everywhere,
            what=f"{node}'s global names",
        )
    # The refused push goes through now, and is recorded.
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    assert d.head("git", "alice/project") == second
    wait_until(lambda: second in d.pushed_commits("alice/project"), what="second audited")
    time.sleep(1.0)  # af's retry is 0.2 s: a second delivery would be in by now
    entries = d.pushes("alice/project")
    assert len(spooled_entries()) == 1, entries
    ids = [e["event_id"] for e in entries]
    assert len(ids) == len(set(ids)) == 3, entries  # first, the spooled one, second
    assert collections.Counter(d.pushed_commits("alice/project")) == {first: 2, second: 1}

    # ---- 2. The web host's cable pulled: aw loses am, the git host goes on. -------
    d.net.cut("web")
    wait_until(
        lambda: "am_user_db" not in d.global_names("web", d.node("aw", "web")),
        what="aw to see am down",
    )
    # From the web host itself (its own address still answers there).
    status, body = info_refs(d, "web", "web", alice, "alice/project")
    assert status == 503 and "the manager (am)" in body, (status, body)
    third = d.commit("client", work, "while the web host is away")
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    wait_until(lambda: third in d.pushed_commits("alice/project"), what="third audited")
    d.net.heal("web")
    wait_until(
        lambda: info_refs(d, "client", "web", alice, "alice/project")[0] == 200,
        what="aw answering again after its own cut",
    )
    wait_until(
        lambda: d.global_names("web", d.node("aw", "web")) == everywhere,
        what="aw's global names",
    )
    http_work = d.base / "http-work"
    d.git("client", None, "clone", "-q", d.http_url("web", "alice/project", alice), str(http_work))
    assert d.git("client", None, "rev-parse", "HEAD", cwd=http_work).stdout.strip() == third
    print(
        f"am seen down {seen_down:.1f} s after the cut (tick {TICK} s); af and aw "
        f"back {back_after:.1f} s after the heal"
    )


def test_two_git_hosts_share_one_store_keys_in_step_each_as_asks_its_own_af(
    deploy: Make,
) -> None:
    d = deploy(["manager", "git1", "git2", "client"], tick_time=TICK)
    d.start_manager("manager")
    d.start_git("git1")
    d.start_git("git2")
    af1, af2 = d.node("af", "git1"), d.node("af", "git2")

    # One cluster: am sees both afs; the cluster-wide names of af belong to one of them
    # (the first to claim them), and each af serves its own host under local names.
    wait_until(
        lambda: set(d.cli_ok("manager", "nodes")["nodes"]) >= {af1, af2},
        what="both afs linked to am",
    )
    names = d.global_names("manager", d.am)
    assert names["af_auth"] == names["af_hook_server"] == names["af_repo_manager"] == af1, names
    for label in ("git1", "git2"):
        wait_until(
            lambda label=label: d.global_names(label, d.node("af", label)) == names,
            what=f"{label}'s af agrees on the global names",
        )

    # A user added in am, with a key: on both git hosts within a few seconds.
    added_at = time.monotonic()
    alice = d.add_user("alice", "alice-secret-password-1")
    wait_until(
        lambda: d.key_installed("git1", alice) and d.key_installed("git2", alice),
        what="alice's key on both git hosts",
    )
    key_after = time.monotonic() - added_at
    # A repository created in am is made once, in the store both git hosts share.
    d.cli_ok("manager", "repo", "create", "alice/project")
    wait_until((d.store / "alice" / "project.git" / "HEAD").exists, what="the repo")

    # Both serve pushes to that one repository, one history; am records which af
    # each came through.
    work = d.base / "work"
    d.git("client", alice, "clone", "-q", d.ssh_url("git1", "alice/project"), str(work))
    commits = {}
    for label in ("git1", "git2"):
        d.git(
            "client",
            None,
            "remote",
            "set-url",
            "origin",
            d.ssh_url(label, "alice/project"),
            cwd=work,
        )
        commits[label] = d.commit("client", work, f"via {label}")
        d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
        assert d.head(label, "alice/project") == commits[label]
    entries = wait_until(
        lambda: len(d.pushes("alice/project")) == 2 and d.pushes("alice/project"),
        what="both pushes audited",
    )
    assert {e["node"]: e["details"]["refs"][0]["new"] for e in entries} == {
        af1: commits["git1"],
        af2: commits["git2"],
    }, entries

    # A key added (and one removed) later: in step on both hosts.
    bob = d.add_user("bob", "bob-secret-password-1")
    started = time.monotonic()
    wait_until(
        lambda: all(
            d.ssh("client", bob, label, "info").returncode == 0 for label in ("git1", "git2")
        ),
        what="bob's key working on both",
    )
    key_works_after = time.monotonic() - started
    key_id = d.cli_ok("manager", "key", "list", "bob")[0]["id"]
    d.cli_ok("manager", "key", "rm", key_id)
    wait_until(
        lambda: not d.key_installed("git1", bob) and not d.key_installed("git2", bob),
        what="bob's key gone from both",
    )
    r = d.ssh("client", bob, "git2", "info")
    assert r.returncode == 255 and "Permission denied" in r.stderr, r

    # `as` on each host asks its own af (the local names on af@<its host>): with af on
    # git1 stopped, git1 refuses in words and git2 goes on serving pushes.
    d.stop("git1", "af")
    r = d.ssh("client", alice, "git1", "info")
    assert r.returncode == 1 and "the git service (af) cannot be reached" in r.stderr, r
    again = d.commit("client", work, "git2 without git1's af")
    d.git("client", alice, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
    assert d.head("git2", "alice/project") == again
    wait_until(lambda: again in d.pushed_commits("alice/project"), what="audited")
    # The cluster-wide af names went with af1's node; the second af, which lost them
    # at its first contact with the cluster, does not claim them again.
    left = wait_until(
        lambda: (lambda n: n if af1 not in n.values() else None)(d.global_names("manager", d.am)),
        what="af1's names gone",
    )
    print(
        f"alice's key on both git hosts {key_after:.2f} s after `user add`; bob's key "
        f"working over SSH on both {key_works_after:.2f} s after his user and key were "
        f"added; global names with af1 stopped: {sorted(left)}"
    )


def test_the_cluster_wide_af_names_move_to_a_surviving_af(deploy: Make) -> None:
    d = deploy(["manager", "git1", "git2"], tick_time=TICK)
    d.start_manager("manager")
    d.start_git("git1")
    d.start_git("git2")
    af1, af2 = d.node("af", "git1"), d.node("af", "git2")
    wait_until(
        lambda: d.global_names("manager", d.am).get("af_auth") == af1, what="af1 owning af_auth"
    )
    d.stop("git1", "af")
    wait_until(
        lambda: af1 not in d.global_names("manager", d.am).values(),
        what="af1's names gone",
    )
    names = wait_until(
        lambda: (lambda n: n if n.get("af_auth") == af2 else None)(d.global_names("manager", d.am)),
        5 + 2 * TICK,
        what="af2 owning af_auth",
    )
    assert names["af_hook_server"] == names["af_repo_manager"] == af2, names
