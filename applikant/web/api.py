"""The REST API under /api: JSON in, JSON out, the same rules as the pages.

Lists are paged as GitHub and Gitea page them: `?limit=` (1 to 100, 50 by
default) and `?cursor=`; the body is one page (a JSON array), and a
`Link: <URL>; rel="next"` header names the next one (none on the last page);
`X-Total-Count` is sent when the total cost nothing to know.

Authentication: `Authorization: Bearer <token>` (or HTTP Basic with a token or
a password), or the browser's session; a session may only change things when
the request also carries the session's CSRF token in `X-CSRF-Token`.
Bodies must be `application/json`, at most 1 MiB, objects matching the request
model of the route (unknown fields refused). Errors are
`{"status": <code>, "message": "..."}` with that HTTP status.

`ROUTES` is the route table (apitable.py): each route's access is enforced by
the one dispatcher there before its handler runs, and the same table makes
/api/openapi.json. Bodies and answers are the shared schema's
(applikant.schema), the models am itself validates with.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..schema import observer, repos, sessions, users
from . import api_hooks
from .am import AmError
from .apitable import (
    ADMIN,
    ANONYMOUS,
    LOGGED_IN,
    REPO_ADMIN,
    REPO_READ,
    SELF,
    ApiError,
    ApiRoute,
    Call,
    Json,
    endpoint,
    page_args,
    paged,
)
from .common import AUDIT_FILTERS, client_of, query_audit, web_of
from .openapi import document
from .sessionflow import renew_session

AUDIT_MAX = 10_000  # the audit log may be read in larger pages (exports)


def ok(value: Any, status: int = 200) -> JSONResponse:
    return Json(value, status_code=status)


def no_content() -> Response:
    return Response(status_code=204)


# ---- handlers: the caller's access is already checked (apitable.endpoint) ----


async def me(call: Call) -> Response:
    return ok(call.who.user)


async def repos_list(call: Call) -> Response:
    q = call.query.get("q", "").strip()[:100]
    return paged(call, await call.am.list_repos(call.who.id, q=q, **page_args(call)))


async def repos_create(call: Call) -> Response:
    req: repos.RepoCreate = call.body
    repo = await call.am.create_repo(
        call.actor,
        f"{req.owner or call.who.login}/{req.name}",
        description=req.description,
        is_public=req.is_public,
        default_branch=req.default_branch,
    )
    return ok(repo, 201)


async def repo_get(call: Call) -> Response:
    return ok(call.repo)


async def repo_patch(call: Call) -> Response:
    req: repos.RepoPatch = call.body
    repo, who = call.repo, call.actor
    changes = req.model_dump(exclude={"full_name"}, exclude_none=True)
    if changes:
        repo = await call.am.update_repo(who, repo["full_name"], **changes)
    if req.full_name and req.full_name != repo["full_name"]:
        repo = await call.am.rename_repo(who, repo["full_name"], req.full_name)
    return ok(repo)


async def repo_delete(call: Call) -> Response:
    await call.am.delete_repo(call.actor, call.repo["full_name"])
    return no_content()


async def perms_list(call: Call) -> Response:
    return ok(await call.am.list_grants(call.actor, call.repo["full_name"]))


async def perm_put(call: Call) -> Response:
    req: repos.GrantLevel = call.body
    grantee = call.params["grantee"]
    return ok(await call.am.grant(call.actor, call.repo["full_name"], grantee, req.level))


async def perm_delete(call: Call) -> Response:
    await call.am.revoke(call.actor, call.repo["full_name"], call.params["grantee"])
    return no_content()


async def access_get(call: Call) -> Response:
    """The caller's own access to a repository (what git and the pages would allow)."""
    path = f"{call.params['owner']}/{call.params['name']}"
    level = call.query.get("access", "read")
    return ok(await call.am.check_access(call.who.id, path, level))


async def branches_list(call: Call) -> Response:
    return ok(await call.am.list_protected(call.actor, call.repo["full_name"]))


async def branches_add(call: Call) -> Response:
    req: repos.BranchRule = call.body
    rule = await call.am.protect_branch(
        call.actor, call.repo["full_name"], req.pattern, req.admins_only
    )
    return ok(rule, 201)


