"""Personal API tokens in the store: made once, kept as hashes, found by hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.tokens import TOKENS_PER_USER_MAX, token_hash
from tests.manager.helpers import is_postgres, plan, raw, uses_index

FAST = Passwords(fast=True)


def test_create_verify_list_revoke(store: Store, alice: str, tmp_path: Path) -> None:
    made = store.tokens.create("alice", "ci", actor=alice)
    assert made.id.startswith("token-") and made.user == alice and made.title == "ci"
    assert made.token.startswith(f"{alice}.") and len(made.token.split(".", 1)[1]) >= 43
    assert made.token not in repr(made)
    # Only the hash is kept: the secret is nowhere in the database files.
    if not is_postgres(store):
        raw(store, "PRAGMA wal_checkpoint(TRUNCATE)")
        assert made.token.encode() not in (tmp_path / "am.sqlite3").read_bytes()
    assert not raw(store, "SELECT 1 FROM api_tokens WHERE token_hash = ?", (made.token,)).fetchall()
    stored = raw(store, "SELECT token_hash FROM api_tokens").fetchone()[0]
    assert stored == token_hash(made.token)

    user = store.tokens.verify(made.token)
    assert user is not None and user.id == alice and user.login == "alice"
    listed = store.tokens.of(alice)
    assert [(t.id, t.title) for t in listed] == [(made.id, "ci")]
    assert listed[0].last_used_at is not None
    assert not hasattr(listed[0], "token")

    revoked = store.tokens.revoke(made.id, actor=alice, user="alice")
    assert revoked.id == made.id
    assert store.tokens.verify(made.token) is None
    assert store.tokens.of(alice) == []
    actions = [(e.action, e.actor) for e in store.audit.query(action="token")]
    assert actions == [("token.revoke", alice), ("token.create", alice)]
    for entry in store.audit.query(action="token"):
        assert made.token not in str(entry.details) and stored not in str(entry.details)


def test_wrong_tokens_are_none(store: Store, alice: str, bob: str) -> None:
    made = store.tokens.create(alice, "ci", actor=SYSTEM)
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
        assert store.tokens.verify(wrong) is None, wrong


def test_disabled_accounts_tokens_stop_working(store: Store, alice: str) -> None:
    made = store.tokens.create(alice, "ci", actor=SYSTEM)
    store.users.disable(alice, actor=SYSTEM)
    assert store.tokens.verify(made.token) is None
    store.users.enable(alice, actor=SYSTEM)
    assert store.tokens.verify(made.token).id == alice  # type: ignore[union-attr]


def test_someone_elses_token_is_not_found(store: Store, alice: str, bob: str) -> None:
    made = store.tokens.create(alice, "ci", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.tokens.revoke(made.id, actor=bob, user=bob)
    with pytest.raises(NotFound):
        store.tokens.revoke("token-999", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.tokens.revoke("key-1", actor=SYSTEM)
    assert store.tokens.verify(made.token) is not None


@pytest.mark.parametrize("title", ["", "   ", "x" * 101, "tab\there", 7])
def test_bad_titles_change_nothing(store: Store, alice: str, title: object) -> None:
    with pytest.raises(BadRequest):
        store.tokens.create(alice, title, actor=SYSTEM)  # type: ignore[arg-type]
    assert store.tokens.of(alice) == []
    with pytest.raises(NotFound):
        store.tokens.create("ghost", "ci", actor=SYSTEM)


def test_tokens_per_user_are_capped(store: Store, alice: str) -> None:
    for i in range(TOKENS_PER_USER_MAX):
        store.tokens.create(alice, f"t{i}", actor=SYSTEM)
    with pytest.raises(Conflict):
        store.tokens.create(alice, "one more", actor=SYSTEM)


def test_last_used_is_written_once_a_minute(tmp_path: Path) -> None:
    now = [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]
    with Store(str(tmp_path / "am.sqlite3"), passwords=FAST, clock=lambda: now[0]) as store:
        uid = store.users.add("alice", actor=SYSTEM).id
        made = store.tokens.create(uid, "ci", actor=SYSTEM)
        store.tokens.verify(made.token)
        first = store.tokens.of(uid)[0].last_used_at
        assert first == now[0]
        now[0] += timedelta(seconds=30)
        store.tokens.verify(made.token)
        assert store.tokens.of(uid)[0].last_used_at == first
        now[0] += timedelta(seconds=31)
        store.tokens.verify(made.token)
        assert store.tokens.of(uid)[0].last_used_at == now[0]


def test_lookup_by_hash_uses_the_index(store: Store) -> None:
    from applikant.manager.store.tokens import TOKEN_SELECT

    steps = plan(store, TOKEN_SELECT + " WHERE token_hash = ?", ("x",))
    assert uses_index(steps), steps
