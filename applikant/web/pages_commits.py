"""History and changes: commit lists, one commit, comparisons, branches and tags.

    /{owner}/{name}/commits?ref=&path=&page=   history of a ref, or of one path
    /{owner}/{name}/commit/{id}                one commit and its diff (?style=split)
    /{owner}/{name}/commit/{id}.patch          the commit as an email patch (.diff: the diff)
    /{owner}/{name}/compare                    pick two refs
    /{owner}/{name}/compare/{base}...{head}    what head adds since it forked from base
    /{owner}/{name}/branches?page=             branches: last commit, ahead/behind the default
    /{owner}/{name}/tags?page=                 tags, with their archives

Lists paged here are git's, by page number (`paging.numbered`). Diffs are
bounded by diff.Limits, so a huge commit shows its file list and what fits,
with a note, and never takes seconds.
"""

from __future__ import annotations

import re

import trio
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from . import diff, gitread
from .badge import commit_builds
from .pages_builds import build_summary
from .paging import numbered, page_of
from .render import render
from .repoview import RepoContext, all_refs, at_ref, open_repo
from .rows import commit_rows
from .together import gather

__all__ = ["routes"]

COMMITS_PER_PAGE = 50
REFS_PER_PAGE = 30
COMPARE_COMMITS = 250
_STYLES = ("unified", "split")
_SUFFIX = re.compile(r"\.(patch|diff)\Z")


def _style(request: Request) -> str:
    """unified or split: as asked, remembered in the session for the next diff."""
    asked = request.query_params.get("style", "")
    if asked in _STYLES:
        request.session["diff_style"] = asked
        return asked
    remembered = request.session.get("diff_style")
    return remembered if remembered in _STYLES else "unified"


async def commits_page(request: Request) -> Response:
    ctx = await open_repo(request)
    subpath = gitread.check_path(request.query_params.get("path", ""))
    ref, commit, refs = await at_ref(ctx, request.query_params.get("ref", ""), with_refs=True)
    page = page_of(request)
    commits: list[gitread.Commit] = []
    if commit is not None:
        commits = await gitread.log(
            ctx.git, commit, COMMITS_PER_PAGE + 1, subpath, skip=(page - 1) * COMMITS_PER_PAGE
        )
    if subpath and commit is not None and not commits and page == 1:
        raise gitread.GitReadError(404, f"no history of {subpath!r} on {ref}")
    pager = numbered(request, page, len(commits) > COMMITS_PER_PAGE)
    shown = commits[:COMMITS_PER_PAGE]
    builds = await commit_builds(ctx, [c.id for c in shown])
    return render(
        request,
        "commits.html",
        **ctx.context(
            refs=refs,
            ref=ref,
            commit=commit,
            subpath=subpath,
            commits=shown,
            rows=commit_rows(ctx.full_name, shown, builds, subpath, build_summary),
            pager=pager,
            tab="commits",
        ),
    )


async def _commit_id(ctx: RepoContext, rev: str) -> str:
    return await gitread.resolve(ctx.git, gitread.check_ref(rev))


async def commit_page(request: Request) -> Response:
    ctx = await open_repo(request)
    rev = request.path_params["rev"]
    suffix = _SUFFIX.search(rev)
    if suffix:
        return await _patch(ctx, await _commit_id(ctx, rev[: suffix.start()]), suffix[1])
    commit = await _commit_id(ctx, rev)
    details, changes = await diff.commit_diff(ctx.git, commit)
    builds = await commit_builds(ctx, [commit])
    return render(
        request,
        "commit.html",
        **ctx.context(
            ref=commit,
            build=builds.get(commit),
            details=details,
            diff=changes,
            style=_style(request),
            split_rows=diff.split_rows,
            tab="commits",
        ),
    )


async def _patch(ctx: RepoContext, commit: str, kind: str) -> Response:
    """`git format-patch` (or the plain diff) of one commit, as text."""
    if kind == "patch":
        args: tuple[str, ...] = ("format-patch", "-1", "--stdout", "--no-signature", commit)
    else:
        args = ("show", "--diff-merges=first-parent", "--format=", "-p", "--no-color", commit)
    body = gitread.stream(ctx.git, *args)
    return StreamingResponse(
        body,
        media_type="text/plain; charset=utf-8",
        headers={"content-security-policy": "default-src 'none'; sandbox"},
    )


# ---- compare ----------------------------------------------------------------------


