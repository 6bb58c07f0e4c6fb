"""The forge pages in headless Chromium at 1280 and 375 px: each page loads, nothing
scrolls sideways on a phone, screenshots go to tests/artifacts/forge-*.png; and what
only a browser shows: the README's relative image loads, line links select lines,
the copy button copies, the header collapses, dark mode follows the system."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.browser import chromium, has_chromium, shot
from harness.forge import Known
from harness.web import WebSite

from .conftest import KNOWN

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not has_chromium(), reason="needs Debian's chromium"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def _pages(known: Known) -> list[tuple[str, str, int]]:
    main1 = known.commits[1]
    return [
        ("dashboard", "/", 200),
        ("repo", f"/{KNOWN}", 200),
        ("tree", f"/{KNOWN}/tree?path=src", 200),
        ("blob", f"/{KNOWN}/blob?path=src/app.py#L5", 200),
        ("markdown", f"/{KNOWN}/blob?path=README.md", 200),
        ("image", f"/{KNOWN}/blob?path=docs/logo.png", 200),
        ("binary", f"/{KNOWN}/blob?path=data.bin", 200),
        ("blame", f"/{KNOWN}/blame?path=src/app.py", 200),
        ("commits", "/kowner/many/commits", 200),
        ("history", f"/{KNOWN}/commits?path=src/app.py", 200),
        ("commit", f"/{KNOWN}/commit/{main1}?style=unified", 200),
        ("commit-split", f"/{KNOWN}/commit/{main1}?style=split", 200),
        ("commit-big", f"/{KNOWN}/commit/{known.commits[2]}?style=unified", 200),
        ("compare", f"/{KNOWN}/compare/main...feature/x", 200),
        ("branches", f"/{KNOWN}/branches", 200),
        ("tags", f"/{KNOWN}/tags", 200),
        ("builds", f"/{KNOWN}/builds", 200),
        ("owner", "/kowner", 200),
        ("repos", "/repos", 200),
        ("users", "/users", 200),
        ("error", f"/{KNOWN}/commit/zzzz", 404),
    ]


def _login(page, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("input[name=login]", "kowner")
    page.fill("input[name=password]", "kowner-pass-1")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{base}/")


@pytest.mark.parametrize("width", [1280, 375])
def test_every_page_fits_the_screen(site: WebSite, known: Known, browser, width: int) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    _login(page, site.base)
    for name, path, status in _pages(known):
        response = page.goto(site.base + path)
        assert response is not None and response.status == status, (name, response)
        assert page.locator("#me").inner_text() == "kowner" or width < 760, name
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= width, f"{name} is {wide} px wide at {width} px"
        shot(page, f"forge-{name}-{width}", full_page=name != "commit-big")
    ctx.close()


def test_what_only_a_browser_shows(site: WebSite, known: Known, browser) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base)
    page = ctx.new_page()
    page.set_default_timeout(20_000)
    _login(page, site.base)

    # The README's relative image loads through the raw endpoint.
    page.goto(f"{site.base}/{KNOWN}")
    image = page.locator("#readme img[alt=logo]")
    image.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelector('#readme img[alt=logo]').complete")
    assert image.evaluate("img => img.naturalWidth") == 2

    # The copy button puts the clone URL on the clipboard.
    page.click("button[data-copy=clone-ssh]")
    assert (
        page.evaluate("navigator.clipboard.readText()") == f"ssh://git@127.0.0.1:2222/{KNOWN}.git"
    )

    # Line links: a click selects a line, a shift-click a range.
    page.goto(f"{site.base}/{KNOWN}/blob?path=src/app.py")
    page.click("td.ln a[href='#L4']")
    assert page.url.endswith("#L4")
    page.click("td.ln a[href='#L6']", modifiers=["Shift"])
    assert page.url.endswith("#L4-L6")
    assert page.locator("tr.selected").count() == 3
    page.reload()
    assert page.locator("tr.selected").count() == 3
    ctx.close()

    # On a phone the header collapses behind its menu button.
    phone = browser.new_context(viewport={"width": 375, "height": 800}, color_scheme="dark")
    page = phone.new_page()
    _login(page, site.base)
    assert not page.locator("#me").is_visible()
    page.click("label.menu-button")
    assert page.locator("#me").is_visible() and page.locator("text=Log out").is_visible()
    shot(page, "forge-menu-375-dark", full_page=False)
    # Dark mode follows the system.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 27)"
    phone.close()
