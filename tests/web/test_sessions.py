"""Sessions kept in am, through two real aw processes sharing one am: a cookie
copied before a logout or a password change stops working (pages, PATCH
/api/users/{id}, token creation); a stolen live cookie cannot change the
password or make tokens without the current password; the sessions page lists
and ends sessions; a disabled account is logged out everywhere; 300
concurrent wrong logins get 5 guesses to am; a reverse proxy on the same host
does not open /metrics.

aw1 (`site.base`) asks for the password again at once (`reauth_window = 0`);
aw2 (`aw2`) accepts a login of the last 10 minutes. Both trust 127.0.0.1 as a
reverse proxy, so tests give each client an address of its own with
X-Forwarded-For.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from applikant import procs
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite, csrf_of

pytestmark = pytest.mark.slow

METRICS_TOKEN = "metrics-token-0123456789abcdef"
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


class SessionSite(WebSite):
    """WebSite whose aw trusts a proxy on 127.0.0.1, plus a second aw (`base2`)."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        token_file = Path(tmp) / "metrics.token"
        token_file.write_text(METRICS_TOKEN + "\n")
        config = self.cluster.config
        text = config.read_text()
        ours = f'[aw]\ntrusted_proxies = ["127.0.0.1"]\nmetrics_token_file = "{token_file}"\n'
        config.write_text(text.replace("[aw]\n", ours + "reauth_window = 0\n", 1))
        self.http_port2 = procs.free_port()
        self.base2 = f"http://127.0.0.1:{self.http_port2}"
        self.config2 = Path(tmp) / "aw2.toml"
        self.config2.write_text(
            text.replace("[aw]\n", ours + 'node = "aw2"\n', 1).replace(
                f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.http_port2}"
            )
        )

    def start(self) -> None:
        super().start()
        env = dict(self.env)
        self.env["APPLIKANT_CONFIG"] = str(self.config2)
        try:
            self._daemon("aw2", [sys.executable, "-m", "applikant.cli.main", "start", "aw"])
        finally:
            self.env = env
        procs.wait_port("127.0.0.1", self.http_port2, timeout=20)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionSite]:
    with SessionSite(tmp_path_factory.mktemp("sessions")) as s:
        yield s


def browser(site: SessionSite, base: str = "", **headers: str) -> httpx.Client:
    """A client with an address of its own (X-Forwarded-For through the trusted proxy)."""
    c = site.client(headers={"x-forwarded-for": next(_addresses), **headers})
    c.base_url = httpx.URL(base or site.base)
    return c


def log_in(c: httpx.Client, login: str, password: str) -> None:
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"login": login, "password": password, "csrf": token})
    assert r.status_code == 303, (r.status_code, r.text[:300])


def thief_of(site: SessionSite, victim: httpx.Client, base: str = "") -> httpx.Client:
    """Another client (another address) holding a copy of the victim's cookie."""
    thief = browser(site, base)
    for cookie in victim.cookies.jar:
        thief.cookies.set(cookie.name, cookie.value)
    return thief


def csrf(c: httpx.Client) -> str:
    return csrf_of(c.get("/settings/tokens").text)


def user(site: SessionSite, login: str, password: str) -> dict:
    return site.user_with_password(login, password)


def still_works(c: httpx.Client) -> bool:
    r = c.get("/api/user")
    return r.status_code == 200


def refused_everywhere(c: httpx.Client, uid: str, token: str) -> None:
    """What the issue found a copied cookie could still do, refused."""
    assert c.get("/api/user").status_code == 401
    assert c.get("/settings/tokens").status_code == 303  # to the login page
    h = {"x-csrf-token": token}
    r = c.patch(f"/api/users/{uid}", json={"password": "taken-over-1"}, headers=h)
    assert r.status_code == 401, r.text
    r = c.post(f"/api/users/{uid}/tokens", json={"title": "stolen"}, headers=h)
    assert r.status_code == 401, r.text


def test_a_cookie_copied_before_logout_no_longer_works(site: SessionSite) -> None:
    alice = user(site, "salice", "alice-pass-1")
    c = browser(site)
    log_in(c, "salice", "alice-pass-1")
    thief = thief_of(site, c)
    assert still_works(thief)  # a copy works while the session lives
    token = csrf(thief)
    r = c.post("/logout", data={"csrf": csrf(c)})
    assert r.status_code == 303
    refused_everywhere(thief, alice["id"], token)
    assert site.call_am("am_sessions", "list", {"user": alice["id"]}) == []


def test_a_cookie_copied_before_a_password_change_no_longer_works(site: SessionSite) -> None:
    bob = user(site, "sbob", "bob-pass-1")
    c = browser(site)
    log_in(c, "sbob", "bob-pass-1")
    elsewhere = browser(site, site.base2)
    log_in(elsewhere, "sbob", "bob-pass-1")
    thief = thief_of(site, c)
    token = csrf(thief)
    r = c.post(
        "/settings/password", data={"csrf": csrf(c), "current": "bob-pass-1", "new": "bob-pass-2"}
    )
    assert r.status_code == 303
    assert "every other session is logged out" in c.get("/settings/tokens").text
    refused_everywhere(thief, bob["id"], token)
    assert not still_works(elsewhere)  # on the other aw too
    assert still_works(c)  # the browser that changed it goes on, in a new session
    [kept] = site.call_am("am_sessions", "list", {"user": bob["id"]})
    assert kept["address"] == c.headers["x-forwarded-for"]


