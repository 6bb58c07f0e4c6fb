"""The REST API's route table, and the one dispatcher that enforces it.

Every route under /api is an `ApiRoute`: method, path, handler, the body it
takes, what it answers, and the `Access` it needs. The table is the single
source of the OpenAPI document (openapi.py) and of the authorization:
`endpoint(route)` finds out who calls, refuses anyone below the route's
access before the handler runs, checks the body against the route's model,
and hands the handler a `Call` with all of it. So the documented access is the
enforced one; a handler may refuse more (someone else's key, the admin flags
of an account), never less.

Refusals, the same on every route: no credentials where some are needed 401;
a user below the route's access 403 ("only site administrators may do this",
"you may only manage your own account"); a repository the caller cannot read
404 with am's reason (its existence is not revealed), one they can read but
not change 403. A session may change things only with its X-CSRF-Token header
(403). Bodies must be `application/json` (415), at most 1 MiB (413), valid
JSON objects (400) matching the route's model (422).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..schema.base import Result
from .am import Am, StaleToken, TokenProof, with_token
from .auth import Viewer
from .common import client_of, web_of
from .lru import Lru
from .security import csrf_ok, looks_like_token, parse_basic, parse_bearer

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "LOGGED_IN",
    "REPO_ADMIN",
    "REPO_READ",
    "REPO_WRITE",
    "SELF",
    "Access",
    "ApiError",
    "ApiRoute",
    "Call",
    "ErrorOut",
    "Json",
    "endpoint",
    "page_args",
    "paged",
]

BODY_MAX = 1024 * 1024
PAGE_LIMIT = 50
PAGE_MAX = 100
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ErrorOut(Result):
    """Every refusal of the API: the HTTP status and why, in words."""

    status: int
    message: str


class Json(JSONResponse):
    """A JSON answer of the API, encoded by pydantic's Rust encoder: the same
    compact text as Starlette's JSONResponse (UTF-8, no spaces) at a third of
    the cost, which a page of 50 repositories notices. Numbers may be spelled
    otherwise (`1e-7` for `1e-07`) and NaN is null, never the invalid `NaN`."""

    def render(self, content: Any) -> bytes:
        return to_json(content, inf_nan_mode="null")


@dataclass(frozen=True)
class Access:
    """Who may call a route. `name` is what the document shows (`x-access`)."""

    name: str
    text: str
    login: bool = True  # needs credentials (401 without)
    admin: bool = False  # a site administrator
    self_or_admin: bool = False  # the user `{id}` of the path, or a site administrator
    repo: str | None = None  # this access to `{owner}/{name}` (read, write, admin)


ANONYMOUS = Access("anonymous", "anyone, with or without credentials", login=False)
LOGGED_IN = Access("logged_in", "any logged-in user")
ADMIN = Access("admin", "site administrators", admin=True)
SELF = Access("self", "the user named in the path, or a site administrator", self_or_admin=True)
REPO_READ = Access(
    "repo:read",
    "whoever may read the repository (anyone, for a public one)",
    login=False,
    repo="read",
)
REPO_WRITE = Access("repo:write", "users with write access to the repository", repo="write")
REPO_ADMIN = Access("repo:admin", "users with admin access to the repository", repo="admin")


@dataclass
class Call:
    """One API request once its access is checked: what a handler works with."""

    request: Request
    who: Viewer
    body: Any = None  # the route's body model, validated
    repo: dict[str, Any] = field(default_factory=dict)  # {owner}/{name}, for repo access
    user: dict[str, Any] = field(default_factory=dict)  # {id}, for self access

    @property
    def actor(self) -> str:
        """The caller's id (`user-42`), on the routes whose access needs a login."""
        assert self.who.id is not None, "only for routes whose access needs a login"
        return self.who.id

    @property
    def am(self) -> Am:
        am: Am = web_of(self.request).am
        return am

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.path_params)

    @property
    def query(self) -> Any:
        return self.request.query_params


Handler = Callable[[Call], Awaitable[Response]]


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    handler: Handler
    summary: str
    access: Access
    body: type[BaseModel] | None = None
    answer: Any = None  # a model, [model] for a list, None for 204
    status: int = 200
    paged: bool = False  # ?limit=&cursor=, a Link header to the next page (api.paged)


async def viewer(request: Request, *, write: bool) -> Viewer:
    """The caller: token/Basic first, else the session (with CSRF for changes)."""
    web = web_of(request)
    header = request.headers.get("authorization", "")
    if header:
        found: Viewer = await web.auth.from_headers(header, client_of(request))
        key = _token_key(header)
        if key is not None and found.user is not None:
            _token_users.put(key, found.user)
        return found
    found = await web.auth.session_viewer(request.session, client_of(request))
    if (
        found.user is not None
        and write
        and not csrf_ok(request.session.get("csrf"), request.headers.get("x-csrf-token"))
    ):
        raise ApiError(403, "a session may change things only with its X-CSRF-Token header")
    return found


async def read_body(request: Request, model: type[BaseModel]) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "send the body as application/json")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_MAX:
            raise ApiError(413, f"the body is larger than {BODY_MAX} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}") from None


