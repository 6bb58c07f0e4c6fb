"""Webhook pages: a repository's hooks (its admins), the site-wide ones (site admins).

    /{owner}/{name}/settings/webhooks          list, add, delete
    /{owner}/{name}/settings/webhooks/{hook}   the delivery log, redeliver, edit, test
    /admin/webhooks                            site-wide hooks
    /admin/webhooks/{hook}                     their delivery log

Every POST carries the session's CSRF token (read_form checks it). A new hook's
secret is shown once, on the page after it was made, like a new API token. am
decides who may do what (am_webhooks); these pages only ask it.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .am import AmError
from .common import readable_repo, require_admin, viewer_of, web_of
from .paging import cursor_of, keyset
from .render import field, flash, read_form, redirect, render

SERVICE = "am_webhooks"
EVENTS = [
    ("push", "Push"),
    ("repo_created", "Repository created"),
    ("repo_deleted", "Repository deleted"),
    ("build_finished", "Build finished"),
]


async def _hooks(request: Request, method: str, actor: str, **args: Any) -> Any:
    return await web_of(request).am.call(SERVICE, method, {"actor": actor, **args})


async def _scope(request: Request) -> tuple[Any, dict | None, dict | None, str]:
    """(viewer, repo or None for the site, decision, base URL); refuses the others."""
    if "owner" in request.path_params:
        viewer = await viewer_of(request)
        repo, decision = await readable_repo(
            web_of(request),
            viewer,
            request.path_params["owner"],
            request.path_params["name"],
            "admin",
        )
        return viewer, repo, decision, f"/{repo['full_name']}/settings/webhooks"
    viewer = await require_admin(request)
    return viewer, None, None, "/admin/webhooks"


async def hooks_page(request: Request) -> Response:
    viewer, repo, decision, base = await _scope(request)
    hooks = await _hooks(request, "list_hooks", viewer.id, repo=repo["full_name"] if repo else None)
    fresh = request.session.pop("new_hook_secret", None)
    return render(
        request,
        "webhooks.html",
        repo=repo,
        decision=decision,
        hooks=hooks,
        base=base,
        events=EVENTS,
        fresh=fresh,
    )


async def hooks_post(request: Request) -> Response:
    viewer, repo, _, base = await _scope(request)
    form = await read_form(request)
    action = field(form, "action", 30)
    try:
        if action == "add":
            events = [name for name, _ in EVENTS if form.get(f"event_{name}") == "on"]
            made = await _hooks(
                request,
                "add_hook",
                viewer.id,
                repo=repo["full_name"] if repo else None,
                url=field(form, "url", 2048).strip(),
                events=events or ["push"],
                secret=field(form, "secret", 256) or None,
            )
            if not field(form, "secret", 256):
                request.session["new_hook_secret"] = [made["id"], made["secret"]]
            flash(request, f"hook {made['id']} added; a ping is on its way")
        elif action in ("edit", "test"):
            hook = field(form, "hook", 30)
            if action == "test":
                made = await _hooks(request, "test_hook", viewer.id, hook=hook)
                flash(request, f"test delivery {made['id']} queued")
            else:
                await _hooks(
                    request,
                    "update_hook",
                    viewer.id,
                    hook=hook,
                    url=field(form, "url", 2048).strip(),
                    events=[name for name, _ in EVENTS if form.get(f"event_{name}") == "on"]
                    or ["push"],
                    secret=field(form, "secret", 256) or None,
                    active=form.get("active") == "on",
                )
                flash(request, f"hook {hook} saved")
            return redirect(f"{base}/{hook}")
        elif action == "delete":
            removed = await _hooks(request, "remove_hook", viewer.id, hook=field(form, "hook", 30))
            flash(request, f"hook {removed['id']} ({removed['url']}) removed")
        elif action == "redeliver":
            hook = field(form, "hook", 30)
            made = await _hooks(
                request, "redeliver", viewer.id, delivery=field(form, "delivery", 64)
            )
            flash(request, f"delivery {made['redelivery_of']} queued again as {made['id']}")
            return redirect(f"{base}/{hook}")
        else:
            raise HTTPException(400, "unknown action")
    except AmError as exc:
        if exc.status not in (400, 404, 409):
            raise
        flash(request, exc.message, "error")
    return redirect(base)


async def deliveries_page(request: Request) -> Response:
    viewer, repo, decision, base = await _scope(request)
    hook_id = request.path_params["hook"]
    hook = next(
        (
            h
            for h in await _hooks(
                request, "list_hooks", viewer.id, repo=repo["full_name"] if repo else None
            )
            if h["id"] == hook_id
        ),
        None,
    )
    if hook is None:
        raise HTTPException(404, f"no hook {hook_id[:40]} here")
    found = await _hooks(
        request, "list_deliveries", viewer.id, hook=hook_id, limit=50, cursor=cursor_of(request)
    )
    return render(
        request,
        "webhook_deliveries.html",
        repo=repo,
        decision=decision,
        hook=hook,
        deliveries=found["items"],
        base=base,
        pager=keyset(request, found, prev_label="← Newest", next_label="Older →"),
        events=EVENTS,
    )


def routes() -> list[Route]:
    # Before the repository pages: /admin/webhooks would otherwise be a repository.
    return [
        Route("/admin/webhooks", hooks_page, methods=["GET"]),
        Route("/admin/webhooks", hooks_post, methods=["POST"]),
        Route("/admin/webhooks/{hook}", deliveries_page, methods=["GET"]),
        Route("/{owner}/{name}/settings/webhooks", hooks_page, methods=["GET"]),
        Route("/{owner}/{name}/settings/webhooks", hooks_post, methods=["POST"]),
        Route("/{owner}/{name}/settings/webhooks/{hook}", deliveries_page, methods=["GET"]),
    ]
