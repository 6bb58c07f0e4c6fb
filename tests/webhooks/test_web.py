"""The webhook pages through a real aw: a repository's hooks (add with a secret,
the delivery log with the receiver's status, redeliver, delete), CSRF on every
form, the site-wide page for site admins only."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from harness.wait import wait_until
from harness.web import WebSite, csrf_of

from .receiver import SECRET
from .test_end_to_end import WEBHOOKS_TOML
from .threaded import ThreadedReceiver


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    class Site(WebSite):
        def __init__(self, tmp, **kw):  # type: ignore[no-untyped-def]
            super().__init__(tmp, **kw)
            self.cluster.config.write_text(self.cluster.config.read_text() + WEBHOOKS_TOML)

    with Site(tmp_path_factory.mktemp("hookweb")) as s:
        yield s


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    with ThreadedReceiver() as r:
        yield r


def test_repo_webhooks_page(site: WebSite, receiver: ThreadedReceiver) -> None:
    site.create_repo("root/hooked", wait=False)
    c = site.admin_client()
    page = c.get("/root/hooked/settings/webhooks")
    assert page.status_code == 200 and "No webhooks." in page.text
    csrf = csrf_of(page.text)

    # No CSRF token: refused, nothing made.
    r = c.post(
        "/root/hooked/settings/webhooks",
        data={"action": "add", "url": receiver.url("/ok/web"), "event_push": "on"},
    )
    assert r.status_code == 403
    # A URL that cannot be a hook's: the page says why.
    r = c.post(
        "/root/hooked/settings/webhooks",
        data={"csrf": csrf, "action": "add", "url": "ftp://example.org/x", "event_push": "on"},
    )
    assert r.status_code == 303
    assert "only http:// and https://" in c.get("/root/hooked/settings/webhooks").text

    r = c.post(
        "/root/hooked/settings/webhooks",
        data={
            "csrf": csrf,
            "action": "add",
            "url": receiver.url("/ok/web"),
            "event_push": "on",
            "event_repo_deleted": "on",
            "secret": SECRET,
        },
    )
    assert r.status_code == 303
    page = c.get("/root/hooked/settings/webhooks")
    (hook_id,) = re.findall(r'href="/root/hooked/settings/webhooks/(hook-\d+)"', page.text)
    assert "push, repo_deleted" in page.text

    (ping,) = wait_until(lambda: receiver.seen("/ok/web", "ping"), what="the ping")
    assert ping.signed

    def logged() -> str | None:
        text = c.get(f"/root/hooked/settings/webhooks/{hook_id}").text
        return text if "HTTP 200" in text else None

    log = wait_until(logged, what="the delivery log with the answer")
    delivery = ping.headers["x-applikant-delivery"]
    assert delivery in log and "delivered" in log

    r = c.post(
        "/root/hooked/settings/webhooks",
        data={"csrf": csrf, "action": "redeliver", "hook": hook_id, "delivery": delivery},
    )
    assert r.status_code == 303 and r.headers["location"].endswith(hook_id)
    again = wait_until(lambda: receiver.seen("/ok/web", "ping")[1:], what="the redelivery")
    assert again[0].body == ping.body

    r = c.post(
        "/root/hooked/settings/webhooks", data={"csrf": csrf, "action": "delete", "hook": hook_id}
    )
    assert r.status_code == 303
    assert "No webhooks." in c.get("/root/hooked/settings/webhooks").text


def test_site_webhooks_page_is_for_site_admins(site: WebSite, receiver: ThreadedReceiver) -> None:
    c = site.admin_client()
    page = c.get("/admin/webhooks")
    assert page.status_code == 200 and "Site-wide webhooks" in page.text
    r = c.post(
        "/admin/webhooks",
        data={
            "csrf": csrf_of(page.text),
            "action": "add",
            "url": receiver.url("/ok/siteweb"),
            "event_repo_created": "on",
        },
    )
    assert r.status_code == 303
    page = c.get("/admin/webhooks")
    assert re.search(r'id="new-secret">[0-9a-f]{64}<', page.text)  # shown once
    assert 'id="new-secret"' not in c.get("/admin/webhooks").text
    site.create_repo("root/announced", wait=False)
    wait_until(lambda: receiver.seen("/ok/siteweb", "ping"), what="the ping")

    site.user_with_password("plainuser", "plain-password-1")
    plain = site.login("plainuser", "plain-password-1")
    assert plain.get("/admin/webhooks").status_code == 403
    assert plain.get("/root/hooked/settings/webhooks").status_code == 404
