"""`am_hook_api`: the verdict on a push, and its record (see
applikant.manager.services.hook_api for what each hook call does)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Op, Req, Result

HookName = Literal["pre-receive", "update", "post-receive", "post-update"]


class RefUpdate(Result):
    """One ref of a push, as pre-receive sees it; `is_fast_forward` comes from git.

    It is None when not computed (creations and deletions need none).
    """

    refname: str
    old: str
    new: str
    is_fast_forward: bool | None = None


Path = Annotated[str, Field(max_length=4096)]


class PushPerson(Req):
    """The author or committer of a pushed commit, as git records them."""

    name: str = Field(max_length=512)
    email: str = Field(max_length=512)
    date: str = Field(max_length=64)  # ISO 8601, with the commit's own zone


class PushCommit(Req):
    """A commit a branch update brought, described on the git host
    (applikant.frontend.pushinfo) for the webhooks' payloads."""

    id: str = Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")
    message: str = Field(max_length=16384)
    timestamp: str = Field(max_length=64)
    author: PushPerson
    committer: PushPerson
    added: list[Path] = Field(default_factory=list, max_length=1000)
    removed: list[Path] = Field(default_factory=list, max_length=1000)
    modified: list[Path] = Field(default_factory=list, max_length=1000)


class HookRef(Req):
    ref: str
    old: str
    new: str
    ff: bool | None = None
    build: bool | None = None  # post-receive: the new commit has .applikant/build.sh
    # post-receive, branches: the newest commits the update brought (oldest
    # first) and how many it brought in all; None when the git host did not say.
    commits: list[PushCommit] | None = Field(default=None, max_length=100)
    total_commits: int | None = Field(default=None, ge=0)
    head_commit: PushCommit | None = None  # when the update brought no commits


class HookCall(Req):
    hook: HookName
    repo: str
    user: str
    node: str | None = None
    event_id: str | None = None
    refs: list[HookRef] = Field(max_length=100_000)
    git_dir: str | None = None
    env: dict[str, str] | None = None
    # pre-receive: `ff` left out; am answers `need_ff` when a decision needs it
    ff_on_request: bool = False


class Verdict(Result):
    """The answer to a hook call: `messages` are lines for the pusher; a
    post-receive answer also names its audit entry and whether it was a repeat."""

    ok: bool
    messages: list[str]
    entry: int | None = None
    duplicate: bool | None = None
    need_ff: list[str] | None = None  # pre-receive with ff_on_request: ask again with these


class HookStats(Result):
    in_flight: int
    max_in_flight: int
    handled: int
    cancelled: int


AM_HOOK_API: dict[str, Op] = {
    "handle_hook": Op(HookCall, Verdict),
    "stats": Op(None, HookStats),
}
"""Every method of am_hook_api: its request model and its answer."""
