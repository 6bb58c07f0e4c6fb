"""Web sessions in the store (store.sessions) and through am (am_sessions):
kept as hashes, found by hash, ended at logout, at a password change, when the
account is disabled, and by themselves when idle or old."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.sessions import SESSIONS_PER_USER_MAX, session_hash
from harness.am import Am, add_user

FAST = Passwords(fast=True)
HOUR = 3600


def start(store: Store, user: str, **kw: object):  # type: ignore[no-untyped-def]
    args = {"address": "192.0.2.7", "user_agent": "Firefox", "idle": HOUR, "max_age": 24 * HOUR}
    return store.sessions.start(user, actor=user, **{**args, **kw})  # type: ignore[arg-type]


def test_start_find_list_end(store: Store, alice: str, tmp_path: Path) -> None:
    made = start(store, alice)
    assert made.id.startswith("session-") and made.user == alice
    assert (made.address, made.user_agent, made.idle_timeout) == ("192.0.2.7", "Firefox", HOUR)
    assert made.secret not in repr(made) and len(made.secret) >= 43
    if store.core.backend.name == "sqlite":  # the secret is not in the database file
        store.core.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert made.secret.encode() not in (tmp_path / "am.sqlite3").read_bytes()
    stored = store.core.connection.execute("SELECT token_hash FROM sessions").fetchone()[0]
    assert stored == session_hash(made.secret)

    found = store.sessions.find(made.secret)
    assert found is not None and found[0].id == made.id and found[1].login == "alice"
    for wrong in (made.secret + "x", "", "x" * 600, None, 42):
        assert store.sessions.find(wrong) is None
    assert [s.id for s in store.sessions.of("alice")] == [made.id]

    ended = store.sessions.end(made.id, actor=alice, user=alice)
    assert ended.id == made.id
    assert store.sessions.find(made.secret) is None
    assert store.sessions.of(alice) == []
    actions = [(e.action, e.actor) for e in store.audit.query(action="session")]
    assert actions == [("session.end", alice), ("session.start", alice)]
    assert all(made.secret not in str(e.details) for e in store.audit.query(action="session"))


def test_someone_elses_session_is_not_found(store: Store, alice: str, bob: str) -> None:
    made = start(store, alice)
    with pytest.raises(NotFound):
        store.sessions.end(made.id, actor=bob, user=bob)
    assert store.sessions.find(made.secret) is not None
    for ref in ("session-x", "token-1", "", "session-0"):
        with pytest.raises(BadRequest):
            store.sessions.end(ref, actor=alice)
    with pytest.raises(NotFound):
        store.sessions.end("session-999", actor=alice)


def test_password_change_and_disabling_end_every_session(store: Store, alice: str) -> None:
    a, b = start(store, alice), start(store, alice)
    store.users.set_password(alice, "a-new-password", actor=alice)
    assert store.sessions.find(a.secret) is None and store.sessions.find(b.secret) is None
    c = start(store, alice)
    store.users.disable(alice, actor=SYSTEM)
    assert store.sessions.find(c.secret) is None
    store.users.enable(alice, actor=SYSTEM)
    assert store.sessions.find(c.secret) is None  # ended, not suspended
    with pytest.raises(BadRequest, match="disabled"):
        store.users.disable(alice, actor=SYSTEM)
        start(store, alice)


def test_end_all_keeps_the_callers_own(store: Store, alice: str) -> None:
    mine, other, third = start(store, alice), start(store, alice), start(store, alice)
    assert store.sessions.end_all(alice, actor=alice, keep=mine.id) == 2
    assert store.sessions.find(mine.secret) is not None
    assert store.sessions.find(other.secret) is None and store.sessions.find(third.secret) is None
    assert store.sessions.end_all(alice, actor=alice) == 1
    assert store.sessions.of(alice) == []


def test_idle_and_absolute_expiry(tmp_path: Path) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    with Store(str(tmp_path / "am.sqlite3"), passwords=FAST, clock=lambda: now[0]) as store:
        uid = store.users.add("carol", actor=SYSTEM).id
        made = start(store, uid, idle=HOUR, max_age=3 * HOUR)
        now[0] += timedelta(minutes=59)
        found = store.sessions.find(made.secret)
        assert found is not None
        assert store.sessions.touch_due(found[0], "192.0.2.7")
        store.sessions.touch(made.id, "198.51.100.1")
        now[0] += timedelta(seconds=30)
        found = store.sessions.find(made.secret)
        assert found is not None and found[0].address == "198.51.100.1"
        assert not store.sessions.touch_due(found[0], "198.51.100.1")  # once a minute
        assert store.sessions.touch_due(found[0], "203.0.113.9")  # a new address is noted
        now[0] += timedelta(minutes=59)  # seen 59.5 minutes ago: still alive
        assert store.sessions.find(made.secret) is not None
        now[0] += timedelta(minutes=1)  # idle for more than an hour
        assert store.sessions.find(made.secret) is None
        assert store.sessions.of(uid) == []

        old = start(store, uid, idle=HOUR, max_age=2 * HOUR)
        for _ in range(5):
            now[0] += timedelta(minutes=30)
            store.sessions.touch(old.id, "192.0.2.7")
        assert store.sessions.find(old.secret) is None  # past expires_at, however busy
        start(store, uid)  # purges what expired
        count = store.core.connection.execute("SELECT count(*) FROM sessions").fetchone()[0]
        assert count == 1


def test_confirm_and_the_cap(store: Store, alice: str) -> None:
    first = start(store, alice)
    confirmed = store.sessions.confirm(first.id)
    assert confirmed.authenticated_at >= first.authenticated_at
    for _ in range(SESSIONS_PER_USER_MAX + 5):
        last = start(store, alice)
    sessions = store.sessions.of(alice)
    assert len(sessions) == SESSIONS_PER_USER_MAX and sessions[0].id == last.id
    assert store.sessions.find(first.secret) is None  # the oldest went first
    with pytest.raises(BadRequest):
        start(store, alice, idle=0)
    with pytest.raises(NotFound):
        start(store, "ghost")


# ---- through a real am -------------------------------------------------------------


def test_am_sessions(am: Am) -> None:
    me = add_user(am, "sessuser", password="sess-password-1")
    other = add_user(am, "sessother", password="other-password-1")
    call = am.call
    assert call("am_sessions", "login", {"login": "sessuser", "password": "wrong"}) is None
    assert call("am_sessions", "login", {"login": "ghost", "password": "x"}) is None
    made = call(
        "am_sessions",
        "login",
        {"login": "sessuser", "password": "sess-password-1", "address": "::1", "user_agent": "t"},
    )
    session, secret = made["session"], made["session"]["secret"]
    assert made["user"]["id"] == me["id"] and "password_hash" not in made["user"]
    got = call("am_sessions", "resolve", {"secret": secret, "address": "::1"})
    assert got["session"]["id"] == session["id"] and got["user"]["login"] == "sessuser"
    assert "secret" not in got["session"]
    # Only the cluster's services log in and resolve; users list and end their own.
    for method, args in [
        ("login", {"login": "sessuser", "password": "sess-password-1"}),
        ("resolve", {"secret": secret}),
        ("start", {"user": me["id"]}),
        ("confirm", {"session": session["id"]}),
    ]:
        assert am.error("am_sessions", method, {**args, "actor": me["id"]}).kind == "forbidden"
    listed = call("am_sessions", "list", {"actor": me["id"], "user": me["id"]})
    assert [s["id"] for s in listed] == [session["id"]]
    err = am.error("am_sessions", "list", {"actor": other["id"], "user": me["id"]})
    assert err.kind == "forbidden"
    err = am.error("am_sessions", "end", {"actor": other["id"], "session": session["id"]})
    assert err.kind == "not_found"
    assert call("am_sessions", "resolve", {"secret": secret}) is not None
    # A password change ends it; a new one is started for the browser that made it.
    am.users("set_password", actor=me["id"], user=me["id"], password="sess-password-2")
    assert call("am_sessions", "resolve", {"secret": secret}) is None
    fresh = call("am_sessions", "start", {"user": me["id"], "address": "::1"})
    assert call("am_sessions", "resolve", {"secret": fresh["secret"]})["user"]["id"] == me["id"]
    ended = call("am_sessions", "end_all", {"actor": me["id"], "user": me["id"]})
    assert ended == {"ended": 1}
    assert call("am_sessions", "resolve", {"secret": fresh["secret"]}) is None
    # Bad input is a typed refusal.
    for args in ({"login": "sessuser"}, {"login": "sessuser", "password": "x", "idle": 1}):
        assert am.error("am_sessions", "login", args).kind == "bad_request"


def test_resolve_repo_answers_the_session_and_the_access_as_they_are_now(am: Am) -> None:
    """A repository page's three questions in one call: resolve, check_access
    and get_repo for the session's user; each asked again on the next call."""
    me = add_user(am, "rrowner", password="rr-password-1")
    other = add_user(am, "rrother", password="rr-password-2")
    am.repos("create_repo", actor=me["id"], path="rrowner/app")
    call = am.call

    def secret_of(login: str, password: str) -> str:
        made = call("am_sessions", "login", {"login": login, "password": password})
        return str(made["session"]["secret"])

    mine, theirs = secret_of("rrowner", "rr-password-1"), secret_of("rrother", "rr-password-2")
    args = {"secret": mine, "address": "::1", "repo": "RROWNER/app"}
    got = call("am_sessions", "resolve_repo", args)
    alone = call("am_sessions", "resolve", {"secret": mine, "address": "::1"})
    assert got["session"]["id"] == alone["session"]["id"] and got["user"] == alone["user"]
    assert alone["session"]["address"] == "::1"  # noted, as resolve notes it
    decision = am.repos("check_access", user=me["id"], repo="RROWNER/app", access="read")
    assert got["decision"] == decision and decision["repo"] == "rrowner/app"
    assert got["repo"] == am.repos("get_repo", actor=me["id"], repo="rrowner/app")
    admin = call("am_sessions", "resolve_repo", {**args, "access": "admin"})
    assert admin["decision"]["allowed"] and admin["decision"]["level"] == "admin"

    # Someone without access: the refusal, and no repository.
    theirs_args = {"secret": theirs, "repo": "rrowner/app"}
    refused = call("am_sessions", "resolve_repo", theirs_args)
    assert refused["user"]["id"] == other["id"]
    assert refused["decision"]["allowed"] is False and refused["repo"] is None
    missing = call("am_sessions", "resolve_repo", {**theirs_args, "repo": "rrowner/nothing"})
    assert missing["decision"]["allowed"] is False and missing["repo"] is None
    # A grant counts on the very next call, and so does its revocation.
    am.repos("grant", actor=me["id"], repo="rrowner/app", grantee=other["id"], level="read")
    assert call("am_sessions", "resolve_repo", theirs_args)["repo"]["full_name"] == "rrowner/app"
    am.repos("revoke", actor=me["id"], repo="rrowner/app", grantee=other["id"])
    assert call("am_sessions", "resolve_repo", theirs_args)["repo"] is None
    # An ended session answers nothing at all; only the cluster's services ask.
    call("am_sessions", "end_all", {"actor": other["id"], "user": other["id"]})
    assert call("am_sessions", "resolve_repo", theirs_args) is None
    err = am.error("am_sessions", "resolve_repo", {**args, "actor": me["id"]})
    assert err.kind == "forbidden"
    for bad in ({"secret": mine}, {**args, "access": "owner"}, {**args, "repo": 7}):
        assert am.error("am_sessions", "resolve_repo", bad).kind == "bad_request"
