"""Webhook payloads read as receivers written for Gitea and GitHub read them.

Real processes (portmapper, am, af, sshd, git over SSH) and a real HTTP
receiver. The consumer below reads a push the way a Go receiver unmarshals
Gitea's `PushPayload` (modules/structs/hook.go) or a GitHub push event: every
field it uses must be there with its type, the GitHub headers must be there,
and `X-Hub-Signature-256` must verify with the hook's secret, computed here
with hmac alone (no Applikant code).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from harness.gitenv import GitSite, User
from harness.wait import wait_until

from .receiver import SECRET
from .test_end_to_end import WEBHOOKS_TOML, add_hook, cli
from .threaded import ThreadedReceiver

pytestmark = pytest.mark.slow

ZERO = "0" * 40
PUBLIC = "https://git.example.org"
SSH = "ssh://git@git.example.org:2222"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitSite]:
    aw = f'\n[aw]\npublic_url = "{PUBLIC}"\nssh_url = "{SSH}"\n'
    with GitSite(tmp_path_factory.mktemp("payloads"), af_toml=WEBHOOKS_TOML + aw) as s:
        yield s


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    with ThreadedReceiver() as r:
        yield r


# ---- the consumer: what a Gitea or GitHub receiver reads ----------------------------


def need(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """A field as a typed unmarshaller reads it: present, and of its type."""
    assert key in data, f"no {key!r} in {sorted(data)}"
    assert isinstance(data[key], kind), f"{key!r} is {type(data[key]).__name__}: {data[key]!r}"
    return data[key]


def read_user(data: dict[str, Any]) -> dict[str, Any]:
    """Gitea's User (login, username, id as a number) and GitHub's sender/pusher."""
    need(data, "id", int)
    need(data, "login", str)
    need(data, "username", str)
    need(data, "full_name", str)
    need(data, "email", str)
    need(data, "name", str)
    return data


def read_payload_user(data: dict[str, Any]) -> dict[str, str]:
    """Gitea's PayloadUser (a commit's author or committer)."""
    return {k: need(data, k, str) for k in ("name", "email", "username")}


def read_commit(data: dict[str, Any]) -> dict[str, Any]:
    """Gitea's PayloadCommit / GitHub's commit."""
    out = {k: need(data, k, str) for k in ("id", "message", "url", "timestamp")}
    datetime.fromisoformat(out["timestamp"])  # Go's time.Time parses RFC 3339
    out["author"] = read_payload_user(need(data, "author", dict))
    out["committer"] = read_payload_user(need(data, "committer", dict))
    for files in ("added", "removed", "modified"):
        out[files] = need(data, files, list)
        assert all(isinstance(p, str) for p in out[files])
    return out


def read_repository(data: dict[str, Any]) -> dict[str, Any]:
    """Gitea's Repository, the fields receivers use."""
    out: dict[str, Any] = {"id": need(data, "id", int), "private": need(data, "private", bool)}
    for key in ("name", "full_name", "html_url", "clone_url", "ssh_url", "default_branch"):
        out[key] = need(data, key, str)
    out["owner"] = read_user(need(data, "owner", dict))
    return out


def read_push(body: bytes) -> dict[str, Any]:
    """Gitea's PushPayload (and GitHub's push event), as a receiver unmarshals it."""
    data = json.loads(body)
    out: dict[str, Any] = {k: need(data, k, str) for k in ("ref", "before", "after")}
    out["compare_url"] = need(data, "compare_url", str)
    out["commits"] = [read_commit(c) for c in need(data, "commits", list)]
    out["total_commits"] = need(data, "total_commits", int)
    head = data.get("head_commit", "absent")
    assert head is None or isinstance(head, dict), "head_commit must be an object or null"
    out["head_commit"] = read_commit(head) if head else None
    out["repository"] = read_repository(need(data, "repository", dict))
    out["pusher"] = read_user(need(data, "pusher", dict))
    out["sender"] = read_user(need(data, "sender", dict))
    out["created"] = need(data, "created", bool)
    out["deleted"] = need(data, "deleted", bool)
    return out


