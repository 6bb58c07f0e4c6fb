"""`am_builds`: the build queue, for people (CLI, aw) and runners (ab).

A build is `applikant.builder.models.Build`; a `build` argument is its id
(build-42), or its repository and number (alice/app#12), or a number with
`repo` (12 of alice/app). A number alone, without `repo`, is an id.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from applikant.builder.models import Build

from .base import Mutation, Op, Page, Paged, Read, Result

LOG_BATCH_MAX = 5000
"""Log lines per append_log call."""


class BuildLog(Result):
    """Log lines numbered above `after`: `lines` are [seq, line] pairs, `next`
    the last seq given (or `after`), `total` the lines stored."""

    build: str
    lines: list[tuple[int, str]]
    next: int
    status: str
    final: bool
    truncated: bool
    total: int


class LogAppended(Result):
    next: int
    cancel: bool


class Interrupted(Result):
    interrupted: list[Build]


class ListBuilds(Read, Paged):
    """Newest first; `limit` defaults to 50."""

    repo: str | None = None
    status: str | None = None
    limit: int = Field(default=50, ge=1, le=1000)


class BuildRef(Read):
    build: str | int
    repo: str | None = None


class ReadLog(Read):
    build: str | int
    repo: str | None = None
    after: int = 0
    limit: int = 5000


class BuildAction(Mutation):
    build: str | int
    repo: str | None = None


class LatestBuild(Read):
    """The newest build of a branch (the badge)."""

    repo: str
    branch: str = Field(min_length=1, max_length=1000)


class CommitBuilds(Read):
    """The newest build of each commit that has one (commit pages)."""

    repo: str
    commits: list[str] = Field(max_length=1000)


class Hello(Read):
    on_interrupt: Literal["fail", "requeue"] | None = None
    running: list[str] = Field(default_factory=list, max_length=1000)


class Take(Read):
    count: int = 1


class AppendLog(Read):
    build: str
    attempt: int
    lines: list[str] = Field(max_length=LOG_BATCH_MAX)


class Finish(Read):
    build: str
    attempt: int
    result: dict[str, Any]


class Release(Read):
    why: str = Field(default="interrupted (the runner stopped)", max_length=200)


AM_BUILDS: dict[str, Op] = {
    "list": Op(ListBuilds, Page[Build]),
    "get": Op(BuildRef, Build),
    "log": Op(ReadLog, BuildLog),
    "cancel": Op(BuildAction, Build),
    "rerun": Op(BuildAction, Build),
    "latest": Op(LatestBuild, Build | None),
    "of_commits": Op(CommitBuilds, dict[str, Build]),
    "counts": Op(None, dict[str, int]),
    "hello": Op(Hello, Interrupted),
    "take": Op(Take, list[Build]),
    "append_log": Op(AppendLog, LogAppended),
    "finish": Op(Finish, Build),
    "release": Op(Release, Interrupted),
}
"""Every method of am_builds: its request model and its answer."""
