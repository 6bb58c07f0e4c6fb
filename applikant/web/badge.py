"""Build status badges and the build status of commits.

    /{owner}/{name}/badge/{branch}.svg    the status of the branch's newest build

A badge is an SVG in the usual two-part shape ("build | passing"), for a
README or a dashboard. It answers whoever may read the repository: anyone for
a public one, and for a private one only a viewer with read access (a
session, a token); everyone else gets 404, as for every page of it. It is
never cached (`no-cache`): the status changes with every build.

`commit_builds` gives the commit pages the newest build of each commit they
show; when am cannot answer, the pages show no statuses rather than fail.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .am import AmError
from .repoview import RepoContext, open_repo

__all__ = ["STATUS_WORDS", "commit_builds", "routes", "svg"]

#: How a badge says a build's status, and its colour.
STATUS_WORDS = {
    "succeeded": ("passing", "#2e7d32"),
    "failed": ("failing", "#c62828"),
    "timed-out": ("timed out", "#c62828"),
    "cancelled": ("cancelled", "#6b6b6b"),
    "running": ("running", "#1565c0"),
    "queued": ("queued", "#6b6b6b"),
    None: ("no builds", "#6b6b6b"),
}
_CHAR = 6.6  # average width of a character of 11 px Verdana, in px


def _width(text: str) -> int:
    return int(len(text) * _CHAR) + 12


def svg(label: str, status: str | None) -> str:
    """The badge for `status` (a build status, or None: no builds yet)."""
    word, colour = STATUS_WORDS.get(status, (str(status), "#6b6b6b"))
    left, right = _width(label), _width(word)
    total = left + right
    text_label, text_word = escape(label), escape(word)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img"'
        f' aria-label="{text_label}: {text_word}">'
        f"<title>{text_label}: {text_word}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif"'
        ' font-size="11">'
        f'<text x="{left / 2}" y="14">{text_label}</text>'
        f'<text x="{left + right / 2}" y="14">{text_word}</text>'
        "</g></svg>"
    )


async def _builds(ctx: RepoContext, method: str, **args: Any) -> Any:
    return await ctx.web.am.call("am_builds", method, {"actor": "system", **args})


async def badge(request: Request) -> Response:
    """`GET /{owner}/{name}/badge/{branch}.svg`; 404 for whoever may not read the repo."""
    branch = request.path_params["branch"]
    if not branch.endswith(".svg") or len(branch) <= 4:
        return Response("no such badge", status_code=404, media_type="text/plain")
    ctx = await open_repo(request)
    latest = await _builds(ctx, "latest", repo=ctx.full_name, branch=branch[:-4][:1000])
    return Response(
        svg("build", latest["status"] if latest else None),
        media_type="image/svg+xml",
        headers={
            "Cache-Control": "no-cache, max-age=0",
            "Content-Security-Policy": "default-src 'none'",
        },
    )


async def commit_builds(ctx: RepoContext, commits: list[str]) -> dict[str, dict[str, Any]]:
    """{commit: its newest build} for the commits that have one; {} when am
    cannot answer (the page is still worth showing)."""
    if not commits:
        return {}
    try:
        found: dict[str, dict[str, Any]] = await _builds(
            ctx, "of_commits", repo=ctx.full_name, commits=commits
        )
    except AmError:
        return {}
    return found


def routes() -> list[Route]:
    return [Route("/{owner}/{name}/badge/{branch:path}", badge, methods=["GET"])]
