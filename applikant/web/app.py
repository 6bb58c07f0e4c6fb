"""The ASGI application: git paths to `GitHttp`, everything else to Starlette.

`build(web)` wires the pieces together: a signed cookie (HttpOnly,
SameSite=Lax, Secure when the public URL is https) that holds the secret of
a session am keeps (auth.py) and the CSRF token, security headers, the
pages, the REST API under /api, static files, and error handlers that answer
in words (an HTML page, or JSON under /api) and never with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from ..links import Links
from ..logs import EventLog
from . import (
    api,
    assets,
    badge,
    gitread,
    metrics,
    pages,
    pages_builds,
    pages_code,
    pages_commits,
    pages_owner,
    pages_repos,
    pages_users,
    pages_webhooks,
)
from .am import Am, AmError
from .auth import Auth, AuthError
from .common import viewer_of
from .githttp import GitDenied, GitHttp
from .render import HERE, FormError, error_page
from .routeindex import RouteIndex
from .security import TrustedProxies

__all__ = ["Site", "Web", "build"]

log = EventLog("aw")


@dataclass
class Site(Links):
    """What pages show about this installation: its name, and its addresses
    (the same as am's webhook payloads give, applikant.links)."""

    name: str = "Applikant"


@dataclass
class Web:
    """Everything a request handler needs, kept on `app.state.web`."""

    am: Am
    auth: Auth
    site: Site
    repo_root: str
    session_secret: str
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    metrics_token: str = ""  # a bearer token that may read /metrics ("" : none)
    extra: dict[str, Any] = field(default_factory=dict)


class _SecurityHeaders:
    """Adds headers that keep pages out of frames and scripts to our own origin."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own = {name.lower() for name, _ in headers}
                # A response with its own policy (raw files: sandboxed) keeps it.
                message["headers"] = headers + [h for h in self.HEADERS if h[0] not in own]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/api"


def api_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status, headers=headers)


async def _on_error(request: Request, exc: Exception) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, (AmError, FormError)):
        status, message = exc.status, exc.message
    elif isinstance(exc, AuthError):
        status, message = exc.status, exc.message
        if exc.status == 429:
            headers["retry-after"] = str(int(exc.retry_after) + 1)
    elif isinstance(exc, gitread.GitReadError):
        status, message = exc.status, exc.message
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        message = (
            exc.detail
            if isinstance(exc.detail, str) and exc.detail
            else {
                404: "there is nothing at this address",
                405: "this address does not accept that method",
            }.get(status, "the request was refused")
        )
        headers.update(exc.headers or {})
    else:
        log.exception("request_failed", path=request.url.path[:200], error=type(exc).__name__)
        status, message = (
            500,
            (
                "an unexpected error happened on the server; it has been "
                "logged. Try again, and tell the administrator if it persists"
            ),
        )
    if _is_api(request):
        return api_error(status, message, headers or None)
    if status == 401 and request.method == "GET":
        return RedirectResponse("/login?next=" + quote(request.url.path), status_code=303)
    if "session" in request.scope and status != 503:
        try:  # the header of an error page shows who is logged in, as on every page
            await viewer_of(request)
        except Exception:
            pass  # am is away: the page says so without the name
    response = error_page(request, status, message)
    response.headers.update(headers)
    return response


def page_routes() -> list[BaseRoute]:
    """Every route but git's, in the order they are tried."""
    return [
        *assets.routes(),  # before /static: the generated stylesheet of highlighting
        Mount("/static", app=StaticFiles(directory=f"{HERE}/static"), name="static"),
        *pages_builds.routes(),  # before /api: /api/builds/{id}/log
        *badge.routes(),
        Mount("/api", routes=api.routes()),
        *pages.routes(),
        *pages_users.routes(),
        *pages_webhooks.routes(),  # before pages_repos: /admin/webhooks
        *pages_repos.routes(),
        *pages_code.routes(),
        *pages_commits.routes(),
        *metrics.routes(),
        *pages_owner.routes(),  # last: /{owner} takes any single name that is left
    ]


def build(web: Web) -> Any:
    """The ASGI app for `web` (see the module docstring)."""
    https = web.site.public_url.startswith("https://")
    routes = page_routes()
    handlers = {
        Exception: _on_error,
        HTTPException: _on_error,
        AmError: _on_error,
        AuthError: _on_error,
        FormError: _on_error,
        gitread.GitReadError: _on_error,
    }
    starlette = Starlette(
        routes=[RouteIndex(routes)],
        middleware=[
            Middleware(_SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=web.session_secret,
                session_cookie="applikant_session",
                max_age=web.auth.lifetimes.max_age,
                same_site="lax",
                https_only=https,
            ),
        ],
        exception_handlers=handlers,
    )
    starlette.state.web = web

    async def authorize(owner: str, name: str, headers: dict[str, str], peer: str) -> str:
        client = web.proxies.client(peer, headers.get("x-forwarded-for")) if web.proxies else peer
        return await git_authorize(web, owner, name, headers, client)

    git = GitHttp(web.repo_root, authorize)

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and git.matches(scope["path"]):
            await git(scope, receive, send)
        else:
            await starlette(scope, receive, send)

    app.starlette = starlette  # type: ignore[attr-defined]
    return app


async def git_authorize(
    web: Web, owner: str, name: str, headers: dict[str, str], client: str
) -> str:
    """The canonical `owner/name` if the requester may read it; GitDenied otherwise.

    A denial to someone who gave credentials goes to am's audit log
    (`access.denied`). An anonymous request for a private repository does not:
    it is how every git client starts, before it sends its credentials.
    """
    path = f"{owner}/{name}"
    try:
        viewer = await web.auth.from_headers(headers.get("authorization", ""), client)
        decision = await web.am.check_access(viewer.id, path, "read", audit=viewer.user is not None)
        if not decision["allowed"]:
            if viewer.user is None:
                raise GitDenied(
                    401,
                    "authentication required: log in with your login and password or an API token",
                    challenge=True,
                )
            raise GitDenied(404, decision["reason"])
        repo = await web.am.get_repo(viewer.id, path)
    except AuthError as exc:
        raise GitDenied(exc.status, exc.message, challenge=exc.status == 401) from None
    except AmError as exc:
        if exc.status == 404:
            raise GitDenied(404, f"repository {path} not found") from None
        raise GitDenied(503 if exc.status >= 500 else exc.status, exc.message) from None
    return repo["full_name"]
