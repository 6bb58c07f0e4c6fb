"""What every page of one repository starts with: who asks, whether they may
read it, where it is on disk, and which commit the page shows.

`open_repo` answers 404 for a repository the viewer may not read (private
ones are not revealed), so every route built on it is covered. It asks am
every time (decisions are never cached); with a session, in one call that
resolves the session and answers for its user (`common.viewer_and_repo`). `at_ref`
turns the `ref` query parameter (a branch, tag or commit id, checked by
gitread) into a commit id, defaulting to the repository's default branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from . import gitread
from .auth import Viewer
from .common import viewer_and_repo, web_of

__all__ = ["RepoContext", "all_refs", "at_ref", "open_repo"]


@dataclass
class RepoContext:
    web: Any
    viewer: Viewer
    repo: dict[str, Any]
    decision: dict[str, Any]
    git: str  # the bare repository's path

    @property
    def full_name(self) -> str:
        return str(self.repo["full_name"])

    def context(self, **more: Any) -> dict[str, Any]:
        """The template variables every repository page has."""
        return {"repo": self.repo, "decision": self.decision, **more}


async def open_repo(request: Request, access: str = "read") -> RepoContext:
    """The repository named by the path; AmError(404) when the viewer may not read it."""
    web = web_of(request)
    owner, name = request.path_params["owner"], request.path_params["name"]
    viewer, repo, decision = await viewer_and_repo(request, owner, name, access)
    return RepoContext(
        web, viewer, repo, decision, gitread.repo_path(web.repo_root, repo["full_name"])
    )


async def at_ref(
    ctx: RepoContext, ref: str, *, with_refs: bool = False
) -> tuple[str, str | None, list[gitread.Ref]]:
    """(ref name, its commit id or None for an empty repository, the refs if asked).

    An empty `ref` is the default branch (or the first branch when the default
    one does not exist). GitReadError(400/404) for a refused or unknown ref.
    """
    refs: list[gitread.Ref] = []
    commit: str | None = None
    if ref:
        gitread.check_ref(ref)
        if not with_refs and gitread.immutable(ref):
            return ref, await gitread.resolve(ctx.git, ref), refs
        # A branch or tag name is looked up among the refs (tags first, as git
        # does), which are cached until a ref changes on disk: no git process on
        # a warm page. Anything else (an id, `main~2`) asks git.
        refs = await all_refs(ctx.git)
        named = {r.name: r.target for r in refs if r.kind == "branch"}
        named.update({r.name: r.target for r in refs if r.kind == "tag"})
        commit = named.get(ref) or await gitread.resolve(ctx.git, ref)
        return ref, commit, refs if with_refs else []
    refs = await all_refs(ctx.git)
    branches = [r for r in refs if r.kind == "branch"]
    if not branches:
        return ctx.repo["default_branch"], None, refs
    default = ctx.repo["default_branch"]
    chosen = next((r for r in branches if r.name == default), branches[0])
    return chosen.name, chosen.target, refs


async def all_refs(path: str) -> list[gitread.Ref]:
    """Branches and tags; none for a repository with no data on disk yet."""
    try:
        return await gitread.refs(path)
    except gitread.GitReadError as exc:
        if exc.status == 404:
            return []
        raise
