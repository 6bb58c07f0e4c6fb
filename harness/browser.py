"""Headless Chromium (Debian's) for the browser tests: how it is started, and
where screenshots go (tests/artifacts/, not in git).

    with chromium() as browser:
        page = browser.new_context(viewport={"width": 375, "height": 800}).new_page()
        shot(page, "dashboard-375")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["ARTIFACTS", "CHROMIUM", "chromium", "has_chromium", "shot"]

ARTIFACTS = Path(__file__).resolve().parents[1] / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def has_chromium() -> bool:
    return os.path.exists(CHROMIUM)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium, closed (and its processes gone) when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str, full_page: bool = True) -> Path:
    """A screenshot of `page` as tests/artifacts/NAME.png; its path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
