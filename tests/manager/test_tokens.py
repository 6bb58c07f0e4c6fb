"""Personal API tokens in the store: made once, kept as hashes, found by hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.manager.tokens import TOKENS_PER_USER_MAX, token_hash

FAST = Passwords(fast=True)


def test_create_verify_list_revoke(store: Store, alice: str, tmp_path: Path) -> None:
    made = store.create_token("alice", "ci", actor=alice)
    assert made.id.startswith("token-") and made.user == alice and made.title == "ci"
    assert made.token.startswith(f"{alice}.") and len(made.token.split(".", 1)[1]) >= 43
    assert made.token not in repr(made)
    # Only the hash is kept: the secret is nowhere in the database files.
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert made.token.encode() not in (tmp_path / "am.sqlite3").read_bytes()
    stored = store._conn.execute("SELECT token_hash FROM api_tokens").fetchone()[0]
    assert stored == token_hash(made.token)

    user = store.verify_token(made.token)
    assert user is not None and user.id == alice and user.login == "alice"
    listed = store.list_tokens(alice)
    assert [(t.id, t.title) for t in listed] == [(made.id, "ci")]
    assert listed[0].last_used_at is not None
    assert not hasattr(listed[0], "token")

    revoked = store.revoke_token(made.id, actor=alice, user="alice")
    assert revoked.id == made.id
    assert store.verify_token(made.token) is None
    assert store.list_tokens(alice) == []
    actions = [(e.action, e.actor) for e in store.query_audit(action="token")]
    assert actions == [("token.revoke", alice), ("token.create", alice)]
    for entry in store.query_audit(action="token"):
        assert made.token not in str(entry.details) and stored not in str(entry.details)


def test_wrong_tokens_are_none(store: Store, alice: str, bob: str) -> None:
    made = store.create_token(alice, "ci", actor=SYSTEM)
    secret = made.token.split(".", 1)[1]
    for wrong in (
        made.token + "x",
        made.token[:-1],
        f"{bob}.{secret}",
        secret,
        "",
        "user-1." + "x" * 600,
        None,
        42,
    ):
        assert store.verify_token(wrong) is None, wrong


def test_disabled_accounts_tokens_stop_working(store: Store, alice: str) -> None:
    made = store.create_token(alice, "ci", actor=SYSTEM)
    store.disable_user(alice, actor=SYSTEM)
    assert store.verify_token(made.token) is None
    store.enable_user(alice, actor=SYSTEM)
    assert store.verify_token(made.token).id == alice  # type: ignore[union-attr]


def test_someone_elses_token_is_not_found(store: Store, alice: str, bob: str) -> None:
    made = store.create_token(alice, "ci", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.revoke_token(made.id, actor=bob, user=bob)
    with pytest.raises(NotFound):
        store.revoke_token("token-999", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.revoke_token("key-1", actor=SYSTEM)
    assert store.verify_token(made.token) is not None


@pytest.mark.parametrize("title", ["", "   ", "x" * 101, "tab\there", 7])
def test_bad_titles_change_nothing(store: Store, alice: str, title: object) -> None:
    with pytest.raises(BadRequest):
        store.create_token(alice, title, actor=SYSTEM)  # type: ignore[arg-type]
    assert store.list_tokens(alice) == []
    with pytest.raises(NotFound):
        store.create_token("ghost", "ci", actor=SYSTEM)


def test_tokens_per_user_are_capped(store: Store, alice: str) -> None:
    for i in range(TOKENS_PER_USER_MAX):
        store.create_token(alice, f"t{i}", actor=SYSTEM)
    with pytest.raises(Conflict):
        store.create_token(alice, "one more", actor=SYSTEM)


def test_last_used_is_written_once_a_minute(tmp_path: Path) -> None:
    now = [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]
    with Store(str(tmp_path / "am.sqlite3"), passwords=FAST, clock=lambda: now[0]) as store:
        uid = store.add_user("alice", actor=SYSTEM).id
        made = store.create_token(uid, "ci", actor=SYSTEM)
        store.verify_token(made.token)
        first = store.list_tokens(uid)[0].last_used_at
        assert first == now[0]
        now[0] += timedelta(seconds=30)
        store.verify_token(made.token)
        assert store.list_tokens(uid)[0].last_used_at == first
        now[0] += timedelta(seconds=31)
        store.verify_token(made.token)
        assert store.list_tokens(uid)[0].last_used_at == now[0]


def test_lookup_by_hash_uses_the_index(store: Store) -> None:
    from applikant.manager.tokens import TOKEN_SELECT

    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN " + TOKEN_SELECT + " WHERE token_hash = ?", ("x",)
    ).fetchall()
    details = [row["detail"] for row in plan]
    assert any("USING INDEX" in d for d in details), details