async def _enforce(access: Access, call: Call) -> None:
    """Refuse the caller unless they have `access` (see the module docstring)."""
    who = call.who
    if access.login and who.user is None:
        raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
    if access.admin and not who.is_admin:
        raise ApiError(403, "only site administrators may do this")
    if access.self_or_admin:
        user = await call.am.get_user(who.id, call.params["id"])
        if not (who.is_admin or who.id == user["id"]):
            raise ApiError(403, "you may only manage your own account")
        call.user = user
    if access.repo is not None:
        path = f"{call.params['owner']}/{call.params['name']}"
        decision = await call.am.check_access(who.id, path, access.repo)
        if not decision["allowed"]:
            status = 403 if access.repo != "read" and decision.get("level") else 404
            raise ApiError(status, decision["reason"])
        call.repo = await call.am.get_repo(who.id, path)


# The user each API token stood for when this aw last checked it, by a digest
# of the token: a guess that lets a read go to am with the token itself
# (`_guessed`), never a proof of who is asking.
_token_users: Lru[bytes, dict[str, Any]] = Lru(10_000)  # entries


def _token_of(header: str) -> tuple[str, str | None] | None:
    """The API token in an Authorization header and the Basic login it came
    with (None: Bearer); None when there is no token (a password is never
    kept, not even hashed)."""
    secret = parse_bearer(header)
    login = None
    if secret is None:
        basic = parse_basic(header)
        if basic is None:
            return None
        login, secret = basic
    return (secret, login) if looks_like_token(secret) else None


def _token_key(header: str) -> bytes | None:
    """A digest of the API token in an Authorization header (None: no token)."""
    found = _token_of(header)
    return hashlib.sha256(found[0].encode()).digest() if found is not None else None


async def _serve(route: ApiRoute, request: Request, who: Viewer) -> Response:
    call = Call(request, who)
    await _enforce(route.access, call)
    if route.body is not None:
        call.body = await read_body(request, route.body)
    return await route.handler(call)


async def _guessed(route: ApiRoute, request: Request, user: dict[str, Any], token: str) -> Response:
    """A read by an API token seen before, answered as the user it stood for:
    the route's calls to am as that user carry the token, and am checks it on
    each (as_token), so the read and the check are one call. The answer counts
    only if am named that very user, unchanged; otherwise the request is
    refused (AuthError) or answered again for whom the token names. A route
    that asked am nothing as the user has the token checked after it."""
    failure: Exception | None = None
    with with_token(TokenProof(token, user)) as proof:
        try:
            answer = await _serve(route, request, Viewer(user, "token"))
        except StaleToken:
            return await _serve(route, request, await viewer(request, write=False))
        except Exception as exc:
            failure = exc
    if not proof.checked:
        who = await viewer(request, write=False)  # a revoked token: refused as ever
        if who.user != user:
            return await _serve(route, request, who)
    if failure is not None:
        raise failure
    return answer


def _guess(request: Request) -> tuple[dict[str, Any], str] | None:
    """(the user, the token) when the request's token was seen before and may
    be tried as that user: its Basic login (if any) fits that user, and its
    address is not being throttled (the full check says why)."""
    found = _token_of(request.headers.get("authorization", ""))
    if found is None:
        return None
    token, login = found
    user = _token_users.get(hashlib.sha256(token.encode()).digest())
    if user is None or login not in (None, "", user["login"], "token", "x-access-token"):
        return None
    if web_of(request).auth.throttle.wait(f"addr:{client_of(request)}") > 0:
        return None
    return user, token


def endpoint(route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint of `route`: caller, access, body, then the handler.
    am's refusals (AmError) and bad credentials (AuthError) are answered by
    the app's handlers, as JSON under /api. A read with a token seen before
    has am check the token in the read's own call (`_guessed`)."""

    async def run(request: Request) -> Response:
        try:
            if request.method in ("GET", "HEAD") and route.body is None:
                guess = _guess(request)
                if guess is not None:
                    return await _guessed(route, request, *guess)
            who = await viewer(request, write=request.method in CHANGES)
            return await _serve(route, request, who)
        except ApiError as exc:
            return JSONResponse(
                {"status": exc.status, "message": exc.message}, status_code=exc.status
            )

    return run


def page_args(call: Call, maximum: int = PAGE_MAX) -> dict[str, Any]:
    """`limit` and `cursor` of a paged route (`paged=True`) from the query; 400
    for a limit out of range. See api.py for how lists are paged."""
    text = call.query.get("limit", str(PAGE_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ApiError(400, f"limit must be an integer from 1 to {maximum}")
    return {"limit": int(text), "cursor": call.query.get("cursor") or None}


def paged(call: Call, page: dict[str, Any]) -> JSONResponse:
    """One page of a list from am: its items, `Link` to the next page, the total if known."""
    response = Json(page["items"])
    if page.get("next"):
        url = call.request.url.include_query_params(cursor=page["next"])
        response.headers["link"] = f'<{url}>; rel="next"'
    if page.get("total") is not None:
        response.headers["x-total-count"] = str(page["total"])
    return response
