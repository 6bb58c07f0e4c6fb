"""am's services and their schema: every operation of a table is a method,
every method an operation, and what a real am answers fits the declared model."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import Any

import pytest
from pydantic import TypeAdapter

from applikant.manager.services.base import Service
from applikant.manager.services.builds import BuildsService
from applikant.manager.services.hook_api import HookApi
from applikant.manager.services.observer import ObserverService
from applikant.manager.services.repo_db import RepoDb
from applikant.manager.services.user_db import UserDb
from applikant.manager.services.webhooks import WebhooksService
from applikant.schema.base import Op, Req
from harness.am import Am, add_user
from tests.manager.helpers import random_ed25519_line

SERVICES: list[type[Service]] = [
    UserDb,
    RepoDb,
    HookApi,
    BuildsService,
    WebhooksService,
    ObserverService,
]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.NAME)
def test_the_table_and_the_methods_are_the_same(service: type[Service]) -> None:
    public = {
        name
        for name, fn in vars(service).items()
        if not name.startswith("_") and inspect.iscoroutinefunction(fn) and name != "run"
    }
    assert set(service.SCHEMA) == public
    for op in service.SCHEMA.values():
        assert op.request is None or issubclass(op.request, Req)


def _fits(op: Op, answer: Any) -> None:
    if op.answer is None:
        assert answer is None
    else:
        TypeAdapter(op.answer).validate_python(answer)


def test_answers_fit_their_models(am: Am) -> None:
    user = add_user(am, "schemafit", password="a-good-password")
    am.users("add_key", actor="system", user=user["id"], key=random_ed25519_line())
    am.users("create_token", actor="system", user=user["id"], title="ci")
    am.users("create_group", actor="system", name="schemateam")
    am.repos("create_repo", actor="system", path="schemafit/app")
    am.repos("protect_branch", actor="system", repo="schemafit/app", pattern="main")
    am.repos("grant", actor="system", repo="schemafit/app", grantee="schemateam", level="read")
    calls: list[tuple[type[Service], str, dict[str, Any]]] = [
        (UserDb, "get_user", {"user": user["id"]}),
        (UserDb, "list_users", {}),
        (UserDb, "verify_password", {"login": "schemafit", "password": "a-good-password"}),
        (UserDb, "list_keys", {"user": user["id"]}),
        (UserDb, "all_keys", {}),
        (UserDb, "list_tokens", {"user": user["id"]}),
        (UserDb, "list_groups", {}),
        (UserDb, "groups_of", {"user": user["id"]}),
        (RepoDb, "check_access", {"user": user["id"], "repo": "schemafit/app", "access": "write"}),
        (RepoDb, "list_readable", {"user": user["id"]}),
        (RepoDb, "get_repo", {"repo": "schemafit/app"}),
        (RepoDb, "list_repos", {}),
        (RepoDb, "list_grants", {"repo": "schemafit/app"}),
        (RepoDb, "list_protected", {"repo": "schemafit/app"}),
        (RepoDb, "query_audit", {"query": {"limit": 5}}),
        (RepoDb, "recent_pushes", {}),
        (RepoDb, "counts", {}),
        (HookApi, "stats", {}),
        (BuildsService, "list", {}),
        (BuildsService, "counts", {}),
        (WebhooksService, "list_hooks", {"repo": "schemafit/app"}),
        (ObserverService, "cluster", {}),
        (ObserverService, "subscribers", {}),
    ]
    for service, method, args in calls:
        _fits(service.SCHEMA[method], am.call(service.NAME, method, args))


def test_aw_imports_nothing_of_am() -> None:
    code = (
        "import sys, applikant.web.app, applikant.web.daemon;"
        "print(sorted(m for m in sys.modules if m.startswith('applikant.manager')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
