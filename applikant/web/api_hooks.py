"""The REST API of webhooks: a repository's (its admins) and the site's (site
admins), with their deliveries. Routes in the table (apitable.py), so the
dispatcher enforces their access and the OpenAPI document shows them.

    GET|POST            /repos/{owner}/{name}/hooks
    GET|PATCH|DELETE    /repos/{owner}/{name}/hooks/{hook}
    POST                /repos/{owner}/{name}/hooks/{hook}/tests     a ping, due now
    GET                 /repos/{owner}/{name}/hooks/{hook}/deliveries
    GET                 /repos/{owner}/{name}/hooks/{hook}/deliveries/{delivery}
    POST                /repos/{owner}/{name}/hooks/{hook}/deliveries/{delivery}/redeliver
    (the same under /admin/hooks for the site-wide hooks)

`{hook}` is `hook-7` (or `7`). A hook or delivery of another scope is 404, as
one that does not exist. am checks every call again (am_webhooks).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from ..schema import webhooks as s
from .am import AmError
from .apitable import ADMIN, REPO_ADMIN, Access, ApiError, ApiRoute, Call, page_args, paged

__all__ = ["ROUTES"]

SERVICE = "am_webhooks"


def _ok(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(value, status_code=status)


async def _hooks(call: Call, method: str, **args: Any) -> Any:
    return await call.am.call(SERVICE, method, {"actor": call.actor, **args})


def _scope(call: Call) -> str | None:
    """The repository of the path, or None under /admin/hooks."""
    return call.repo.get("full_name") if call.repo else None


async def _hook(call: Call) -> dict[str, Any]:
    """The path's hook, if it belongs to the path's scope; 404 otherwise."""
    ref = call.params["hook"][:40]
    ref = f"hook-{ref}" if ref.isdigit() else ref
    try:
        hook: dict[str, Any] = await _hooks(call, "get_hook", hook=ref)
    except AmError as exc:
        if exc.status in (400, 404):
            raise ApiError(404, f"no hook {ref} here") from None
        raise
    if hook["repo"] != _scope(call):
        raise ApiError(404, f"no hook {ref} here")
    return hook


async def _delivery(call: Call, hook: dict[str, Any]) -> dict[str, Any]:
    ref = call.params["delivery"][:64]
    try:
        found: dict[str, Any] = await _hooks(call, "get_delivery", delivery=ref)
    except AmError as exc:
        if exc.status in (400, 404):
            raise ApiError(404, f"no delivery {ref} of {hook['id']}") from None
        raise
    if found["hook"] != hook["id"]:
        raise ApiError(404, f"no delivery {ref} of {hook['id']}")
    return found


async def hooks_list(call: Call) -> Response:
    return _ok(await _hooks(call, "list_hooks", repo=_scope(call)))


async def hooks_create(call: Call) -> Response:
    body: s.NewHook = call.body
    made = await _hooks(call, "add_hook", repo=_scope(call), **body.model_dump())
    return _ok(made, 201)


async def hook_get(call: Call) -> Response:
    return _ok(await _hook(call))


async def hook_patch(call: Call) -> Response:
    body: s.HookPatch = call.body
    hook = await _hook(call)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        return _ok(hook)
    return _ok(await _hooks(call, "update_hook", hook=hook["id"], **changes))


async def hook_delete(call: Call) -> Response:
    hook = await _hook(call)
    await _hooks(call, "remove_hook", hook=hook["id"])
    return Response(status_code=204)


async def hook_test(call: Call) -> Response:
    hook = await _hook(call)
    return _ok(await _hooks(call, "test_hook", hook=hook["id"]), 201)


async def deliveries_list(call: Call) -> Response:
    hook = await _hook(call)
    page = await _hooks(call, "list_deliveries", hook=hook["id"], **page_args(call, 500))
    return paged(call, page)


async def delivery_get(call: Call) -> Response:
    return _ok(await _delivery(call, await _hook(call)))


async def delivery_redeliver(call: Call) -> Response:
    found = await _delivery(call, await _hook(call))
    return _ok(await _hooks(call, "redeliver", delivery=found["id"]), 201)


def _routes(base: str, access: Access, whose: str) -> list[ApiRoute]:
    R = ApiRoute
    one = base + "/{hook}"
    return [
        R("GET", base, hooks_list, f"The webhooks of {whose}", access, answer=[s.Webhook]),
        R(
            "POST",
            base,
            hooks_create,
            f"Add a webhook to {whose} (its secret is shown once; a ping is sent)",
            access,
            s.NewHook,
            s.NewWebhook,
            201,
        ),
        R("GET", one, hook_get, "One webhook", access, answer=s.Webhook),
        R(
            "PATCH",
            one,
            hook_patch,
            "Change a webhook's URL, secret, events or active flag",
            access,
            s.HookPatch,
            s.Webhook,
        ),
        R("DELETE", one, hook_delete, "Remove a webhook and its deliveries", access, status=204),
        R(
            "POST",
            one + "/tests",
            hook_test,
            "Send a test delivery (a ping) now",
            access,
            answer=s.Delivery,
            status=201,
        ),
        R(
            "GET",
            one + "/deliveries",
            deliveries_list,
            "A webhook's deliveries, newest first, with every attempt (limit up to 500)",
            access,
            answer=[s.Delivery],
            paged=True,
        ),
        R(
            "GET",
            one + "/deliveries/{delivery}",
            delivery_get,
            "One delivery, with its body and every attempt",
            access,
            answer=s.Delivery,
        ),
        R(
            "POST",
            one + "/deliveries/{delivery}/redeliver",
            delivery_redeliver,
            "Send a delivery again (a new delivery, the same body)",
            access,
            answer=s.Delivery,
            status=201,
        ),
    ]


ROUTES: list[ApiRoute] = [
    *_routes("/repos/{owner}/{name}/hooks", REPO_ADMIN, "a repository"),
    *_routes("/admin/hooks", ADMIN, "the site (every repository)"),
]
