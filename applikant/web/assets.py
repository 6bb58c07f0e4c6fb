"""Assets that are made, not stored: the highlighting stylesheet and the favicon.

`/static/highlight.css` is generated from the installed Pygments (light, and
dark under `prefers-color-scheme`), so its classes always match the markup
Pygments produces. `/favicon.ico` answers with the SVG icon, for clients that
ask for it without reading the page's `<link rel="icon">`.
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import highlight
from .render import HERE

__all__ = ["routes"]

_CACHE = "public, max-age=86400"


async def highlight_css(request: Request) -> Response:
    return Response(highlight.css(), media_type="text/css", headers={"cache-control": _CACHE})


with open(os.path.join(HERE, "static", "favicon.svg"), "rb") as _f:
    _ICON = _f.read()


async def favicon(request: Request) -> Response:
    return Response(_ICON, media_type="image/svg+xml", headers={"cache-control": _CACHE})


def routes() -> list[Route]:
    return [
        Route("/static/highlight.css", highlight_css, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
    ]