async def branches_delete(call: Call) -> Response:
    pattern = call.query.get("pattern", "")
    if not pattern:
        raise ApiError(400, "give the pattern to remove as ?pattern=")
    await call.am.unprotect_branch(call.actor, call.repo["full_name"], pattern)
    return no_content()


async def users_list(call: Call) -> Response:
    q = call.query.get("q", "").strip()[:100]
    return paged(call, await call.am.list_users(call.actor, q=q, **page_args(call)))


async def users_create(call: Call) -> Response:
    req: users.NewUser = call.body
    return ok(await call.am.add_user(call.actor, **req.model_dump()), 201)


async def user_get(call: Call) -> Response:
    return ok(await call.am.get_user(call.actor, call.params["id"]))


async def _confirm(call: Call, password: str | None) -> None:
    """The caller proved their password (see auth.Auth.confirm_recent), or 403."""
    await web_of(call.request).auth.confirm_recent(call.who, password, client_of(call.request))


async def user_patch(call: Call) -> Response:
    req: sessions.UserPatchBody = call.body
    actor, user, am = call.actor, call.user, call.am
    if (req.disabled is not None or req.is_admin is not None) and not call.who.is_admin:
        raise ApiError(403, "only site administrators may disable accounts or change admins")
    if req.disabled is not None and user["id"] == actor:
        raise ApiError(400, "you cannot disable your own account")
    if req.password is not None:
        await _confirm(call, req.current_password)  # before anything changes
    if req.display_name is not None or req.email is not None:
        user = await am.update_user(
            actor, user["id"], display_name=req.display_name, email=req.email
        )
    if req.password is not None:
        await am.set_password(actor, user["id"], req.password)
        if user["id"] == actor:
            await renew_session(call.request, call.who)
    if req.disabled is not None:
        user = await am.set_disabled(actor, user["id"], req.disabled)
    if req.is_admin is not None:
        user = await am.set_admin(actor, user["id"], req.is_admin)
    return ok(await am.get_user(actor, user["id"]))


async def user_delete(call: Call) -> Response:
    """Delete an account; `?transfer_to=` gives its repositories to a user or group first."""
    transfer = call.query.get("transfer_to", "").strip()[:64] or None
    if call.params["id"] in (call.actor, call.who.login):
        raise ApiError(400, "you cannot delete your own account; ask another admin")
    return ok(await call.am.delete_user(call.actor, call.params["id"], transfer))


async def keys_list(call: Call) -> Response:
    return paged(call, await call.am.list_keys(call.actor, call.user["id"], **page_args(call)))


async def keys_add(call: Call) -> Response:
    req: users.NewKey = call.body
    return ok(await call.am.add_key(call.actor, call.user["id"], req.key, req.title), 201)


async def _own_key(call: Call) -> dict[str, Any]:
    """The key `{kid}` of the user `{id}`; 404 for anyone else's."""
    user, kid = call.user, call.params["kid"]
    try:
        key: dict[str, Any] = await call.am.get_key(call.actor, kid)
    except AmError as exc:
        if exc.status in (400, 404):
            raise ApiError(404, f"{user['login']} has no key {kid!r}") from None
        raise
    if key["user"] != user["id"]:
        raise ApiError(404, f"{user['login']} has no key {kid!r}")
    return key


async def key_get(call: Call) -> Response:
    return ok(await _own_key(call))


async def key_put(call: Call) -> Response:
    """Retitle the key `kid`; it keeps its id. Its material cannot change: a
    different key is added (POST) and this one removed, so sshd never sees a
    key id that stood for two keys."""
    req: users.KeyPut = call.body
    key = await _own_key(call)
    if req.key is not None and req.key.split()[:2] != key["public_key"].split()[:2]:
        raise ApiError(
            409, f"a key's material cannot change; add the new key with POST and remove {key['id']}"
        )
    return ok(await call.am.update_key(call.actor, key["id"], req.title))


async def key_delete(call: Call) -> Response:
    key = await _own_key(call)
    await call.am.remove_key(call.actor, key["id"], call.user["id"])
    return no_content()


async def tokens_list(call: Call) -> Response:
    return ok(await call.am.list_tokens(call.actor, call.user["id"]))


async def tokens_create(call: Call) -> Response:
    req: sessions.NewTokenBody = call.body
    await _confirm(call, req.current_password)
    return ok(await call.am.create_token(call.actor, call.user["id"], req.title), 201)


