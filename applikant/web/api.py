"""The REST API under /api: JSON in, JSON out, the same rules as the pages.

Authentication: `Authorization: Bearer <token>` (or HTTP Basic with a token or
a password), or the browser's session; a session may only change things when
the request also carries the session's CSRF token in `X-CSRF-Token`.
Bodies must be `application/json`, at most 1 MiB, objects matching the request
model of the route (unknown fields refused). Errors are
`{"status": <code>, "message": "..."}` with that HTTP status.

The route table `ROUTES` is also the source of /api/openapi.json.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..schema import repos as rmodels
from ..schema import users as umodels
from .am import AmError
from .auth import Viewer
from .common import AUDIT_FILTERS, client_of, query_audit, web_of
from .security import TOKEN_TITLE_MAX, csrf_ok

BODY_MAX = 1024 * 1024


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- request models ---------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=16384)


class RepoCreate(_In):
    """A new repository; `owner` defaults to the caller."""

    name: str = Field(max_length=100)
    owner: str | None = Field(default=None, max_length=64)
    description: str = Field(default="", max_length=1024)
    is_public: bool = False
    default_branch: str = Field(default="main", max_length=255)


class RepoPatch(_In):
    """Changes to a repository; `full_name` renames (possibly to another owner)."""

    description: str | None = Field(default=None, max_length=1024)
    is_public: bool | None = None
    default_branch: str | None = Field(default=None, max_length=255)
    full_name: str | None = Field(default=None, max_length=140)


class UserCreate(_In):
    login: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=128)
    email: str = Field(default="", max_length=254)
    password: str | None = Field(default=None, max_length=1024)
    is_admin: bool = False


class UserPatch(_In):
    display_name: str | None = Field(default=None, max_length=128)
    email: str | None = Field(default=None, max_length=254)
    disabled: bool | None = None
    is_admin: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


class KeyCreate(_In):
    key: str = Field(max_length=16384)
    title: str | None = Field(default=None, max_length=200)


class KeyPut(_In):
    """A new title for a key; `key`, if sent, must be the key's own material."""

    title: str = Field(min_length=1, max_length=128)
    key: str | None = Field(default=None, max_length=16384)


class GrantPut(_In):
    level: Literal["read", "write", "admin"]


class BranchRuleIn(_In):
    pattern: str = Field(max_length=255)
    admins_only: bool = False


class GroupCreate(_In):
    name: str = Field(max_length=64)
    description: str = Field(default="", max_length=1024)


class TokenCreate(_In):
    title: str = Field(min_length=1, max_length=TOKEN_TITLE_MAX)


class TokenOut(BaseModel):
    id: str
    user: str
    title: str
    created_at: str
    last_used_at: str | None = None
    token: str | None = Field(default=None, description="only in the answer to POST")


class ClusterNode(BaseModel):
    node: str
    up: bool


class ErrorOut(BaseModel):
    status: int
    message: str


# ---- helpers ----------------------------------------------------------------


async def viewer(request: Request, *, write: bool = False) -> Viewer:
    """The caller: token/Basic first, else the session (with CSRF for changes)."""
    cached = getattr(request.state, "api_viewer", None)
    if cached is not None:
        return cached
    web = web_of(request)
    header = request.headers.get("authorization", "")
    if header:
        found = await web.auth.from_headers(header, client_of(request))
    else:
        found = await web.auth.session_viewer(request.session)
        if (
            found.user is not None
            and write
            and not csrf_ok(request.session.get("csrf"), request.headers.get("x-csrf-token"))
        ):
            raise ApiError(403, "a session may change things only with its X-CSRF-Token header")
    request.state.api_viewer = found
    return found


async def logged_in(request: Request, write: bool = False) -> Viewer:
    found = await viewer(request, write=write)
    if found.user is None:
        raise ApiError(401, "authentication required: send Authorization: Bearer <token>")
    return found


async def admin(request: Request, write: bool = False) -> Viewer:
    found = await logged_in(request, write)
    if not found.is_admin:
        raise ApiError(403, "only site administrators may do this")
    return found