def _split_spec(spec: str) -> tuple[str, str]:
    for sep in ("...", ".."):
        base, found, head = spec.partition(sep)
        if found and base and head:
            return base, head
    raise HTTPException(400, "compare two refs as BASE...HEAD, e.g. main...feature")


async def compare_form(request: Request) -> Response:
    ctx = await open_repo(request)
    base = request.query_params.get("base", "")
    head = request.query_params.get("head", "")
    if base and head:
        gitread.check_ref(base)
        gitread.check_ref(head)
        return RedirectResponse(f"/{ctx.full_name}/compare/{base}...{head}", status_code=303)
    refs = await all_refs(ctx.git)
    branches = [r.name for r in refs if r.kind == "branch"]
    default = ctx.repo["default_branch"]
    other = next((b for b in branches if b != default), default)
    return render(
        request,
        "compare.html",
        **ctx.context(
            refs=refs,
            base=default,
            head=other,
            compared=False,
            ref="",
            tab="commits",
            style="unified",
        ),
    )


async def compare_page(request: Request) -> Response:
    ctx = await open_repo(request)
    base, head = _split_spec(request.path_params["spec"])
    (_, base_id, refs), (_, head_id, _) = await gather(
        lambda: at_ref(ctx, base, with_refs=True), lambda: at_ref(ctx, head)
    )
    assert base_id is not None and head_id is not None
    commits, changes = await gather(
        lambda: gitread.log_range(ctx.git, base_id, head_id, COMPARE_COMMITS + 1),
        lambda: diff.range_diff(ctx.git, base_id, head_id),
    )
    return render(
        request,
        "compare.html",
        **ctx.context(
            refs=refs,
            base=base,
            head=head,
            base_id=base_id,
            head_id=head_id,
            compared=True,
            commits=commits[:COMPARE_COMMITS],
            more_commits=len(commits) > COMPARE_COMMITS,
            diff=changes,
            style=_style(request),
            split_rows=diff.split_rows,
            ref=head,
            tab="commits",
        ),
    )


# ---- branches and tags ------------------------------------------------------------


async def branches_page(request: Request) -> Response:
    ctx = await open_repo(request)
    refs = await all_refs(ctx.git)
    default = ctx.repo["default_branch"]
    branches = [r for r in refs if r.kind == "branch"]
    branches.sort(key=lambda r: r.name != default)  # stable: the rest stay newest first
    page = page_of(request)
    start = (page - 1) * REFS_PER_PAGE
    shown = branches[start : start + REFS_PER_PAGE]
    counts: dict[str, tuple[int, int]] = {}
    base = next((r for r in refs if r.kind == "branch" and r.name == default), None)
    if base is not None:
        limiter = trio.CapacityLimiter(4)

        async def count(branch: gitread.Ref) -> None:
            async with limiter:
                counts[branch.name] = await gitread.ahead_behind(
                    ctx.git, base.target, branch.target
                )

        await gather(*[(lambda b=b: count(b)) for b in shown if b.name != default])
    return render(
        request,
        "branches.html",
        **ctx.context(
            branches=shown,
            counts=counts,
            default=default,
            has_default=base is not None,
            pager=numbered(request, page, len(branches) > start + REFS_PER_PAGE),
            ref="",
            tab="branches",
        ),
    )


async def tags_page(request: Request) -> Response:
    ctx = await open_repo(request)
    refs = await all_refs(ctx.git)
    tags = [r for r in refs if r.kind == "tag"]
    page = page_of(request)
    start = (page - 1) * REFS_PER_PAGE
    return render(
        request,
        "tags.html",
        **ctx.context(
            tags=tags[start : start + REFS_PER_PAGE],
            pager=numbered(request, page, len(tags) > start + REFS_PER_PAGE),
            ref="",
            tab="tags",
        ),
    )


def routes() -> list[Route]:
    return [
        Route("/{owner}/{name}/commits", commits_page, methods=["GET"]),
        Route("/{owner}/{name}/commit/{rev:path}", commit_page, methods=["GET"]),
        Route("/{owner}/{name}/compare", compare_form, methods=["GET"]),
        Route("/{owner}/{name}/compare/{spec:path}", compare_page, methods=["GET"]),
        Route("/{owner}/{name}/branches", branches_page, methods=["GET"]),
        Route("/{owner}/{name}/tags", tags_page, methods=["GET"]),
    ]
