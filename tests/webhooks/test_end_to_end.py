"""Webhooks end to end: a real am (and af, sshd, git) and a real HTTP receiver
on loopback that checks signatures, fails on purpose and comes back.

One site for the module (starting it costs seconds); each test uses its own
repository and receiver paths. The retry policy is made short through the
config's [webhooks] table so that backoff is seen in seconds.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from applikant.node.errors import RemoteError
from harness.gitenv import GitSite, User
from harness.wait import wait_until

from .receiver import SECRET, free_port
from .threaded import ThreadedReceiver

ZERO = "0" * 40
WEBHOOKS_TOML = """
[webhooks]
retry_base = 0.4
retry_factor = 2.0
retry_cap = 2.0
max_attempts = 6
retry_jitter = 0.0
connect_timeout = 1.0
read_timeout = 1.0
total_timeout = 1.5
poll_interval = 1.0
allowed_hosts = ["loopback"]  # the receivers are on loopback
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitSite]:
    with GitSite(tmp_path_factory.mktemp("hooks"), af_toml=WEBHOOKS_TOML) as s:
        yield s


@pytest.fixture(scope="module")
def alice(site: GitSite) -> User:
    return site.add_user("alice")


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    with ThreadedReceiver() as r:
        yield r


def add_hook(
    site: GitSite, repo: str | None, url: str, events: list[str] | None = None, **kw: Any
) -> dict[str, Any]:
    return site.call_am(
        "am_webhooks",
        "add_hook",
        {
            "repo": repo,
            "url": url,
            "events": events or ["push"],
            "secret": SECRET,
            "ping": False,
            **kw,
        },
    )


def deliveries(site: GitSite, hook: str) -> list[dict[str, Any]]:
    return site.call_am("am_webhooks", "list_deliveries", {"hook": hook})["items"]


def finished(site: GitSite, hook: str, n: int = 1) -> list[dict[str, Any]] | None:
    ds = deliveries(site, hook)
    done = [d for d in ds if d["status"] != "pending"]
    return ds if len(ds) >= n and len(done) == len(ds) else None


def push_new_commit(site: GitSite, user: User, repo: str, work: Path) -> str:
    if not work.exists():
        site.clone(user, repo, work)
    commit = site.commit(work, "change")
    site.push(user, work, "HEAD:refs/heads/main")
    return commit