async def body(request: Request, model: type[BaseModel]) -> Any:
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


def ok(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


def no_content() -> Response:
    return Response(status_code=204)


def repo_path(request: Request) -> str:
    return f"{request.path_params['owner']}/{request.path_params['name']}"


async def repo_with(request: Request, who: Viewer, access: str) -> dict:
    am = web_of(request).am
    decision = await am.check_access(who.id, repo_path(request), access)
    if not decision["allowed"]:
        status = 403 if access != "read" and decision.get("level") else 404
        raise ApiError(status, decision["reason"])
    return await am.get_repo(who.id, repo_path(request))


async def user_for(request: Request, who: Viewer) -> dict:
    """The user in the path, if the caller may manage them (self or admin)."""
    user = await web_of(request).am.get_user(who.id, request.path_params["id"])
    if not (who.is_admin or who.id == user["id"]):
        raise ApiError(403, "you may only manage your own account")
    return user


# ---- handlers ---------------------------------------------------------------


async def me(request: Request) -> Response:
    return ok((await logged_in(request)).user)


async def repos_list(request: Request) -> Response:
    who = await viewer(request)
    am = web_of(request).am
    found = await am.list_repos(who.id)
    q = request.query_params.get("q", "").lower()[:100]
    if q:
        found = [r for r in found if q in r["full_name"].lower()]
    return ok(found)


async def repos_create(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, RepoCreate)
    repo = await web_of(request).am.create_repo(
        who.id,
        f"{req.owner or who.login}/{req.name}",
        description=req.description,
        is_public=req.is_public,
        default_branch=req.default_branch,
    )
    return ok(repo, 201)


async def repo_get(request: Request) -> Response:
    who = await viewer(request)
    return ok(await repo_with(request, who, "read"))


async def repo_patch(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, RepoPatch)
    repo = await repo_with(request, who, "admin")
    am = web_of(request).am
    changes = req.model_dump(exclude={"full_name"}, exclude_none=True)
    if changes:
        repo = await am.update_repo(who.id, repo["full_name"], **changes)
    if req.full_name and req.full_name != repo["full_name"]:
        repo = await am.rename_repo(who.id, repo["full_name"], req.full_name)
    return ok(repo)


async def repo_delete(request: Request) -> Response:
    who = await logged_in(request, write=True)
    repo = await repo_with(request, who, "admin")
    await web_of(request).am.delete_repo(who.id, repo["full_name"])
    return no_content()


async def perms_list(request: Request) -> Response:
    who = await logged_in(request)
    repo = await repo_with(request, who, "admin")
    return ok(await web_of(request).am.list_grants(who.id, repo["full_name"]))


async def perm_put(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, GrantPut)
    repo = await repo_with(request, who, "admin")
    return ok(
        await web_of(request).am.grant(
            who.id, repo["full_name"], request.path_params["grantee"], req.level
        )
    )


async def perm_delete(request: Request) -> Response:
    who = await logged_in(request, write=True)
    repo = await repo_with(request, who, "admin")
    await web_of(request).am.revoke(who.id, repo["full_name"], request.path_params["grantee"])
    return no_content()


async def access_get(request: Request) -> Response:
    """The caller's own access to a repository (what git and the pages would allow)."""
    who = await viewer(request)
    level = request.query_params.get("access", "read")
    return ok(await web_of(request).am.check_access(who.id, repo_path(request), level))


async def branches_list(request: Request) -> Response:
    who = await logged_in(request)
    repo = await repo_with(request, who, "admin")
    return ok(await web_of(request).am.list_protected(who.id, repo["full_name"]))


async def branches_add(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, BranchRuleIn)
    repo = await repo_with(request, who, "admin")
    return ok(
        await web_of(request).am.protect_branch(
            who.id, repo["full_name"], req.pattern, req.admins_only
        ),
        201,
    )


async def branches_delete(request: Request) -> Response:
    who = await logged_in(request, write=True)
    repo = await repo_with(request, who, "admin")
    pattern = request.query_params.get("pattern", "")
    if not pattern:
        raise ApiError(400, "give the pattern to remove as ?pattern=")
    await web_of(request).am.unprotect_branch(who.id, repo["full_name"], pattern)
    return no_content()


async def users_list(request: Request) -> Response:
    who = await logged_in(request)
    return ok(await web_of(request).am.list_users(who.id))


async def users_create(request: Request) -> Response:
    who = await admin(request, write=True)
    req = await body(request, UserCreate)
    return ok(await web_of(request).am.add_user(who.id, **req.model_dump()), 201)


async def user_get(request: Request) -> Response:
    who = await logged_in(request)
    return ok(await web_of(request).am.get_user(who.id, request.path_params["id"]))


async def user_patch(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, UserPatch)
    user = await user_for(request, who)
    am = web_of(request).am
    if (req.disabled is not None or req.is_admin is not None) and not who.is_admin:
        raise ApiError(403, "only site administrators may disable accounts or change admins")
    if req.disabled is not None and user["id"] == who.id:
        raise ApiError(400, "you cannot disable your own account")
    if req.display_name is not None or req.email is not None:
        user = await am.update_user(
            who.id, user["id"], display_name=req.display_name, email=req.email
        )
    if req.password is not None:
        await am.set_password(who.id, user["id"], req.password)
    if req.disabled is not None:
        user = await am.set_disabled(who.id, user["id"], req.disabled)
    if req.is_admin is not None:
        user = await am.set_admin(who.id, user["id"], req.is_admin)
    return ok(await am.get_user(who.id, user["id"]))


async def keys_list(request: Request) -> Response:
    who = await logged_in(request)
    user = await user_for(request, who)
    return ok(await web_of(request).am.list_keys(who.id, user["id"]))


async def keys_add(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, KeyCreate)
    user = await user_for(request, who)
    return ok(await web_of(request).am.add_key(who.id, user["id"], req.key, req.title), 201)


async def _own_key(request: Request, who: Viewer) -> tuple[dict, dict]:
    user = await user_for(request, who)
    kid = request.path_params["kid"]
    try:
        key = await web_of(request).am.get_key(who.id, kid)
    except AmError as exc:
        if exc.status in (400, 404):
            raise ApiError(404, f"{user['login']} has no key {kid!r}") from None
        raise
    if key["user"] != user["id"]:
        raise ApiError(404, f"{user['login']} has no key {kid!r}")
    return user, key


async def key_get(request: Request) -> Response:
    who = await logged_in(request)
    return ok((await _own_key(request, who))[1])


async def key_put(request: Request) -> Response:
    """Retitle the key `kid`; it keeps its id. Its material cannot change: a
    different key is added (POST) and this one removed, so sshd never sees a
    key id that stood for two keys."""
    who = await logged_in(request, write=True)
    req = await body(request, KeyPut)
    _, key = await _own_key(request, who)
    if req.key is not None and req.key.split()[:2] != key["public_key"].split()[:2]:
        raise ApiError(
            409, f"a key's material cannot change; add the new key with POST and remove {key['id']}"
        )
    return ok(await web_of(request).am.update_key(who.id, key["id"], req.title))


async def key_delete(request: Request) -> Response:
    who = await logged_in(request, write=True)
    user, key = await _own_key(request, who)
    await web_of(request).am.remove_key(who.id, key["id"], user["id"])
    return no_content()


async def tokens_list(request: Request) -> Response:
    who = await logged_in(request)
    user = await user_for(request, who)
    return ok(await web_of(request).am.list_tokens(who.id, user["id"]))


async def tokens_create(request: Request) -> Response:
    who = await logged_in(request, write=True)
    req = await body(request, TokenCreate)
    user = await user_for(request, who)
    return ok(await web_of(request).am.create_token(who.id, user["id"], req.title), 201)


async def token_delete(request: Request) -> Response:
    who = await logged_in(request, write=True)
    user = await user_for(request, who)
    await web_of(request).am.revoke_token(who.id, user["id"], request.path_params["tid"])
    return no_content()


async def groups_list(request: Request) -> Response:
    who = await logged_in(request)
    return ok(await web_of(request).am.list_groups(who.id))


async def groups_create(request: Request) -> Response:
    who = await admin(request, write=True)
    req = await body(request, GroupCreate)
    return ok(await web_of(request).am.create_group(who.id, req.name, req.description), 201)


async def group_get(request: Request) -> Response:
    who = await logged_in(request)
    return ok(await web_of(request).am.get_group(who.id, request.path_params["name"]))


async def group_delete(request: Request) -> Response:
    who = await admin(request, write=True)
    await web_of(request).am.delete_group(who.id, request.path_params["name"])
    return no_content()


async def member_put(request: Request) -> Response:
    who = await admin(request, write=True)
    return ok(
        await web_of(request).am.add_member(
            who.id, request.path_params["name"], request.path_params["login"]
        )
    )


async def member_delete(request: Request) -> Response:
    who = await admin(request, write=True)
    return ok(
        await web_of(request).am.remove_member(
            who.id, request.path_params["name"], request.path_params["login"]
        )
    )


async def audit(request: Request) -> Response:
    who = await admin(request)
    q = request.query_params
    filters = {k: q[k].strip()[:200] for k in AUDIT_FILTERS if q.get(k)}
    limit = q.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 10_000:
        raise ApiError(400, "limit must be an integer from 1 to 10000")
    return ok(await query_audit(web_of(request), who, filters, int(limit)))


async def cluster(request: Request) -> Response:
    await logged_in(request)
    return ok(await web_of(request).am.cluster())


async def counts(request: Request) -> Response:
    who = await logged_in(request)
    return ok(await web_of(request).am.counts(who.id))


async def openapi(request: Request) -> Response:
    from .openapi import document

    return ok(document(ROUTES))


# ---- the route table ----------------------------------------------------------


@dataclass(frozen=True)
class ApiRoute:
    path: str
    method: str
    handler: Callable[[Request], Awaitable[Response]]
    summary: str
    body: type[BaseModel] | None = None
    answer: Any = None  # a model, [model] for a list, None for 204
    status: int = 200
    auth: str = "user"  # none, user, admin


R = ApiRoute
ROUTES: list[ApiRoute] = [
    R("/user", "GET", me, "The calling user", answer=umodels.User),
    R(
        "/repos",
        "GET",
        repos_list,
        "Repositories the caller may read (?q= filters)",
        answer=[rmodels.Repo],
        auth="none",
    ),
    R("/repos", "POST", repos_create, "Create a repository", RepoCreate, rmodels.Repo, 201),
    R("/repos/{owner}/{name}", "GET", repo_get, "One repository", answer=rmodels.Repo, auth="none"),
    R(
        "/repos/{owner}/{name}",
        "PATCH",
        repo_patch,
        "Change or rename a repository (admin access)",
        RepoPatch,
        rmodels.Repo,
    ),
    R(
        "/repos/{owner}/{name}",
        "DELETE",
        repo_delete,
        "Delete a repository (admin access)",
        status=204,
    ),
    R(
        "/repos/{owner}/{name}/access",
        "GET",
        access_get,
        "The caller's access (?access=read|write|admin)",
        answer=rmodels.AccessDecision,
        auth="none",
    ),
    R(
        "/repos/{owner}/{name}/permissions",
        "GET",
        perms_list,
        "Explicit grants",
        answer=[rmodels.PermissionGrant],
    ),
    R(
        "/repos/{owner}/{name}/permissions/{grantee}",
        "PUT",
        perm_put,
        "Grant a user or group access",
        GrantPut,
        rmodels.PermissionGrant,
    ),
    R(
        "/repos/{owner}/{name}/permissions/{grantee}",
        "DELETE",
        perm_delete,
        "Revoke a grant",
        status=204,
    ),
    R(
        "/repos/{owner}/{name}/protected-branches",
        "GET",
        branches_list,
        "Protected branches",
        answer=[rmodels.ProtectedBranch],
    ),
    R(
        "/repos/{owner}/{name}/protected-branches",
        "POST",
        branches_add,
        "Protect branches",
        BranchRuleIn,
        rmodels.ProtectedBranch,
        201,
    ),
    R(
        "/repos/{owner}/{name}/protected-branches",
        "DELETE",
        branches_delete,
        "Remove a protection (?pattern=)",
        status=204,
    ),
    R("/users", "GET", users_list, "All users", answer=[umodels.User]),
    R(
        "/users",
        "POST",
        users_create,
        "Create a user (site admins)",
        UserCreate,
        umodels.User,
        201,
        "admin",
    ),
    R("/users/{id}", "GET", user_get, "A user by id (user-42) or login", answer=umodels.User),
    R(
        "/users/{id}",
        "PATCH",
        user_patch,
        "Change a user (self; flags: site admins)",
        UserPatch,
        umodels.User,
    ),
    R("/users/{id}/keys", "GET", keys_list, "A user's SSH keys", answer=[umodels.SshKey]),
    R("/users/{id}/keys", "POST", keys_add, "Add an SSH key", KeyCreate, umodels.SshKey, 201),
    R("/users/{id}/keys/{kid}", "GET", key_get, "One SSH key", answer=umodels.SshKey),
    R(
        "/users/{id}/keys/{kid}",
        "PUT",
        key_put,
        "Retitle an SSH key (it keeps its id)",
        KeyPut,
        umodels.SshKey,
    ),
    R("/users/{id}/keys/{kid}", "DELETE", key_delete, "Remove an SSH key", status=204),
    R(
        "/users/{id}/tokens",
        "GET",
        tokens_list,
        "A user's API tokens (no secrets)",
        answer=[TokenOut],
    ),
    R(
        "/users/{id}/tokens",
        "POST",
        tokens_create,
        "Create an API token (shown once)",
        TokenCreate,
        TokenOut,
        201,
    ),
    R("/users/{id}/tokens/{tid}", "DELETE", token_delete, "Revoke an API token", status=204),
    R("/groups", "GET", groups_list, "All groups", answer=[umodels.Group]),
    R(
        "/groups",
        "POST",
        groups_create,
        "Create a group (site admins)",
        GroupCreate,
        umodels.Group,
        201,
        "admin",
    ),
    R("/groups/{name}", "GET", group_get, "One group", answer=umodels.Group),
    R(
        "/groups/{name}",
        "DELETE",
        group_delete,
        "Delete a group (site admins)",
        status=204,
        auth="admin",
    ),
    R(
        "/groups/{name}/members/{login}",
        "PUT",
        member_put,
        "Add a member (site admins)",
        answer=umodels.Group,
        auth="admin",
    ),
    R(
        "/groups/{name}/members/{login}",
        "DELETE",
        member_delete,
        "Remove a member (site admins)",
        answer=umodels.Group,
        auth="admin",
    ),
    R(
        "/audit",
        "GET",
        audit,
        "The audit log, newest first (?actor=&action=&repo=&since=&until=&limit=)",
        answer=[rmodels.AuditEntry],
        auth="admin",
    ),
    R("/cluster", "GET", cluster, "Nodes of the cluster, up or down", answer=[ClusterNode]),
    R("/counts", "GET", counts, "Totals for the dashboard", answer=rmodels.Counts),
]


def _wrap(handler: Callable[[Request], Awaitable[Response]]):
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return JSONResponse(
                {"status": exc.status, "message": exc.message}, status_code=exc.status
            )

    return endpoint


async def _not_found(request: Request) -> Response:
    return JSONResponse({"status": 404, "message": "no such API route"}, status_code=404)


def routes() -> list[Route]:
    by_path: dict[str, dict[str, Callable]] = {}
    for r in ROUTES:
        by_path.setdefault(r.path, {})[r.method] = _wrap(r.handler)
    out = [Route("/openapi.json", openapi, methods=["GET"])]
    for path, methods in by_path.items():
        out.append(Route(path, _dispatch(methods), methods=list(methods)))
    out.append(Route("/{rest:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
    return out


def _dispatch(methods: dict[str, Callable]):
    async def endpoint(request: Request) -> Response:
        return await methods[request.method if request.method != "HEAD" else "GET"](request)

    return endpoint