def github_checks(headers: dict[str, str], body: bytes, secret: str) -> str:
    """What a GitHub receiver checks first: the event, the delivery, the signature."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-hub-signature-256"], expected)
    assert headers["x-applikant-signature-256"] == expected
    assert headers["x-github-delivery"] == headers["x-applikant-delivery"]
    assert headers["x-applikant-event-type"] == headers["x-applikant-event"]
    assert headers["content-type"] == "application/json"
    return headers["x-github-event"]


# ---- the pushes ----------------------------------------------------------------------


def commit_files(site: GitSite, work: Path, message: str, **files: str | None) -> str:
    """A commit as Alice A <alice@example.org> writing (or, None, removing) files."""
    for name, text in files.items():
        path = work / name
        if text is None:
            site.git(None, "rm", "-q", name, cwd=work)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        site.git(None, "add", name, cwd=work)
    author = "--author=Alice A <Alice@Example.org>"
    site.git(None, "commit", "-q", author, "-m", message, cwd=work)
    return site.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()


def pushes(receiver: ThreadedReceiver, path: str, n: int) -> list[Any]:
    return wait_until(
        lambda: (seen := receiver.seen(path, "push"))[n - 1 :] and seen,
        what=f"{n} push deliveries",
    )


def test_push_payload_reads_as_gitea_and_github_receivers_read_it(
    site: GitSite, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    alice: User = site.add_user("alice")
    site.call_am("am_user_db", "update_user", {"user": "alice", "email": "alice@example.org"})
    site.create_repo("alice/app")
    hook = add_hook(site, "alice/app", receiver.url("/ok/app"))
    work = tmp_path / "app"
    site.clone(alice, "alice/app", work)
    c1 = commit_files(site, work, "first\n\nwith a body", **{"a.txt": "a\n", "b.txt": "b\n"})
    c2 = commit_files(site, work, "second", **{"a.txt": "a2\n", "b.txt": None, "c/d.txt": "d\n"})
    site.push(alice, work, "HEAD:refs/heads/main")

    (seen,) = pushes(receiver, "/ok/app", 1)
    assert github_checks(seen.headers, seen.body, SECRET) == "push"
    push = read_push(seen.body)
    assert (push["ref"], push["before"], push["after"]) == ("refs/heads/main", ZERO, c2)
    assert push["created"] and not push["deleted"]
    assert push["compare_url"] == f"{PUBLIC}/alice/app/commit/{c2}"  # a new branch
    assert [c["id"] for c in push["commits"]] == [c1, c2]  # oldest first
    first, second = push["commits"]
    assert first["message"].startswith("first\n\nwith a body")
    assert first["url"] == f"{PUBLIC}/alice/app/commit/{c1}"
    assert (first["added"], first["removed"], first["modified"]) == (["a.txt", "b.txt"], [], [])
    assert (second["added"], second["removed"], second["modified"]) == (
        ["c/d.txt"],
        ["b.txt"],
        ["a.txt"],
    )
    # The author's email is alice's (whatever its case): her login is the username.
    assert first["author"] == {
        "name": "Alice A",
        "email": "Alice@Example.org",
        "username": "alice",
    }
    assert push["total_commits"] == 2 and push["head_commit"]["id"] == c2
    repo = push["repository"]
    assert repo["full_name"] == "alice/app" and repo["name"] == "app"
    assert repo["html_url"] == f"{PUBLIC}/alice/app"
    assert repo["clone_url"] == f"{PUBLIC}/alice/app.git"
    assert repo["ssh_url"] == f"{SSH}/alice/app.git"
    assert repo["default_branch"] == "main" and repo["private"] is True
    assert repo["owner"]["login"] == "alice"
    assert push["pusher"]["login"] == push["sender"]["login"] == "alice"
    assert push["pusher"]["id"] == int(alice.id.removeprefix("user-"))
    assert push["pusher"]["email"] == ""  # emails are for site admins only

    # An update: compare_url from before to after, only the new commit.
    c3 = commit_files(site, work, "third", **{"e.txt": "e\n"})
    site.push(alice, work, "HEAD:refs/heads/main")
    update = read_push(pushes(receiver, "/ok/app", 2)[1].body)
    assert (update["before"], update["after"], update["created"]) == (c2, c3, False)
    assert update["compare_url"] == f"{PUBLIC}/alice/app/compare/{c2}...{c3}"
    assert [c["id"] for c in update["commits"]] == [c3]

    # A branch made at a commit already pushed brings no commits, but a head commit.
    site.push(alice, work, "HEAD:refs/heads/same")
    same = read_push(pushes(receiver, "/ok/app", 3)[2].body)
    assert same["ref"] == "refs/heads/same" and same["commits"] == []
    assert same["total_commits"] == 0 and same["head_commit"]["id"] == c3

    # A deletion.
    site.push(alice, work, ":refs/heads/same")
    gone = read_push(pushes(receiver, "/ok/app", 4)[3].body)
    assert gone["deleted"] and gone["after"] == ZERO
    assert gone["head_commit"] is None and gone["commits"] == [] and gone["compare_url"] == ""

    # Two refs in one push: one payload each (as Gitea and GitHub send them).
    commit_files(site, work, "on two branches", **{"f.txt": "f\n"})
    site.push(alice, work, "HEAD:refs/heads/main", "HEAD:refs/heads/other")
    both = [read_push(s.body) for s in pushes(receiver, "/ok/app", 6)[4:]]
    assert sorted(p["ref"] for p in both) == ["refs/heads/main", "refs/heads/other"]
    site.call_am("am_webhooks", "remove_hook", {"hook": hook["id"]})


def test_a_long_push_lists_its_newest_twenty_commits(
    site: GitSite, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    bob = site.add_user("bob")
    site.create_repo("bob/long")
    add_hook(site, "bob/long", receiver.url("/ok/long"))
    work = tmp_path / "long"
    site.clone(bob, "bob/long", work)
    made = [commit_files(site, work, f"change {i}", **{"n.txt": f"{i}\n"}) for i in range(25)]
    site.push(bob, work, "HEAD:refs/heads/main")
    push = read_push(pushes(receiver, "/ok/long", 1)[0].body)
    assert push["total_commits"] == 25
    assert [c["id"] for c in push["commits"]] == made[5:]  # the newest 20, oldest first
    assert push["head_commit"]["id"] == made[-1]


def test_hook_edit_and_test_delivery_from_the_cli(
    site: GitSite, receiver: ThreadedReceiver
) -> None:
    site.add_user("carol", with_key=False)
    site.create_repo("carol/edit", wait=False)
    hook = add_hook(site, "carol/edit", receiver.url("/ok/edit-old"))
    out = cli(
        site,
        "hook",
        "edit",
        hook["id"],
        "--url",
        receiver.url("/ok/edit-new"),
        "--event",
        "push",
        "--event",
        "build_finished",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    changed = json.loads(out.stdout)
    assert changed["url"] == receiver.url("/ok/edit-new")
    assert changed["events"] == ["push", "build_finished"]
    out = cli(site, "hook", "test", hook["id"], "--json")
    assert out.returncode == 0, out.stderr
    delivery = json.loads(out.stdout)
    (ping,) = wait_until(lambda: receiver.seen("/ok/edit-new", "ping"), what="the test ping")
    assert github_checks(ping.headers, ping.body, SECRET) == "ping"
    assert ping.headers["x-applikant-delivery"] == delivery["id"]
    body = json.loads(ping.body)
    assert body["hook"]["id"] == hook["id"] and body["repository"]["full_name"] == "carol/edit"
    assert body["sender"]["login"].startswith("cli:")  # the CLI's OS user
    # Switched off, it gets no push; a new secret signs the next delivery.
    assert cli(site, "hook", "edit", hook["id"], "--inactive").returncode == 0
    assert not site.call_am("am_webhooks", "get_hook", {"hook": hook["id"]})["active"]
    out = cli(site, "hook", "edit", hook["id"], "--secret", "another-secret", "--active")
    assert out.returncode == 0, out.stderr
    audit = site.call_am(
        "am_repo_db", "query_audit", {"query": {"action": "hook.update", "repo": "carol/edit"}}
    )["items"]
    assert audit[0]["actor"].startswith("cli:") and "another-secret" not in json.dumps(audit)
    assert audit[0]["details"]["secret_changed"] is True
    # What was missing is said plainly.
    out = cli(site, "hook", "edit", hook["id"])
    assert out.returncode == 1 and "nothing to change: give --url" in out.stderr
    out = cli(site, "hook", "list")
    assert out.returncode == 1
    assert "no repository given: give owner/name, or --site" in out.stderr
    out = cli(site, "hook", "list", "carol/edit", "--site")
    assert out.returncode == 1 and "both a repository (carol/edit) and --site" in out.stderr
    out = cli(site, "hook", "add", "carol/edit")
    assert out.returncode == 1 and "give the repository and the URL" in out.stderr
