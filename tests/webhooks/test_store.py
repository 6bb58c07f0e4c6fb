"""am's store side of webhooks: deliveries made in the transaction of the change,
their payloads, the queue the worker reads, the log, redelivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import Store
from applikant.manager.store.webhooks import normalize_events
from applikant.webhooks import Attempt, Outcome

ZERO = "0" * 40
EVENT_ID = "9b2f3c4e-1111-4222-8333-944445555666"


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    s = Store(db, passwords=Passwords(fast=True))
    s.users.add("alice", actor="system")
    s.repos.create("alice/p", actor="system")
    yield s
    s.close()


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


def bodies(store: Store, event: str) -> list[dict]:
    return [json.loads(d.body) for d in store.webhooks.due(later(), 100) if d.event == event]


def push(store: Store, new: str = "a" * 40, event_id: str | None = EVENT_ID) -> None:
    store.audit.record_push(
        "alice/p",
        [{"refname": "refs/heads/main", "old": ZERO, "new": new}],
        actor="user-1",
        event_id=event_id,
    )


def test_a_push_makes_one_delivery_per_interested_hook(store: Store) -> None:
    repo_hook = store.webhooks.add(
        "alice/p", "http://127.0.0.1:9/a", ["push"], actor="system", ping=False
    )
    store.webhooks.add(
        "alice/p", "http://127.0.0.1:9/b", ["repo.deleted"], actor="system", ping=False
    )
    store.webhooks.add(None, "https://example.org/site", ["push"], actor="system", ping=False)
    store.webhooks.add(
        "alice/p", "http://127.0.0.1:9/off", ["push"], actor="system", ping=False, active=False
    )
    push(store)
    push(store)  # the same post-receive delivered twice: recorded once, sent once
    due = store.webhooks.due(later(), 100)
    assert sorted(d.url for d in due) == ["http://127.0.0.1:9/a", "https://example.org/site"]
    assert len({d.body for d in due}) == 1 and {d.event for d in due} == {"push"}
    body = json.loads(due[0].body)
    assert (body["ref"], body["before"], body["after"]) == ("refs/heads/main", ZERO, "a" * 40)
    assert (body["created"], body["deleted"]) == (True, False)
    assert body["commits"] == [] and body["head_commit"] is None  # no git host said more
    assert body["pusher"]["login"] == "alice" and body["pusher"]["id"] == 1
    assert body["repository"]["full_name"] == "alice/p" and body["push_id"] == EVENT_ID
    assert next(d for d in due if d.hook_id == repo_hook.id).secret == repo_hook.secret


def test_deliveries_commit_with_their_change_or_not_at_all(store: Store) -> None:
    store.webhooks.add(
        None, "http://127.0.0.1:9/a", ["push", "repo_created"], actor="system", ping=False
    )
    with pytest.raises(NotFound):
        store.audit.record_push(
            "alice/none",
            [{"refname": "refs/heads/main", "old": ZERO, "new": "b" * 40}],
            actor="user-1",
        )
    with pytest.raises(RuntimeError):
        with store.transaction("system") as tx:
            tx.event("repo.created", repo="alice/p", id="repo-1")
            raise RuntimeError("the change fails after its event was queued")
    assert store.webhooks.due(later(), 100) == []


def test_repo_created_deleted_and_build_finished(store: Store) -> None:
    store.webhooks.add(
        None,
        "http://127.0.0.1:9/a",
        ["repo_created", "repo_deleted", "build_finished"],
        actor="system",
        ping=False,
    )
    store.repos.create("alice/q", actor="system")
    store.repos.delete("alice/q", actor="system")
    with store.transaction("system") as tx:  # as the build queue announces a build
        tx.event(
            "build.finished",
            build="build-7",
            number=7,
            repo="alice/p",
            ref="refs/heads/main",
            commit="c" * 40,
            status="succeeded",
        )
    assert bodies(store, "repo_created")[0]["repository"]["full_name"] == "alice/q"
    assert bodies(store, "repo_created")[0]["action"] == "created"
    deleted = bodies(store, "repo_deleted")[0]
    assert deleted["action"] == "deleted"
    assert deleted["repository"] == {"id": 2, "full_name": "alice/q", "name": "q"}
    build = bodies(store, "build_finished")[0]
    assert build["build"]["id"] == "build-7" and build["build"]["result"] == "succeeded"
    assert build["build"]["url"] == "http://127.0.0.1:8008/alice/p/builds/7"
    assert build["build"]["commit"] == "c" * 40
    assert build["repository"]["full_name"] == "alice/p"


def test_repo_hooks_go_with_their_repository(store: Store) -> None:
    hook = store.webhooks.add("alice/p", "http://127.0.0.1:9/a", ["push"], actor="system")
    assert [d.event for d in store.webhooks.due(later(), 10)] == ["ping"]
    store.repos.delete("alice/p", actor="system")
    with pytest.raises(NotFound):
        store.webhooks.get(hook.id)
    assert store.webhooks.due(later(), 10) == [] and store.webhooks.next_due() is None


def test_attempts_are_logged_and_finish_a_delivery(store: Store) -> None:
    hook = store.webhooks.add(
        "alice/p", "http://127.0.0.1:9/a", ["push"], actor="system", ping=False
    )
    push(store)
    (d,) = store.webhooks.due(later(), 10)
    now = datetime.now(UTC)
    failed = Attempt(
        number=1,
        started_at=now,
        duration=0.5,
        outcome=Outcome.REDIRECT,
        status_code=302,
        location="http://elsewhere/",
        error="redirects are not followed",
    )
    store.webhooks.record_attempt(d.id, failed, now + timedelta(seconds=60))
    assert store.webhooks.due(later(), 10) == []  # not due again yet
    assert store.webhooks.next_due() == now + timedelta(seconds=60)
    ok = Attempt(
        number=2,
        started_at=now,
        duration=0.1,
        outcome=Outcome.DELIVERED,
        status_code=200,
        response="thanks",
    )
    store.webhooks.record_attempt(d.id, ok, None)
    (logged,) = store.webhooks.deliveries(hook.id)
    assert (logged.status, logged.attempts) == ("delivered", 2)
    assert [a.outcome for a in logged.log] == [Outcome.REDIRECT, Outcome.DELIVERED]
    assert logged.log[0].location == "http://elsewhere/" and logged.log[1].response == "thanks"
    assert store.webhooks.get(hook.id).last_status == "delivered"

    again = store.webhooks.redeliver(d.id, actor="system")
    assert again.redelivery_of == d.id and again.body == logged.body and again.status == "pending"
    assert [p.id for p in store.webhooks.due(later(), 10)] == [again.id]
    store.webhooks.remove(hook.id, actor="system")
    store.webhooks.record_attempt(again.id, ok, None)  # removed meanwhile: ignored
    with pytest.raises(NotFound):
        store.webhooks.delivery(again.id)


def test_bad_hooks_are_refused_in_words(store: Store) -> None:
    for url, words in [
        ("file:///etc/passwd", "only http:// and https://"),
        ("http://user:pw@example.org/", "user name or password"),
        ("http:///nohost", "no host"),
        ("", "empty"),
    ]:
        with pytest.raises(BadRequest, match=words):
            store.webhooks.add("alice/p", url, ["push"], actor="system")
    with pytest.raises(BadRequest, match="unknown event"):
        store.webhooks.add("alice/p", "http://127.0.0.1:9/", ["tag"], actor="system")
    with pytest.raises(NotFound):
        store.webhooks.add("alice/none", "http://127.0.0.1:9/", ["push"], actor="system")
    with pytest.raises(BadRequest, match="hook id"):
        store.webhooks.remove("7", actor="system")
    with pytest.raises(BadRequest, match="UUID"):
        store.webhooks.redeliver("nope", actor="system")
    assert store.webhooks.hooks("alice/p") == []


def test_event_names() -> None:
    assert normalize_events(["repo.deleted", "push", "push", "build-finished"]) == [
        "push",
        "repo_deleted",
        "build_finished",
    ]
    for bad in ([], "ping", ["ping"], [1]):
        with pytest.raises(BadRequest):
            normalize_events(bad)


def test_a_hook_is_changed_and_tested(store: Store) -> None:
    hook = store.webhooks.add(
        "alice/p", "http://127.0.0.1:9/a", ["push"], secret="one", actor="system", ping=False
    )
    changed = store.webhooks.update(
        hook.id,
        url="http://127.0.0.1:9/b",
        secret="two",
        events=["push", "build.finished"],
        active=False,
        actor="user-1",
    )
    assert (changed.url, changed.events, changed.active) == (
        "http://127.0.0.1:9/b",
        ["push", "build_finished"],
        False,
    )
    push(store)
    assert bodies(store, "push") == []  # inactive: no deliveries
    test = store.webhooks.test(hook.id, actor="user-1")  # a test goes out all the same
    (due,) = store.webhooks.due(later(), 10)
    assert (due.id, due.event, due.url, due.secret) == (test.id, "ping", changed.url, "two")
    ping = json.loads(due.body)
    assert ping["hook"]["id"] == hook.id and ping["sender"]["login"] == "alice"
    assert ping["repository"]["html_url"] == "http://127.0.0.1:8008/alice/p"
    (entry,) = store.audit.query(action="hook.update")
    assert entry.details["secret_changed"] is True and "two" not in json.dumps(entry.details)
    for bad in ({"url": "ftp://x"}, {"events": ["tag"]}, {"secret": "\x00"}, {"active": "yes"}):
        with pytest.raises(BadRequest):
            store.webhooks.update(hook.id, actor="system", **bad)
    with pytest.raises(NotFound):
        store.webhooks.update("hook-99", url="http://127.0.0.1:9/c", actor="system")
    assert store.webhooks.get(hook.id).url == "http://127.0.0.1:9/b"


def test_old_deliveries_that_are_over_are_pruned(tmp_path: Path) -> None:
    clock = [datetime(2024, 1, 1, tzinfo=UTC)]
    s = Store(str(tmp_path / "am.sqlite3"), clock=lambda: clock[0])
    s.users.add("alice", actor="system")
    s.repos.create("alice/p", actor="system")
    hook = s.webhooks.add("alice/p", "http://127.0.0.1:9/a", ["push"], actor="system", ping=False)
    push(s, event_id="old-1")
    push(s, new="b" * 40, event_id="old-2")
    done, pending = sorted(s.webhooks.deliveries(hook.id), key=lambda d: d.body)
    attempt = Attempt(number=1, started_at=clock[0], duration=0.1, outcome=Outcome.DELIVERED)
    s.webhooks.record_attempt(done.id, attempt, None)
    clock[0] += timedelta(days=40)
    push(s, new="c" * 40, event_id="new-1")
    assert s.webhooks.prune_deliveries(clock[0] - timedelta(days=30)) == 1
    left = {d.id for d in s.webhooks.deliveries(hook.id)}
    assert done.id not in left and pending.id in left and len(left) == 2  # pending stays