def test_a_stolen_live_cookie_cannot_take_the_account_over(site: SessionSite) -> None:
    carol = user(site, "scarol", "carol-pass-1")
    c = browser(site)
    log_in(c, "scarol", "carol-pass-1")
    thief = thief_of(site, c)
    h = {"x-csrf-token": csrf(thief)}
    uid = carol["id"]
    # aw1 asks again at once (reauth_window = 0): the cookie alone is not enough.
    r = thief.patch(f"/api/users/{uid}", json={"password": "taken-over-1"}, headers=h)
    assert r.status_code == 403 and "current password" in r.json()["message"]
    r = thief.patch(
        f"/api/users/{uid}",
        json={"password": "taken-over-1", "current_password": "a-guess", "display_name": "x"},
        headers=h,
    )
    assert r.status_code == 403 and r.json()["message"] == "the current password is wrong"
    r = thief.post(f"/api/users/{uid}/tokens", json={"title": "stolen"}, headers=h)
    assert r.status_code == 403
    page = thief.post("/settings/tokens", data={"csrf": h["x-csrf-token"], "title": "stolen"})
    assert page.status_code == 303
    assert site.call_am("am_user_db", "list_tokens", {"user": uid}) == []
    assert site.call_am("am_user_db", "get_user", {"user": uid})["display_name"] == ""
    # The owner, with the password, may.
    r = c.post(
        f"/api/users/{uid}/tokens",
        json={"title": "mine", "current_password": "carol-pass-1"},
        headers={"x-csrf-token": csrf(c)},
    )
    assert r.status_code == 201, r.text
    # HTTP Basic with the password proves it on the request itself.
    basic = site.client(auth=("scarol", "carol-pass-1"))
    assert basic.post(f"/api/users/{uid}/tokens", json={"title": "ci"}).status_code == 201
    # A token does not: it cannot make more tokens or set the password.
    bearer = site.client(headers={"authorization": f"Bearer {r.json()['token']}"})
    assert bearer.post(f"/api/users/{uid}/tokens", json={"title": "more"}).status_code == 403
    r = bearer.patch(f"/api/users/{uid}", json={"password": "taken-over-1"})
    assert r.status_code == 403
    # On aw2 a login of the last 10 minutes is proof enough.
    d = browser(site, site.base2)
    log_in(d, "scarol", "carol-pass-1")
    r = d.post(
        f"/api/users/{uid}/tokens", json={"title": "fresh"}, headers={"x-csrf-token": csrf(d)}
    )
    assert r.status_code == 201, r.text


def test_two_aw_share_sessions(site: SessionSite) -> None:
    dave = user(site, "sdave", "dave-pass-1")
    c = browser(site)
    log_in(c, "sdave", "dave-pass-1")
    other = thief_of(site, c, site.base2)  # the same browser, through the other aw
    assert other.get("/api/user").json()["id"] == dave["id"]
    r = other.post("/logout", data={"csrf": csrf(other)})
    assert r.status_code == 303
    assert not still_works(c)  # logged out at aw2, so at aw1


def test_the_sessions_page_lists_and_ends_sessions(site: SessionSite) -> None:
    erin = user(site, "serin", "erin-pass-1")
    laptop = browser(site, **{"user-agent": "Laptop Browser/1"})
    phone = browser(site, site.base2, **{"user-agent": "Phone Browser/2"})
    third = browser(site)
    for c in (laptop, phone, third):
        log_in(c, "serin", "erin-pass-1")
    page = laptop.get("/settings/tokens").text
    assert "Laptop Browser/1" in page and "Phone Browser/2" in page
    assert laptop.headers["x-forwarded-for"] in page and phone.headers["x-forwarded-for"] in page
    assert page.count("this session") == 1
    listed = site.call_am("am_sessions", "list", {"user": erin["id"]})
    phone_session = next(s for s in listed if s["user_agent"] == "Phone Browser/2")
    r = laptop.post(
        "/settings/sessions",
        data={"csrf": csrf(laptop), "action": "end", "id": phone_session["id"]},
    )
    assert r.status_code == 303
    assert not still_works(phone) and still_works(laptop) and still_works(third)
    # Someone else's session is not theirs to end.
    frank = browser(site)
    user(site, "sfrank", "frank-pass-1")
    log_in(frank, "sfrank", "frank-pass-1")
    [laptop_session] = [
        s
        for s in site.call_am("am_sessions", "list", {"user": erin["id"]})
        if s["user_agent"] == "Laptop Browser/1"
    ]
    r = frank.post(
        "/settings/sessions",
        data={"csrf": csrf(frank), "action": "end", "id": laptop_session["id"]},
    )
    assert r.status_code == 404 and still_works(laptop)
    r = laptop.post("/settings/sessions", data={"csrf": csrf(laptop), "action": "everywhere"})
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert not still_works(laptop) and not still_works(third)


