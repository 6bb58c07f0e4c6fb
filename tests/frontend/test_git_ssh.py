"""Git over SSH end to end: a real OpenSSH sshd, real git, and real portmapper, am
and af processes (harness/gitenv.py). The write path of the platform:
sshd -> as -> af_auth -> am -> git-receive-pack -> ah -> af_hook_server -> am_hook_api.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from applikant import envconfig
from applikant.frontend.services import INFO_REPOS
from applikant.node import pmclient
from harness.bulk import fill
from harness.gitenv import GitSite, User, git_env
from harness.wait import wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="OpenSSH server not installed"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitSite]:
    with GitSite(tmp_path_factory.mktemp("site")) as s:
        yield s


@pytest.fixture(scope="module")
def alice(site: GitSite) -> User:
    return site.add_user("alice")


@pytest.fixture(scope="module")
def bob(site: GitSite) -> User:
    return site.add_user("bob")


def test_clone_fetch_push(site: GitSite, alice: User, bob: User, tmp_path: Path) -> None:
    site.create_repo("alice/basics")
    site.grant("alice/basics", "bob", "read")
    work = tmp_path / "a"
    site.clone(alice, "alice/basics", work)
    first = site.commit(work, "one")
    r = site.push(alice, work)
    assert "[new branch]" in r.stdout
    assert site.head("alice/basics") == first
    # the pusher and the node are in the audit entry, with the ref update
    [entry] = wait_until(lambda: site.pushes("alice/basics"), what="the push in the audit log")
    assert entry["actor"] == alice.id and entry["node"] == site.af_node
    assert entry["details"]["refs"] == [{"ref": "refs/heads/main", "old": "0" * 40, "new": first}]

    # bob clones (protocol v2 through AcceptEnv GIT_PROTOCOL), then fetches a second commit
    other = tmp_path / "b"
    r = site.git(bob, "-c", "protocol.version=2", "clone", site.url("alice/basics"), str(other))
    assert site.git(None, "rev-parse", "HEAD", cwd=other).stdout.strip() == first
    second = site.commit(work, "two")
    site.push(alice, work)
    site.git(bob, "fetch", "-q", "origin", cwd=other)
    assert site.git(None, "rev-parse", "origin/main", cwd=other).stdout.strip() == second
    r = site.git(bob, "ls-remote", site.url("alice/basics"))
    assert f"{second}\trefs/heads/main" in r.stdout
    # the spellings git and people use for the same repo
    for spelling in ("alice/basics", "/alice/basics.git", "~/alice/basics"):
        r = site.git(bob, "ls-remote", site.sshd.url(spelling))
        assert second in r.stdout, spelling
    # upload-archive is a read
    r = subprocess.run(
        ["git", "archive", f"--remote={site.url('alice/basics')}", "main"],
        env=git_env(site.home, GIT_SSH_COMMAND=site.sshd.ssh_command(bob.key)),
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 0 and r.stdout[:512].rstrip(b"\0"), r.stderr


def test_push_denied_without_write_access(
    site: GitSite, alice: User, bob: User, tmp_path: Path
) -> None:
    site.create_repo("alice/readonly")
    site.grant("alice/readonly", "bob", "read")
    work = tmp_path / "w"
    site.clone(bob, "alice/readonly", work)
    site.commit(work)
    r = site.push(bob, work, check=False)
    assert r.returncode != 0
    assert "applikant: bob has no write access to alice/readonly" in r.stderr  # by login
    assert site.head("alice/readonly") is None
    denied = site.call_am(
        "am_repo_db",
        "query_audit",
        {"query": {"action": "access.denied", "repo": "alice/readonly"}},
    )["items"]
    assert [(e["actor"], e["details"]["access"]) for e in denied] == [(bob.id, "write")]
    assert denied[0]["node"] == site.af_node  # recorded as coming from the git host


def test_read_denied_and_unknown_repo(
    site: GitSite, alice: User, bob: User, tmp_path: Path
) -> None:
    site.create_repo("alice/private")
    for repo in ("alice/private", "alice/no-such-repo"):
        r = site.clone(bob, repo, tmp_path / repo.replace("/", "-"), check=False)
        assert r.returncode != 0
        assert f"applikant: repository {repo} does not exist or you have no read access" in r.stderr
        assert not (site.repo_root / "alice" / "no-such-repo.git").exists()


def test_protected_branch_refuses_force_push_and_deletion(
    site: GitSite, alice: User, tmp_path: Path
) -> None:
    site.create_repo("alice/guarded")
    site.protect("alice/guarded", "main")
    work = tmp_path / "w"
    site.clone(alice, "alice/guarded", work)
    base = site.commit(work, "base")
    site.push(alice, work)
    tip = site.commit(work, "tip")
    site.push(alice, work)  # a fast-forward is fine
    assert site.head("alice/guarded") == tip
    site.git(None, "reset", "-q", "--hard", base, cwd=work)
    site.commit(work, "rewritten")
    r = site.push(alice, work, force=True, check=False)
    assert r.returncode != 0
    assert "branch main is protected" in r.stderr and "force-push" in r.stderr
    r = site.push(alice, work, ":refs/heads/main", check=False)
    assert r.returncode != 0 and "cannot be deleted" in r.stderr
    assert site.head("alice/guarded") == tip
    # an unprotected branch can still be force-pushed and deleted
    site.push(alice, work, "HEAD:refs/heads/topic")
    site.push(alice, work, f"{tip}:refs/heads/topic", force=True)
    site.push(alice, work, ":refs/heads/topic")
    assert site.head("alice/guarded", "refs/heads/topic") is None


def test_info_lists_readable_repos(site: GitSite, alice: User, bob: User) -> None:
    site.create_repo("alice/shown")
    site.grant("alice/shown", "bob", "write")
    r = site.ssh(bob, "info")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("hello ") and "applikant" in lines[0]
    rows = [line.split() for line in lines[1:] if line.strip()]
    assert ["R", "W", "alice/shown"] in rows
    assert not any(row[-1] == "alice/private" for row in rows)


def test_info_is_bounded(site: GitSite) -> None:
    """A user who reads more than info shows gets the first page and a word
    that there are more (af asks am for one page, whatever they can read)."""
    shape = fill(str(site.tmp / "am.sqlite3"), 150, readable=150, prefix="inf")
    reader = site.add_user("infreader")
    site.call_am("am_user_db", "add_member", {"group": shape.readers, "user": reader.id})
    r = site.ssh(reader, "info")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()[1:] if line.startswith(" R")]
    assert len(rows) == INFO_REPOS and rows[0] == ["R", "infu1/repo"]
    assert "the web UI lists every one" in r.stdout


def test_key_added_then_removed(site: GitSite, alice: User) -> None:
    carol = site.add_user("carol", with_key=False)
    assert site.ssh(carol, "info").returncode == 255
    site.add_key(carol, wait=False)
    wait_until(lambda: site.ssh(carol, "info").returncode == 0, what="the new key to work")
    site.remove_key(carol)
    wait_until(
        lambda: site.ssh(carol, "info").returncode == 255, what="the removed key to stop working"
    )
    assert carol.pub.split()[1] not in site.keys_file.read_text()


def test_repo_renamed_and_deleted_in_am_follow_on_disk(
    site: GitSite, alice: User, tmp_path: Path
) -> None:
    site.create_repo("alice/before")
    work = tmp_path / "w"
    site.clone(alice, "alice/before", work)
    tip = site.commit(work)
    site.push(alice, work)
    site.call_am("am_repo_db", "rename_repo", {"repo": "alice/before", "new_path": "alice/after"})
    wait_until(lambda: site.head("alice/after") == tip, what="the rename on disk")
    assert not (site.repo_root / "alice/before.git").exists()
    assert tip in site.git(alice, "ls-remote", site.url("alice/after")).stdout
    site.call_am("am_repo_db", "delete_repo", {"repo": "alice/after"})
    wait_until(
        lambda: not (site.repo_root / "alice/after.git").exists(), what="the deletion on disk"
    )
    # renamed aside first, then removed: the trash goes right after
    wait_until(
        lambda: not [p for p in site.repo_root.iterdir() if p.name.startswith(".trash")],
        what="the trash removed",
    )


def test_disabled_user_locked_out_at_once(site: GitSite) -> None:
    hal = site.add_user("hal")
    assert site.ssh(hal, "info").returncode == 0
    site.call_am("am_user_db", "disable_user", {"user": hal.id})
    wait_until(
        lambda: site.ssh(hal, "info").returncode == 255,
        what="the disabled user's key to stop working",
    )
    site.call_am("am_user_db", "enable_user", {"user": hal.id})
    wait_until(lambda: site.ssh(hal, "info").returncode == 0, what="the key to work again")


def test_twenty_concurrent_pushes_from_five_users(
    site: GitSite, alice: User, tmp_path: Path
) -> None:
    site.create_repo("alice/busy")
    users = [alice] + [site.add_user(f"pusher{i}") for i in range(4)]
    for u in users[1:]:
        site.grant("alice/busy", u.login, "write")
    works = []
    for i, u in enumerate(users):
        for j in range(4):
            w = tmp_path / f"w{i}-{j}"
            site.commit(w, f"{u.login} {j}")
            works.append((u, w, f"HEAD:refs/heads/{u.login}-{j}"))

    def push(item: tuple[User, Path, str]) -> subprocess.CompletedProcess[str]:
        u, w, spec = item
        return site.git(u, "push", "--porcelain", site.url("alice/busy"), spec, cwd=w, check=False)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(push, works))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    entries = wait_until(
        lambda: len(site.pushes("alice/busy")) == 20 and site.pushes("alice/busy"),
        what="20 pushes in the audit log",
    )
    assert sorted(e["details"]["refs"][0]["ref"] for e in entries) == sorted(
        "refs/heads/" + spec.split(":refs/heads/")[1] for _, _, spec in works
    )
    assert sorted({e["actor"] for e in entries}) == sorted(u.id for u in users)


HOSTILE = [
    "git-upload-pack 'alice/basics'; touch {canary}",
    "git-upload-pack 'alice/basics' | touch {canary}",
    "git-upload-pack '$(touch {canary})'",
    "git-upload-pack '`touch {canary}`'",
    "git-upload-pack 'alice/basics' && touch {canary}",
    "git-upload-pack 'alice/basics'\ntouch {canary}",
    "touch {canary}",
    "sh -c 'touch {canary}'",
    "git-upload-pack '../../etc'",
    "git-upload-pack 'alice/../alice/basics'",
    "git-upload-pack '/etc/passwd'",
    "git-upload-pack '/../../../etc/ssh'",
    "git-upload-pack '/tmp'",
    "git-upload-pack --upload-pack='touch {canary}' 'alice/basics'",
    "git-upload-pack '--help'",
    "git upload-pack --strict 'alice/basics'",
    "git -c core.sshCommand=x upload-pack 'alice/basics'",
    "git-receive-pack '-alice/basics'",
    "scp -t /tmp",
    "rsync --server . /tmp",
    "git-shell -c id",
    "git-upload-pack",
    "",
    "   ",
    "git-upload-pack '" + "a" * 4000 + "/b'",
    "x" * 70000,
]


def test_hostile_commands_refused_nothing_executed(
    site: GitSite, alice: User, tmp_path: Path
) -> None:
    if not (site.repo_root / "alice/basics.git").exists():  # when run on its own
        site.create_repo("alice/basics")
    canary = tmp_path / "canary"
    ssh = [*site.sshd.ssh_args(alice.key), site.sshd.destination]
    commands: list[str | bytes] = [c.format(canary=canary) for c in HOSTILE]
    commands += [b"git-upload-pack 'alice/\xff\xfe'", b"git-upload-pack '\xc3('", b"info \xff"]
    for command in commands:
        r = subprocess.run(
            [*ssh, command], capture_output=True, timeout=30, stdin=subprocess.DEVNULL
        )
        shown = repr(command)[:80]
        assert r.returncode == 1, f"{shown}: {r.returncode} {r.stderr!r}"
        assert r.stdout == b"", shown  # git-upload-pack would have advertised refs
        [line] = r.stderr.decode("utf-8", "replace").splitlines()
        assert line.startswith("applikant: "), shown
    assert not canary.exists()


def test_symlinked_repo_out_of_the_root_refused(site: GitSite, alice: User, tmp_path: Path) -> None:
    site.create_repo("alice/linked")
    outside = tmp_path / "outside.git"
    subprocess.run(["git", "init", "-q", "--bare", str(outside)], check=True)
    target = site.repo_root / "alice" / "linked.git"
    shutil.rmtree(target)
    target.symlink_to(outside)
    r = site.ssh(alice, "git-upload-pack 'alice/linked.git'")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "applikant: repository alice/linked is not available on this host\n"


@pytest.fixture
def own_site(tmp_path: Path) -> Iterator[GitSite]:
    with GitSite(tmp_path / "site") as s:
        yield s


@pytest.mark.timeout(300)  # fourteen pushes, am down and back, then the spool
def test_am_killed_during_a_stream_of_pushes(own_site: GitSite, tmp_path: Path) -> None:
    site = own_site
    dave = site.add_user("dave")
    site.create_repo("dave/stream")
    work = tmp_path / "w"
    site.clone(dave, "dave/stream", work)
    results: list[tuple[str, subprocess.CompletedProcess[str]]] = []

    def stream() -> None:
        for i in range(14):
            commit = site.commit(work, f"c{i}")
            results.append((commit, site.push(dave, work, check=False)))
            time.sleep(0.03)

    pusher = threading.Thread(target=stream)
    pusher.start()
    wait_until(lambda: len(results) >= 3, 30, "three pushes")
    site.kill_am()
    time.sleep(1.0)
    # A post-receive while am is away is spooled by af (deterministically, beside the stream).
    head = site.head("dave/stream")
    spooled = subprocess.run(
        [str(Path(site.repo_root / "dave/stream.git/hooks/post-receive"))],
        input=f"{'0' * 40} {head} refs/heads/spooled\n",
        cwd=site.repo_root / "dave/stream.git",
        env={
            **site.env,
            "APPLIKANT_USER": dave.id,
            "APPLIKANT_REPO": "dave/stream",
            "GIT_DIR": ".",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert spooled.returncode == 0 and "recorded when the manager is back" in spooled.stderr
    assert len(os.listdir(site.spool_dir)) >= 1
    site.start_am()
    pusher.join(120)
    site.wait_synced()
    wait_until(
        lambda: not [n for n in os.listdir(site.spool_dir) if n.endswith(".json")],
        what="the spool to drain",
    )
    recorded = {ref["new"] for e in site.pushes("dave/stream") for ref in e["details"]["refs"]}
    assert head in recorded  # the spooled event
    ok = [c for c, r in results if r.returncode == 0]
    refused = [r for c, r in results if r.returncode != 0]
    assert ok and refused, "am's absence should have refused some pushes and not others"
    for commit in ok:
        assert commit in recorded
    for r in refused:
        assert "applikant: " in r.stderr and (
            "push refused" in r.stderr or "cannot be reached" in r.stderr or "am" in r.stderr
        ), r.stderr
    # nothing the user was told was refused landed in the repository
    assert site.head("dave/stream") == ok[-1]
    # af subscribed again: a key added now works at once
    ivy = site.add_user("ivy", wait=False)
    wait_until(lambda: site.ssh(ivy, "info").returncode == 0, what="a key added after am's return")


def test_af_restarted(own_site: GitSite, tmp_path: Path) -> None:
    site = own_site
    erin = site.add_user("erin")
    site.create_repo("erin/restart")
    work = tmp_path / "w"
    site.clone(erin, "erin/restart", work)
    site.commit(work)
    site.push(erin, work)
    # af says where it listens (as skips the portmapper), and takes it back when it stops
    port_file = str(site.tmp / "af.port")
    pm_port = site.settings.portmapper_port
    af_name, af_host = site.af_node.split("@")
    first = pmclient.lookup(af_host, af_name, pm_port)
    assert envconfig.read_port_file(port_file, site.af_node) == first
    site.stop_af()
    assert not os.path.exists(port_file)
    r = site.ssh(erin, "git-upload-pack 'erin/restart'")  # refused, not hung: ssh has 60 s
    assert r.returncode == 1 and "the git service (af) cannot be reached" in r.stderr
    # changes made while af is away are there once it is back
    frank = site.add_user("frank", wait=False)
    site.create_repo("frank/later", wait=False)
    site.start_af()
    site.wait_synced()
    port = pmclient.lookup(af_host, af_name, pm_port)
    wait_until(lambda: envconfig.read_port_file(port_file, site.af_node) == port, what="af.port")
    assert frank.pub.split()[1] in site.keys_file.read_text()
    assert (site.repo_root / "frank/later.git/HEAD").exists()
    tip = site.commit(work, "after restart")
    site.push(erin, work)
    assert site.head("erin/restart") == tip
    assert tip in {ref["new"] for e in site.pushes("erin/restart") for ref in e["details"]["refs"]}


def test_keys_command_mode(tmp_path: Path) -> None:
    with GitSite(tmp_path / "site", keys_mode="command") as site:
        gina = site.add_user("gina")
        site.create_repo("gina/viacommand")
        r = site.ssh(gina, "info")
        assert r.returncode == 0 and "gina/viacommand" in r.stdout, r.stderr + site.sshd.log_tail()
        assert not site.keys_file.exists() or gina.pub.split()[1] not in site.keys_file.read_text()
        site.remove_key(gina)
        assert site.ssh(gina, "info").returncode == 255


def test_keys_last_use_is_recorded_in_batches(site: GitSite, alice: User) -> None:
    """The forced command names the key; af notes it when it lets a session in
    and tells am within its flush interval; `key list` shows it."""
    lines = site.keys_file.read_text()
    key = site.call_am("am_user_db", "get_key", {"key": alice.key_id})
    assert f'{alice.id} {key["fingerprint"]}"' in lines  # as <user> <fingerprint>
    site.create_repo("alice/used")
    idle = site.add_user("idle")  # a key never used
    for _ in range(3):  # a busy client: three sessions, one write to am
        site.git(alice, "ls-remote", site.url("alice/used"))

    def used() -> str | None:
        return site.call_am("am_user_db", "get_key", {"key": alice.key_id})["last_used_at"]

    wait_until(used, timeout=30, what="alice's key's last use in am")
    assert site.call_am("am_user_db", "get_key", {"key": idle.key_id})["last_used_at"] is None
    # A later batch (the sessions above may span two flushes) may move the time
    # on, even into the next minute, while `key list` runs: it shows one of them.
    before = used()
    out = site.cluster.cli("key", "list", "alice")
    shown = {str(when)[:16].replace("T", " ") for when in (before, used())}
    assert out.returncode == 0 and any(w in out.stdout for w in shown), (shown, out.stdout)
    assert site.status()["keys_used_told"] >= 1


def test_am_and_af_link_through_their_unix_sockets(site: GitSite, alice: User) -> None:
    """Daemons of one host dial each other through <data_dir>/nodes (localsock.py)."""
    assert site.af_proc is not None
    log = site.af_proc.log_text()
    started = next(line for line in log.splitlines() if "event=node_started" in line)
    assert "/nodes/af." in started, started  # af listens on its socket
    assert re.search(r"event=nodeup peer=am@\S+ address=unix:\S+/nodes/am\.\d+\.sock", log), log