async def token_delete(call: Call) -> Response:
    await call.am.revoke_token(call.actor, call.user["id"], call.params["tid"])
    return no_content()


async def groups_list(call: Call) -> Response:
    return paged(call, await call.am.list_groups(call.actor, **page_args(call)))


async def groups_create(call: Call) -> Response:
    req: users.NewGroup = call.body
    return ok(await call.am.create_group(call.actor, req.name, req.description), 201)


async def group_get(call: Call) -> Response:
    return ok(await call.am.get_group(call.actor, call.params["name"]))


async def group_delete(call: Call) -> Response:
    await call.am.delete_group(call.actor, call.params["name"])
    return no_content()


async def member_put(call: Call) -> Response:
    p = call.params
    return ok(await call.am.add_member(call.actor, p["name"], p["login"]))


async def member_delete(call: Call) -> Response:
    p = call.params
    return ok(await call.am.remove_member(call.actor, p["name"], p["login"]))


async def audit(call: Call) -> Response:
    q = call.query
    filters = {k: q[k].strip()[:200] for k in AUDIT_FILTERS if q.get(k)}
    args = page_args(call, AUDIT_MAX)
    return paged(call, await query_audit(web_of(call.request), call.who, filters, **args))


async def cluster(call: Call) -> Response:
    return ok(await call.am.cluster())


async def counts(call: Call) -> Response:
    return ok(await call.am.counts(call.actor))


# ---- the route table ----------------------------------------------------------

