"""What the store returns, and the few structured inputs it takes.

These models are the service boundary: the service layer sends
`model.model_dump(mode="json")` over msgpack and rebuilds them with
`Model.model_validate(data)` on the other side. So they hold only JSON-friendly
types (str, int, bool, datetime as ISO 8601 UTC, lists and dicts of those), are
frozen, and refuse unknown fields. Password hashes never appear in any of them.

Stable ids are strings with a kind prefix (`user-42`, `key-7`, `group-3`,
`repo-9`): they survive renames and are what forced-command lines and audit
entries refer to.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AccessLevel = Literal["read", "write", "admin"]
OwnerKind = Literal["user", "group"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class User(_Model):
    """An account. `disabled` accounts can neither log in nor use their keys."""

    id: str
    login: str
    display_name: str
    email: str
    is_admin: bool
    disabled: bool
    has_password: bool
    created_at: datetime


class SshKey(_Model):
    """A validated public key; `public_key` is the normalised `type base64 comment` line."""

    id: str
    user: str
    login: str
    title: str
    key_type: str
    bits: int
    fingerprint: str
    public_key: str
    created_at: datetime
    last_used_at: datetime | None


class ApiToken(_Model):
    """A personal API token, without its secret (only a hash of it is kept)."""

    id: str
    user: str
    title: str
    created_at: datetime
    last_used_at: datetime | None


class NewApiToken(ApiToken):
    """The answer to create_token: the only time the secret `token` is shown."""

    token: str = Field(repr=False)


class Group(_Model):
    """A team. Members are listed by login, sorted case-insensitively."""

    id: str
    name: str
    description: str
    members: list[str]
    created_at: datetime


class Repo(_Model):
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


class PermissionGrant(_Model):
    """An explicit grant of `level` on `repo` to a user (by login) or a group."""

    repo: str
    grantee: str
    grantee_kind: OwnerKind
    level: AccessLevel


class ProtectedBranch(_Model):
    """A protection rule: `pattern` is fnmatch-style on the branch name (no refs/heads/).

    Matching branches can never be force-pushed or deleted; with `admins_only`, only
    users with admin access to the repository may push to them at all.
    """

    repo: str
    pattern: str
    admins_only: bool
    created_at: datetime


class AuditEntry(_Model):
    """One line of the append-only audit log; `details` is action-specific JSON."""

    id: int
    time: datetime
    actor: str
    node: str | None
    action: str
    repo: str | None
    details: dict[str, Any]
    event_id: str | None = None


class AccessDecision(_Model):
    """The answer to "may this user do that?"; `reason` is meant for people.

    `level` is the access the user actually has on the repository (None for none),
    whether or not it was enough.
    """

    allowed: bool
    reason: str
    level: AccessLevel | None = None


class RefUpdate(_Model):
    """One ref of a push, as pre-receive sees it; `is_fast_forward` comes from git.

    It is None when not computed (creations and deletions need none).
    """

    refname: str
    old: str
    new: str
    is_fast_forward: bool | None = None


# Inputs. Field names equal the keyword arguments of the store method named in
# each docstring, so the service can call `store.add_user(**req.model_dump(),
# actor=..., node=...)`. The store validates again: these only shape the request.


class NewUser(_Model):
    """Arguments of Store.add_user."""

    login: str
    display_name: str = ""
    email: str = ""
    password: str | None = Field(default=None, repr=False)
    is_admin: bool = False


class UserChanges(_Model):
    """Arguments of Store.update_user (besides the user); None leaves a field."""

    display_name: str | None = None
    email: str | None = None


class NewKey(_Model):
    """Arguments of Store.add_key."""

    user: str
    key: str
    title: str | None = None


class NewRepo(_Model):
    """Arguments of Store.create_repo."""

    path: str
    description: str = ""
    is_public: bool = False
    default_branch: str = "main"


class RepoChanges(_Model):
    """Arguments of Store.update_repo (besides the path); None leaves a field."""

    description: str | None = None
    is_public: bool | None = None
    default_branch: str | None = None


class GrantRequest(_Model):
    """Arguments of Store.grant."""

    repo: str
    grantee: str
    level: AccessLevel


class BranchRule(_Model):
    """Arguments of Store.protect_branch."""

    repo: str
    pattern: str
    admins_only: bool = False


class AuditQuery(_Model):
    """Arguments of Store.query_audit."""

    actor: str | None = None
    action: str | None = None
    repo: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100


class Counts(_Model):
    """Totals for the dashboard."""

    users: int
    repos: int
    keys: int
    groups: int
    pushes: int = 0
    push_denials: int = 0
    access_denials: int = 0
