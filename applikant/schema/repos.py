"""`am_repo_db`: repositories, permissions, protected branches, access
decisions, the audit log and the dashboard's figures; and the REST bodies of
the same operations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .base import AccessLevel, Body, Mutation, Op, OwnerKind, Page, Paged, Read, Req, Result

# ---- results ------------------------------------------------------------------


class Repo(Result):
    """A repository; `full_name` is `owner/name`, the path on disk is `full_name + ".git"`."""

    id: str
    owner: str
    owner_kind: OwnerKind
    name: str
    full_name: str
    description: str
    is_public: bool
    default_branch: str
    created_at: datetime


class PermissionGrant(Result):
    """An explicit grant of `level` on `repo` to a user (by login) or a group."""

    repo: str
    grantee: str
    grantee_kind: OwnerKind
    level: AccessLevel


class ProtectedBranch(Result):
    """A protection rule: `pattern` is fnmatch-style on the branch name (no refs/heads/).

    Matching branches can never be force-pushed or deleted; with `admins_only`, only
    users with admin access to the repository may push to them at all.
    """

    repo: str
    pattern: str
    admins_only: bool
    created_at: datetime


class AuditEntry(Result):
    """One line of the append-only audit log; `details` is action-specific JSON.

    `actor` is who acted, as recorded: `user-42`, `system`, `cli:root` (the
    admin command line run by root), `anonymous`. `actor_login` is the login of
    a `user-42` actor as it is now (None for the others, and for an account
    deleted since)."""

    id: int
    time: datetime
    actor: str
    node: str | None
    action: str
    repo: str | None
    details: dict[str, Any]
    event_id: str | None = None
    actor_login: str | None = None


class AccessDecision(Result):
    """The answer to "may this user do that?"; `reason` is meant for people.

    `level` is the access the user actually has on the repository (None for none),
    whether or not it was enough. `repo` is the repository's canonical name
    (`alice/secret` when `ALICE/Secret` was asked), given when allowed: names
    are looked up case-insensitively, and every read and push then uses it.
    """

    allowed: bool
    reason: str
    level: AccessLevel | None = None
    repo: str | None = None


class Readable(Result):
    """A repository someone can read, with the level they have on it."""

    repo: str
    level: AccessLevel
    is_public: bool
    description: str
    default_branch: str


class Counts(Result):
    """Totals for the dashboard: site-wide for site admins; for anyone else,
    what they may read (enabled users, groups, the repositories they can read,
    their own keys, the pushes to those repositories) and no refusal counts."""

    users: int
    repos: int
    keys: int
    groups: int
    pushes: int | None = 0  # None: not asked for (CountsQuery.pushes)
    push_denials: int | None = 0  # None: for site admins only
    access_denials: int | None = 0
    capped: list[str] = []  # figures counted only up to a cap: "1,000+"


# ---- bodies ------------------------------------------------------------------------


class RepoSettings(Body):
    description: str = Field(default="", max_length=1024)
    is_public: bool = False
    default_branch: str = Field(default="main", max_length=255)


class RepoCreate(RepoSettings):
    """`POST /api/repos`: a new repository; `owner` defaults to the caller."""

    name: str = Field(max_length=100)
    owner: str | None = Field(default=None, max_length=64)


class RepoChanges(Body):
    """Changes to a repository; None leaves a field as it is."""

    description: str | None = Field(default=None, max_length=1024)
    is_public: bool | None = None
    default_branch: str | None = Field(default=None, max_length=255)


class RepoPatch(RepoChanges):
    """`PATCH /api/repos/{owner}/{name}`: changes; `full_name` renames
    (possibly to another owner)."""

    full_name: str | None = Field(default=None, max_length=140)


class GrantLevel(Body):
    """`PUT /api/repos/{owner}/{name}/permissions/{grantee}`."""

    level: AccessLevel


class BranchRule(Body):
    """`POST /api/repos/{owner}/{name}/protected-branches`."""

    pattern: str = Field(max_length=255)
    admins_only: bool = False


# ---- requests of am_repo_db ------------------------------------------------------------


class CreateRepo(RepoSettings, Mutation):
    path: str


class RepoRef(Read):
    repo: str


class ListRepos(Read, Paged):
    """Without `owner`: the site's repositories by id (`newest_first` turns the
    order round); with it, that owner's by name. `q` searches names and
    descriptions."""

    owner: str | None = None
    visible_to: str | None = None
    public_only: bool = False
    q: str | None = Field(default=None, max_length=100)
    newest_first: bool = False


class ListReadable(Read, Paged):
    user: str | None


class UpdateRepo(RepoChanges, Mutation):
    repo: str


class RenameRepo(Mutation):
    repo: str
    new_path: str


class DeleteRepo(Mutation):
    repo: str


class Grant(GrantLevel, Mutation):
    repo: str
    grantee: str


class Revoke(Mutation):
    repo: str
    grantee: str


class Protect(BranchRule, Mutation):
    repo: str


class Unprotect(Mutation):
    repo: str
    pattern: str


class CheckAccess(Read):
    user: str | None
    repo: str
    access: AccessLevel
    audit: bool = False


class AuditFilter(Req):
    actor: str | None = None
    action: str | None = None
    repo: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int = 100
    cursor: str | None = Field(default=None, max_length=512)


class QueryAudit(Read):
    query: AuditFilter = Field(default_factory=AuditFilter)


class RecentPushes(Read):
    limit: int = 10


class CountsQuery(Read):
    """`pushes: false` leaves the pushes uncounted (answered as null): the
    dashboard shows no such figure, and for a user who reads many repositories
    it is the costly one (the pushes are looked up repository by repository)."""

    pushes: bool = True


AM_REPO_DB: dict[str, Op] = {
    "check_access": Op(CheckAccess, AccessDecision),
    "list_readable": Op(ListReadable, Page[Readable]),
    "create_repo": Op(CreateRepo, Repo),
    "get_repo": Op(RepoRef, Repo),
    "list_repos": Op(ListRepos, Page[Repo]),
    "update_repo": Op(UpdateRepo, Repo),
    "rename_repo": Op(RenameRepo, Repo),
    "delete_repo": Op(DeleteRepo, Repo),
    "grant": Op(Grant, PermissionGrant),
    "revoke": Op(Revoke, None),
    "list_grants": Op(RepoRef, list[PermissionGrant]),
    "protect_branch": Op(Protect, ProtectedBranch),
    "unprotect_branch": Op(Unprotect, None),
    "list_protected": Op(RepoRef, list[ProtectedBranch]),
    "query_audit": Op(QueryAudit, Page[AuditEntry]),
    "recent_pushes": Op(RecentPushes, list[AuditEntry]),
    "counts": Op(CountsQuery, Counts),
}
"""Every method of am_repo_db: its request model and its answer."""