R = ApiRoute
REPO = "/repos/{owner}/{name}"
ROUTES: list[ApiRoute] = [
    R("GET", "/user", me, "The calling user", LOGGED_IN, answer=users.User),
    R(
        "GET",
        "/repos",
        repos_list,
        "Repositories the caller may read, oldest first (?q= searches)",
        ANONYMOUS,
        answer=[repos.Repo],
        paged=True,
    ),
    R(
        "POST",
        "/repos",
        repos_create,
        "Create a repository (under the caller's login or a group of theirs)",
        LOGGED_IN,
        repos.RepoCreate,
        repos.Repo,
        201,
    ),
    R("GET", REPO, repo_get, "One repository", REPO_READ, answer=repos.Repo),
    R(
        "PATCH",
        REPO,
        repo_patch,
        "Change or rename a repository",
        REPO_ADMIN,
        repos.RepoPatch,
        repos.Repo,
    ),
    R("DELETE", REPO, repo_delete, "Delete a repository", REPO_ADMIN, status=204),
    R(
        "GET",
        REPO + "/access",
        access_get,
        "The caller's access (?access=read|write|admin)",
        ANONYMOUS,
        answer=repos.AccessDecision,
    ),
    R(
        "GET",
        REPO + "/permissions",
        perms_list,
        "Explicit grants",
        REPO_ADMIN,
        answer=[repos.PermissionGrant],
    ),
    R(
        "PUT",
        REPO + "/permissions/{grantee}",
        perm_put,
        "Grant a user or group access",
        REPO_ADMIN,
        repos.GrantLevel,
        repos.PermissionGrant,
    ),
    R(
        "DELETE",
        REPO + "/permissions/{grantee}",
        perm_delete,
        "Revoke a grant",
        REPO_ADMIN,
        status=204,
    ),
    R(
        "GET",
        REPO + "/protected-branches",
        branches_list,
        "Protected branches",
        REPO_ADMIN,
        answer=[repos.ProtectedBranch],
    ),
    R(
        "POST",
        REPO + "/protected-branches",
        branches_add,
        "Protect branches",
        REPO_ADMIN,
        repos.BranchRule,
        repos.ProtectedBranch,
        201,
    ),
    R(
        "DELETE",
        REPO + "/protected-branches",
        branches_delete,
        "Remove a protection (?pattern=)",
        REPO_ADMIN,
        status=204,
    ),
    R(
        "GET",
        "/users",
        users_list,
        "Users by login (?q= searches)",
        LOGGED_IN,
        answer=[users.User],
        paged=True,
    ),
    R("POST", "/users", users_create, "Create a user", ADMIN, users.NewUser, users.User, 201),
    R(
        "GET",
        "/users/{id}",
        user_get,
        "A user by id (user-42) or login",
        LOGGED_IN,
        answer=users.User,
    ),
    R(
        "PATCH",
        "/users/{id}",
        user_patch,
        "Change a user (the flags: site admins only; a password: see current_password)",
        SELF,
        sessions.UserPatchBody,
        users.User,
    ),
    R(
        "DELETE",
        "/users/{id}",
        user_delete,
        "Delete a user (refused while they own repositories; ?transfer_to= moves them first)",
        ADMIN,
        answer=users.DeletedUser,
    ),
    R(
        "GET",
        "/users/{id}/keys",
        keys_list,
        "A user's SSH keys",
        SELF,
        answer=[users.SshKey],
        paged=True,
    ),
    R(
        "POST",
        "/users/{id}/keys",
        keys_add,
        "Add an SSH key",
        SELF,
        users.NewKey,
        users.SshKey,
        201,
    ),
    R("GET", "/users/{id}/keys/{kid}", key_get, "One SSH key", SELF, answer=users.SshKey),
    R(
        "PUT",
        "/users/{id}/keys/{kid}",
        key_put,
        "Retitle an SSH key (it keeps its id)",
        SELF,
        users.KeyPut,
        users.SshKey,
    ),
    R("DELETE", "/users/{id}/keys/{kid}", key_delete, "Remove an SSH key", SELF, status=204),
    R(
        "GET",
        "/users/{id}/tokens",
        tokens_list,
        "A user's API tokens (no secrets)",
        SELF,
        answer=[users.ApiToken],
    ),
    R(
        "POST",
        "/users/{id}/tokens",
        tokens_create,
        "Create an API token (its secret is shown once; see current_password)",
        SELF,
        sessions.NewTokenBody,
        users.NewApiToken,
        201,
    ),
    R(
        "DELETE",
        "/users/{id}/tokens/{tid}",
        token_delete,
        "Revoke an API token",
        SELF,
        status=204,
    ),
    R(
        "GET",
        "/groups",
        groups_list,
        "Groups by name",
        LOGGED_IN,
        answer=[users.Group],
        paged=True,
    ),
    R(
        "POST",
        "/groups",
        groups_create,
        "Create a group",
        ADMIN,
        users.NewGroup,
        users.Group,
        201,
    ),
    R("GET", "/groups/{name}", group_get, "One group", LOGGED_IN, answer=users.Group),
    R("DELETE", "/groups/{name}", group_delete, "Delete a group", ADMIN, status=204),
    R(
        "PUT",
        "/groups/{name}/members/{login}",
        member_put,
        "Add a member",
        ADMIN,
        answer=users.Group,
    ),
    R(
        "DELETE",
        "/groups/{name}/members/{login}",
        member_delete,
        "Remove a member",
        ADMIN,
        answer=users.Group,
    ),
    R(
        "GET",
        "/audit",
        audit,
        "The audit log, newest first (?actor=&action=&repo=&since=&until=; limit up to 10000)",
        ADMIN,
        answer=[repos.AuditEntry],
        paged=True,
    ),
    R(
        "GET",
        "/cluster",
        cluster,
        "Nodes of the cluster, up or down",
        LOGGED_IN,
        answer=[observer.ClusterNode],
    ),
    R("GET", "/counts", counts, "Totals for the dashboard", LOGGED_IN, answer=repos.Counts),
    *api_hooks.ROUTES,  # webhooks and their deliveries
]


async def openapi(request: Request) -> Response:
    return ok(document(ROUTES))


async def _not_found(request: Request) -> Response:
    return JSONResponse({"status": 404, "message": "no such API route"}, status_code=404)


def routes() -> list[Route]:
    """The Starlette routes: /openapi.json, one per path of ROUTES (its methods
    dispatched to their routes' endpoints), and a JSON 404 for the rest."""
    by_path: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        by_path.setdefault(r.path, {})[r.method] = endpoint(r)
    out = [Route("/openapi.json", openapi, methods=["GET"])]
    for path, methods in by_path.items():
        out.append(Route(path, _by_method(methods), methods=list(methods)))
    out.append(Route("/{rest:path}", _not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
    return out


def _by_method(methods: dict[str, Any]) -> Any:
    async def run(request: Request) -> Response:
        response: Response = await methods[request.method if request.method != "HEAD" else "GET"](
            request
        )
        return response

    return run
