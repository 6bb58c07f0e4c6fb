"""The models at the service boundary: JSON round trips, and inputs that fit the store."""

from __future__ import annotations

import inspect
import threading

import msgpack
import pytest

from applikant.manager import models
from applikant.manager.store import SYSTEM, Store
from tests.manager.helpers import random_ed25519_line

INPUTS = [
    (models.NewUser, "add_user"),
    (models.UserChanges, "update_user"),
    (models.NewKey, "add_key"),
    (models.NewRepo, "create_repo"),
    (models.RepoChanges, "update_repo"),
    (models.GrantRequest, "grant"),
    (models.BranchRule, "protect_branch"),
    (models.AuditQuery, "query_audit"),
]


@pytest.mark.parametrize(("model", "method"), INPUTS)
def test_input_fields_are_method_parameters(model: type, method: str) -> None:
    params = inspect.signature(getattr(Store, method)).parameters
    assert set(model.model_fields) <= set(params), set(model.model_fields) - set(params)


def test_outputs_survive_msgpack(store: Store) -> None:
    req = models.NewUser(login="alice", password="alice-password")
    assert "alice-password" not in repr(req)
    alice = store.add_user(**req.model_dump(), actor=SYSTEM)
    key = store.add_key(
        **models.NewKey(user=alice.id, key=random_ed25519_line()).model_dump(), actor=SYSTEM
    )
    repo = store.create_repo(**models.NewRepo(path="alice/app").model_dump(), actor=SYSTEM)
    store.protect_branch(
        **models.BranchRule(repo="alice/app", pattern="main").model_dump(), actor=SYSTEM
    )
    outputs = [
        alice,
        key,
        repo,
        store.list_protected("alice/app")[0],
        store.grant(
            **models.GrantRequest(repo="alice/app", grantee="alice", level="read").model_dump(),
            actor=SYSTEM,
        ),
        store.query_audit(**models.AuditQuery(limit=1).model_dump())[0],
        store.check_access(alice.id, "alice/app", "write"),
        store.counts(),
        store.create_group("team", actor=SYSTEM),
    ]
    for out in outputs:
        wire = msgpack.packb(out.model_dump(mode="json"))
        assert type(out).model_validate(msgpack.unpackb(wire)) == out


def test_threads_one_at_a_time(store: Store) -> None:
    """The lock serialises callers from several threads (as trio's worker threads are)."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                user = store.add_user(f"t{n}x{i}", actor=SYSTEM)
                store.create_repo(f"t{n}x{i}/r", actor=SYSTEM)
                assert store.check_access(user.id, f"t{n}x{i}/r", "admin").allowed
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.counts().users == 80 and store.counts().repos == 80
