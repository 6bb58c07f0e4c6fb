"""Build pages: a repository's builds, one build with its log (updating while it
runs), cancel and re-run, and the JSON the page polls.

    /{owner}/{name}/builds             the builds of a repository, newest first
    /{owner}/{name}/builds/{number}    one build (numbered per repository): status,
                                       times, log; POST cancel|rerun
    /{owner}/{name}/badge/{branch}.svg the status of the branch's newest build (badge.py)
    /api/builds/{id}/log?after=N       new log lines and the status, as JSON (build-42)

The build page is complete without JavaScript (the whole log, a reload shows
more); static/build.js polls the JSON every second while the build is queued
or running and appends the new lines. aw checks the viewer's access to the
repository (read to see, write to cancel or re-run) and asks am as the cluster.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .am import AmError
from .common import readable_repo, viewer_of, web_of
from .paging import cursor_of, keyset
from .render import field, flash, read_form, redirect, render, templates
from .timefmt import between, duration

SERVICE = "am_builds"
PAGE_LINES = 20000  # lines of log on the page; more: the CLI
POLL_LINES = 5000


_WORDS = {
    "queued": "Queued",
    "running": "Running",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timed-out": "Timed out",
    "cancelled": "Cancelled",
}


def build_summary(build: dict[str, Any]) -> str:
    """The state of a build as a person says it: "Succeeded in 12 s", "Failed after 3 s".
    static/site.js says the same when a running build changes under the reader's eyes."""
    status = str(build.get("status", ""))
    words = _WORDS.get(status, status.capitalize())
    took = between(build.get("started_at"), build.get("finished_at"))
    if took is None:
        return words
    return (
        f"{words} in {duration(took)}"
        if status == "succeeded"
        else f"{words} after {duration(took)}"
    )


templates.globals["build_summary"] = build_summary


async def _builds(request: Request, method: str, **args: Any) -> Any:
    return await web_of(request).am.call(SERVICE, method, {"actor": "system", **args})


def _number(request: Request) -> int:
    text = request.path_params["number"]
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise HTTPException(404, "no such build")
    return int(text)


async def _build_of(request: Request, access: str) -> tuple[dict, dict, dict]:
    """(repo, decision, build) for the page's repo and build; 404 when the build
    is another repo's or the viewer may not read it."""
    viewer = await viewer_of(request)
    repo, decision = await readable_repo(
        web_of(request), viewer, request.path_params["owner"], request.path_params["name"], access
    )
    try:
        build = await _builds(request, "get", build=str(_number(request)), repo=repo["full_name"])
    except AmError as exc:
        if exc.status == 404:
            raise HTTPException(404, "no such build") from None
        raise
    if build["repo"] != repo["full_name"]:
        raise HTTPException(404, "no such build")
    return repo, decision, build


async def builds_page(request: Request) -> Response:
    viewer = await viewer_of(request)
    repo, decision = await readable_repo(
        web_of(request), viewer, request.path_params["owner"], request.path_params["name"]
    )
    found = await _builds(
        request, "list", repo=repo["full_name"], limit=100, cursor=cursor_of(request)
    )
    return render(
        request,
        "builds.html",
        repo=repo,
        decision=decision,
        builds=found["items"],
        ref="",
        pager=keyset(request, found, prev_label="← Newest", next_label="Older →"),
    )


async def build_page(request: Request) -> Response:
    repo, decision, build = await _build_of(request, "read")
    log = await _builds(request, "log", build=build["id"], limit=PAGE_LINES)
    return render(
        request,
        "build.html",
        repo=repo,
        decision=decision,
        build=build,
        log=log,
        ref="",
        can_write=decision.get("level") in ("write", "admin"),
    )


async def build_post(request: Request) -> Response:
    repo, _, build = await _build_of(request, "write")
    form = await read_form(request)
    action = field(form, "action", 20)
    base = f"/{repo['full_name']}/builds"
    try:
        if action == "cancel":
            done = await _builds(request, "cancel", build=build["id"])
            flash(
                request,
                f"build #{done['number']} "
                + ("cancelled" if done["status"] == "cancelled" else "is being stopped"),
            )
        elif action == "rerun":
            done = await _builds(request, "rerun", build=build["id"])
            flash(request, f"build #{done['number']} queued")
            return redirect(f"{base}/{done['number']}")
        else:
            raise HTTPException(400, "unknown action")
    except AmError as exc:
        if exc.status >= 500:
            raise
        flash(request, exc.message, "error")
    return redirect(f"{base}/{build['number']}")


async def log_json(request: Request) -> Response:
    """`GET /api/builds/{id}/log?after=N`: {lines: [[seq, line]], next, status, final}."""
    after = request.query_params.get("after", "0")
    if not after.isdigit() or len(after) > 18:
        return JSONResponse({"error": "bad_request", "message": "after must be a number"}, 400)
    build_id = request.path_params["build"]
    try:
        if not build_id.startswith("build-"):
            raise HTTPException(404)
        build = await _builds(request, "get", build=build_id[:40])
    except (AmError, HTTPException):
        return JSONResponse({"error": "not_found", "message": "no such build"}, 404)
    owner, name = build["repo"].split("/", 1)
    try:
        await readable_repo(web_of(request), await viewer_of(request), owner, name)
    except AmError:
        return JSONResponse({"error": "not_found", "message": "no such build"}, 404)
    page = await _builds(request, "log", build=build["id"], after=int(after), limit=POLL_LINES)
    fresh = await _builds(request, "get", build=build["id"])
    page.update(
        reason=fresh["reason"],
        exit_code=fresh["exit_code"],
        finished_at=fresh["finished_at"],
        started_at=fresh["started_at"],
    )
    return JSONResponse(page, headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    return [
        Route("/api/builds/{build}/log", log_json, methods=["GET"]),
        Route("/{owner}/{name}/builds", builds_page, methods=["GET"]),
        Route("/{owner}/{name}/builds/{number}", build_page, methods=["GET"]),
        Route("/{owner}/{name}/builds/{number}", build_post, methods=["POST"]),
    ]
