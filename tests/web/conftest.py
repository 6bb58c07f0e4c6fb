"""One running suite (portmapper, am, af, sshd, aw) shared by aw's end-to-end tests.

Starting it costs about two seconds; the tests use names of their own so that
they do not depend on each other's data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from harness.forge import Known, build_known_repo, build_many_repo
from harness.web import WebSite

_names = itertools.count(1)


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    # Webhook receivers in these tests listen on loopback, which deliveries
    # refuse unless an admin allows it.
    loopback_hooks = '\n[webhooks]\nallowed_hosts = ["loopback"]\n'
    with WebSite(tmp_path_factory.mktemp("web"), extra_toml=loopback_hooks) as s:
        yield s


@pytest.fixture
def name() -> str:
    """A fresh name for users, groups and repositories of one test."""
    return f"t{next(_names)}x"


@pytest.fixture(autouse=True)
def _close_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "site" in request.fixturenames:
        request.getfixturevalue("site").close_clients()


KNOWN = "kowner/known"


@pytest.fixture(scope="session")
def known(site: WebSite, tmp_path_factory: pytest.TempPathFactory) -> Known:
    """kowner/known (harness/forge.py) and kowner/many (120 commits), both private,
    owned by kowner (password kowner-pass-1); kstranger may read neither."""
    owner = site.add_user("kowner")
    site.call_am("am_user_db", "set_password", {"user": owner.id, "password": "kowner-pass-1"})
    site.user_with_password("kstranger", "kstranger-pass-1")
    tmp = tmp_path_factory.mktemp("forge")
    known = build_known_repo(site, tmp, owner, KNOWN)
    build_many_repo(site, tmp, owner, "kowner/many")
    return known