def test_a_disabled_account_is_logged_out_everywhere(site: SessionSite) -> None:
    gina = user(site, "sgina", "gina-pass-1")
    c, d = browser(site), browser(site, site.base2)
    log_in(c, "sgina", "gina-pass-1")
    log_in(d, "sgina", "gina-pass-1")
    admin = site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))
    assert admin.patch(f"/api/users/{gina['id']}", json={"disabled": True}).status_code == 200
    assert not still_works(c) and not still_works(d)
    assert admin.patch(f"/api/users/{gina['id']}", json={"disabled": False}).status_code == 200
    assert not still_works(c)  # ended, not suspended


async def _burst(
    base: str, cookie: httpx.Cookies, csrf_token: str, forms: list[dict], address: str = ""
) -> list[httpx.Response]:
    """POST /login with every form at once; the answers that came back (a
    connection the loaded machine dropped is no answer, and no guess seen)."""
    answers: list[httpx.Response | None] = [None] * len(forms)
    limits = httpx.Limits(max_connections=len(forms), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, cookies=cookie, limits=limits, timeout=120) as c:

        async def one(i: int, form: dict) -> None:
            headers = {"x-forwarded-for": address or next(_addresses)}
            try:
                answers[i] = await c.post(
                    "/login", data={**form, "csrf": csrf_token}, headers=headers
                )
            except httpx.TransportError:
                pass

        async with trio.open_nursery() as nursery:
            for i, form in enumerate(forms):
                nursery.start_soon(one, i, form)
    found = [a for a in answers if a is not None]
    assert len(found) >= len(forms) * 2 // 3, f"only {len(found)} of {len(forms)} answered"
    return found


def _form_cookie(site: SessionSite) -> tuple[httpx.Cookies, str]:
    c = site.client()
    token = csrf_of(c.get("/login").text)
    return c.cookies, token


async def test_concurrent_wrong_logins_get_the_limit_and_no_more(site: SessionSite) -> None:
    await trio.to_thread.run_sync(user, site, "shank", "hank-pass-1")
    cookie, token = await trio.to_thread.run_sync(_form_cookie, site)
    forms = [{"login": "shank", "password": f"guess-{n}"} for n in range(300)]
    answers = await _burst(site.base, cookie, token, forms)
    statuses = [r.status_code for r in answers]
    assert statuses.count(401) <= 5, statuses  # guesses am checked: the login's limit
    assert set(statuses) <= {401, 429}, statuses  # never 503
    assert all(int(r.headers["retry-after"]) >= 1 for r in answers if r.status_code == 429)
    # Once the limit is hit, even the right password waits.
    [right] = await _burst(
        site.base, cookie, token, [{"login": "shank", "password": "hank-pass-1"}]
    )
    assert right.status_code == 429 and "try again" in right.text

    # From one address, many accounts: the address's limit (30) holds as well.
    for n in range(12):
        await trio.to_thread.run_sync(user, site, f"sacct{n}", f"acct-pass-{n}")
    forms = [{"login": f"sacct{n % 12}", "password": f"guess-{n}"} for n in range(48)]
    answers = await _burst(site.base, cookie, token, forms, address="203.0.113.77")
    statuses = [r.status_code for r in answers]
    assert statuses.count(401) <= 30, statuses
    assert set(statuses) <= {401, 429}, statuses


def test_metrics_are_not_open_through_a_proxy_on_this_host(site: SessionSite) -> None:
    # aw trusts a proxy on 127.0.0.1: loopback no longer means "a local scraper".
    r = httpx.get(f"{site.base}/metrics")
    assert r.status_code == 403
    r = httpx.get(f"{site.base}/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "applikant_users" in r.text
    r = httpx.get(f"{site.base}/metrics", headers={"authorization": "Bearer wrong-token-1234567"})
    assert r.status_code == 403
    admin = site.admin_client()
    assert admin.get("/metrics").status_code == 200


def test_an_admin_setting_a_password_proves_their_own(site: SessionSite) -> None:
    ivan = user(site, "sivan", "ivan-pass-1")
    admin = browser(site)
    log_in(admin, ADMIN_LOGIN, ADMIN_PASSWORD)
    c = browser(site)
    log_in(c, "sivan", "ivan-pass-1")
    token = csrf(admin)
    form = {"csrf": token, "action": "password", "password": "set-by-admin-1"}
    r = admin.post("/users/sivan/admin", data=form)  # aw1: no recent login is enough
    assert r.status_code == 303
    assert "current password" in admin.get("/users/sivan").text
    assert still_works(c)  # nothing changed
    r = admin.post("/users/sivan/admin", data={**form, "current": ADMIN_PASSWORD})
    assert r.status_code == 303
    assert not still_works(c)  # ivan's sessions ended with his old password
    ok = site.call_am(
        "am_user_db", "verify_password", {"login": "sivan", "password": "set-by-admin-1"}
    )
    assert ok["id"] == ivan["id"]