def cli(site: GitSite, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", *args],
        env={**os.environ, **site.env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_push_over_ssh_delivers_a_signed_push(
    site: GitSite, alice: User, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    site.create_repo("alice/push")
    hook = add_hook(site, "alice/push", receiver.url("/ok/push"))
    assert "secret" in hook and hook["repo"] == "alice/push"
    commit = push_new_commit(site, alice, "alice/push", tmp_path / "w")

    (seen,) = wait_until(lambda: receiver.seen("/ok/push", "push"), what="the push delivery")
    assert seen.signed
    body = json.loads(seen.body)
    assert body["event"] == "push"
    assert body["repository"]["full_name"] == "alice/push"
    assert body["pusher"]["login"] == "alice"
    assert (body["ref"], body["before"], body["after"]) == ("refs/heads/main", ZERO, commit)
    assert (body["created"], body["deleted"]) == (True, False)
    assert [c["id"] for c in body["commits"]] == [commit]  # af described the push
    assert seen.headers["user-agent"].startswith("Applikant-Hookshot/")

    (d,) = wait_until(lambda: finished(site, hook["id"]), what="the delivery recorded")
    assert d["id"] == seen.headers["x-applikant-delivery"]
    assert (d["status"], d["attempts"]) == ("delivered", 1)
    assert d["log"][0]["status_code"] == 200 and d["log"][0]["response"] == "thanks"

    # The CLI shows the same log, and the hook's last status.
    out = cli(site, "hook", "deliveries", hook["id"], "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["id"] == d["id"]
    listed = json.loads(cli(site, "hook", "list", "alice/push", "--json").stdout)
    assert [(h["id"], h["last_status"]) for h in listed] == [(hook["id"], "delivered")]
    assert "secret" not in listed[0]

    # Redeliver: a new delivery, the same bytes, signed again.
    again = json.loads(cli(site, "hook", "redeliver", d["id"], "--json").stdout)
    assert again["redelivery_of"] == d["id"] and again["id"] != d["id"]
    second = wait_until(lambda: receiver.seen("/ok/push", "push")[1:], what="the redelivery")[0]
    assert second.body == seen.body and second.signed
    assert second.headers["x-applikant-delivery"] == again["id"]


def test_failing_receiver_is_retried_with_backoff(
    site: GitSite, alice: User, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    site.create_repo("alice/flaky")
    path = "/flaky/3/retry"
    hook = add_hook(site, "alice/flaky", receiver.url(path))
    push_new_commit(site, alice, "alice/flaky", tmp_path / "w")

    (d,) = wait_until(lambda: finished(site, hook["id"]), what="the delivery after retries")
    assert d["status"] == "delivered" and d["attempts"] == 4
    assert [a["status_code"] for a in d["log"]] == [500, 500, 500, 200]
    assert [a["outcome"] for a in d["log"]] == ["http-error"] * 3 + ["delivered"]
    assert d["log"][0]["response"] == "down on purpose"
    seen = receiver.seen(path)
    assert len(seen) == 4 and all(s.signed for s in seen)
    assert len({s.headers["x-applikant-delivery"] for s in seen}) == 1
    assert len({s.body for s in seen}) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    # 0.4, 0.8, 1.6 s (no jitter); the worker may wake a little late, never early.
    for gap, want in zip(gaps, [0.4, 0.8, 1.6], strict=False):
        assert want - 0.05 <= gap <= want + 1.2, gaps


def test_pending_delivery_survives_am_killed(site: GitSite, alice: User, tmp_path: Path) -> None:
    site.create_repo("alice/durable")
    port = free_port()  # nobody listens yet: attempts are refused and retried
    hook = add_hook(site, "alice/durable", f"http://127.0.0.1:{port}/ok/durable")
    commit = push_new_commit(site, alice, "alice/durable", tmp_path / "w")
    (pending,) = deliveries(site, hook["id"])
    assert pending["status"] == "pending"

    site.kill_am()
    with ThreadedReceiver(port) as late:
        site.start_am()
        site.wait_synced()
        (seen,) = wait_until(
            lambda: late.seen("/ok/durable", "push"), what="delivery after restart"
        )
    assert seen.signed and json.loads(seen.body)["after"] == commit
    assert seen.headers["x-applikant-delivery"] == pending["id"]
    (d,) = wait_until(lambda: finished(site, hook["id"]), what="the delivery recorded")
    assert d["status"] == "delivered"
    assert d["log"][-1]["status_code"] == 200
    assert all(a["outcome"] == "connection-error" for a in d["log"][:-1])


def test_non_http_url_is_refused_at_add_time(site: GitSite, alice: User) -> None:
    site.create_repo("alice/badurl")
    for url in ("file:///etc/passwd", "ftp://example.org/x", "javascript:alert(1)"):
        with pytest.raises(RemoteError) as err:
            add_hook(site, "alice/badurl", url)
        assert err.value.kind == "bad_request"
        assert "only http:// and https://" in str(err.value)
    out = cli(site, "hook", "add", "alice/badurl", "ftp://example.org/x")
    assert out.returncode != 0
    assert "only http:// and https://" in out.stderr + out.stdout
    with pytest.raises(RemoteError) as err:
        add_hook(site, "alice/badurl", "http://127.0.0.1:1/x", events=["tag"])
    assert "unknown event" in str(err.value)
    assert site.call_am("am_webhooks", "list_hooks", {"repo": "alice/badurl"}) == []


def test_hanging_receiver_is_recorded_as_could_not_deliver(
    site: GitSite, alice: User, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    site.create_repo("alice/hang")
    hook = add_hook(site, "alice/hang", receiver.url("/hang/x"))
    push_new_commit(site, alice, "alice/hang", tmp_path / "w")

    def first_attempt() -> Any:
        ds = deliveries(site, hook["id"])
        return ds and ds[0]["log"] and ds[0]["log"][0]

    attempt = wait_until(first_attempt, what="the first attempt")
    assert attempt["outcome"] == "connection-error" and attempt["status_code"] is None
    assert 1.0 <= attempt["duration"] < 10  # the 1 s read timeout, not a later one
    assert attempt["error"] == "could not deliver"  # as for a closed port
    site.call_am("am_webhooks", "remove_hook", {"hook": hook["id"]})


def test_answers_are_shown_whole_to_site_admins_only(
    site: GitSite, alice: User, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    site.create_repo("alice/big")  # alice's: she administers its hooks
    hook = add_hook(site, "alice/big", receiver.url("/big/x"))
    push_new_commit(site, alice, "alice/big", tmp_path / "w")

    def delivered() -> Any:
        ds = deliveries(site, hook["id"])
        return ds and ds[0]["log"] and ds[0]["log"][0]["outcome"] == "delivered" and ds[0]

    as_admin = wait_until(delivered, what="the delivery")
    assert as_admin["log"][0]["response"] == "x" * 4096  # [webhooks] max_response
    [as_alice] = site.call_am(
        "am_webhooks", "list_deliveries", {"hook": hook["id"], "actor": alice.id}
    )["items"]
    assert as_alice["log"][0]["response"] == "x" * 256
    one = site.call_am(
        "am_webhooks", "get_delivery", {"delivery": as_alice["id"], "actor": alice.id}
    )
    assert one["log"][0]["response"] == "x" * 256
    site.call_am("am_webhooks", "remove_hook", {"hook": hook["id"]})


def test_endless_redirects_are_recorded_as_redirect_failures(
    site: GitSite, alice: User, receiver: ThreadedReceiver, tmp_path: Path
) -> None:
    site.create_repo("alice/redirect")
    hook = add_hook(site, "alice/redirect", receiver.url("/redirect/x"))
    push_new_commit(site, alice, "alice/redirect", tmp_path / "w")

    def first_attempt() -> Any:
        ds = deliveries(site, hook["id"])
        return ds and ds[0]["log"] and ds[0]["log"][0]

    attempt = wait_until(first_attempt, what="the first attempt")
    assert (attempt["outcome"], attempt["status_code"]) == ("redirect", 302)
    assert attempt["location"] == receiver.url("/redirect/x")
    assert attempt["error"] == "redirects are not followed"
    # One request per attempt: the loop is not followed.
    assert len(receiver.seen("/redirect/x")) == deliveries(site, hook["id"])[0]["attempts"]
    site.call_am("am_webhooks", "remove_hook", {"hook": hook["id"]})


def test_site_hook_hears_repositories_made_and_deleted(
    site: GitSite, alice: User, receiver: ThreadedReceiver
) -> None:
    out = cli(
        site,
        "hook",
        "add",
        "--site",
        receiver.url("/ok/site"),
        "--event",
        "repo.created",
        "--event",
        "repo_deleted",
        "--secret",
        SECRET,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    hook = json.loads(out.stdout)
    assert hook["repo"] is None and hook["events"] == ["repo_created", "repo_deleted"]
    wait_until(lambda: receiver.seen("/ok/site", "ping"), what="the ping")
    site.create_repo("alice/sitewide")
    site.call_am("am_repo_db", "delete_repo", {"repo": "alice/sitewide"})
    created = wait_until(lambda: receiver.seen("/ok/site", "repo_created"), what="repo_created")
    deleted = wait_until(lambda: receiver.seen("/ok/site", "repo_deleted"), what="repo_deleted")
    assert json.loads(created[0].body)["repository"]["full_name"] == "alice/sitewide"
    assert json.loads(deleted[0].body)["repository"]["full_name"] == "alice/sitewide"
    assert cli(site, "hook", "rm", hook["id"]).returncode == 0
    assert site.call_am("am_webhooks", "list_hooks", {"repo": None}) == []


def test_only_repo_admins_manage_a_repos_hooks(
    site: GitSite, alice: User, receiver: ThreadedReceiver
) -> None:
    bob = site.call_am("am_user_db", "add_user", {"login": "bob-hooks"})
    site.create_repo("alice/private", wait=False)
    as_bob = {
        "actor": bob["id"],
        "repo": "alice/private",
        "url": receiver.url("/ok/bob"),
        "events": ["push"],
    }
    with pytest.raises(RemoteError) as err:
        site.call_am("am_webhooks", "add_hook", as_bob)
    assert err.value.kind == "not_found"
    site.grant("alice/private", "bob-hooks", "write")
    with pytest.raises(RemoteError) as err:
        site.call_am("am_webhooks", "add_hook", as_bob)
    assert err.value.kind == "forbidden"
    with pytest.raises(RemoteError) as err:
        site.call_am("am_webhooks", "list_hooks", {"actor": bob["id"], "repo": None})
    assert err.value.kind == "forbidden"
    site.grant("alice/private", "bob-hooks", "admin")
    made = site.call_am("am_webhooks", "add_hook", {**as_bob, "ping": False})
    assert made["created_by"] == bob["id"]
