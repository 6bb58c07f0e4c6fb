"""The schema at the service boundary: results survive msgpack, and the bodies
people send fit the store methods that take them."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.access import Access
from applikant.manager.store.audit import Audit
from applikant.manager.store.branches import Branches
from applikant.manager.store.groups import Groups
from applikant.manager.store.keys import Keys
from applikant.manager.store.repos import Repos
from applikant.manager.store.tokens import Tokens
from applikant.manager.store.users import Users
from applikant.schema import repos, users
from tests.manager.helpers import random_ed25519_line

INPUTS: list[tuple[type, Callable[..., Any]]] = [
    (users.NewUser, Users.add),
    (users.UserChanges, Users.update),
    (users.NewKey, Keys.add),
    (users.NewToken, Tokens.create),
    (users.NewGroup, Groups.create),
    (repos.RepoSettings, Repos.create),
    (repos.RepoChanges, Repos.update),
    (repos.GrantLevel, Access.grant),
    (repos.BranchRule, Branches.protect),
    (repos.AuditFilter, Audit.page),
]


@pytest.mark.parametrize(("model", "method"), INPUTS)
def test_input_fields_are_method_parameters(model: type, method: Callable[..., Any]) -> None:
    params = inspect.signature(method).parameters
    assert set(model.model_fields) <= set(params), set(model.model_fields) - set(params)


def test_outputs_survive_msgpack(store: Store) -> None:
    req = users.NewUser(login="alice", password="alice-password")
    assert "alice-password" not in repr(req)
    alice = store.users.add(**req.model_dump(), actor=SYSTEM)
    key = store.keys.add(
        alice.id, **users.NewKey(key=random_ed25519_line()).model_dump(), actor=SYSTEM
    )
    repo = store.repos.create("alice/app", **repos.RepoSettings().model_dump(), actor=SYSTEM)
    store.branches.protect(
        "alice/app", **repos.BranchRule(pattern="main").model_dump(), actor=SYSTEM
    )
    outputs = [
        alice,
        key,
        repo,
        store.branches.rules("alice/app")[0],
        store.access.grant(
            "alice/app", "alice", **repos.GrantLevel(level="read").model_dump(), actor=SYSTEM
        ),
        store.audit.query(**repos.AuditFilter(limit=1).model_dump())[0],
        store.access.check(alice.id, "alice/app", "write"),
        store.audit.counts(),
        store.groups.create("team", actor=SYSTEM),
        store.tokens.create(alice.id, "ci", actor=SYSTEM),
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
                user = store.users.add(f"t{n}x{i}", actor=SYSTEM)
                store.repos.create(f"t{n}x{i}/r", actor=SYSTEM)
                assert store.access.check(user.id, f"t{n}x{i}/r", "admin").allowed
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.audit.counts().users == 80 and store.audit.counts().repos == 80
