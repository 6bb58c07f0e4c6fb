"""The arguments of every service method, validated at the boundary.

A call's `args` (one msgpack map) is checked against the method's model with
`parse(Model, args, where)` before anything else happens: strict types (msgpack
gives real booleans and integers, so `"yes"` is not a boolean), no unknown
fields, required fields present. A bad one raises BadRequest whose message names
the method and the field: `am_user_db.add_user: field 'is_admin' must be a
boolean`. The store then checks the values themselves (name rules, key formats).

`actor` is who the call acts for: `system` (the admin command line and the
daemons, which hold the cluster cookie) or `user-42` (aw acting for a logged-in
user). Mutating methods require it; reads default to `system`.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from applikant.manager.base import SYSTEM
from applikant.manager.errors import BadRequest

AccessLevel = Literal["read", "write", "admin"]
HookName = Literal["pre-receive", "update", "post-receive", "post-update"]

_TYPE_WORDS = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "list_type": "a list",
    "dict_type": "a map",
    "model_type": "a map",
    "model_attributes_type": "a map",
}


class Req(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Mutation(Req):
    actor: str


class Read(Req):
    actor: str = SYSTEM


M = TypeVar("M", bound=Req)


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "arguments"
    kind = error["type"]
    if kind == "missing":
        return f"field {loc!r} is required"
    if kind == "extra_forbidden":
        return f"unknown field {loc!r}"
    if kind == "literal_error":
        return f"field {loc!r} must be {error['ctx']['expected']}"
    if kind in _TYPE_WORDS:
        return f"field {loc!r} must be {_TYPE_WORDS[kind]}"
    return f"field {loc!r}: {error['msg']}"


def parse(model: type[M], args: Any, where: str) -> M:
    """`args` as a `model`; BadRequest naming `where` (service.method) and the field."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"{where}: the arguments must be a map of named fields")
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise BadRequest(f"{where}: {_describe(exc.errors()[0])}") from None


# ---- am_user_db -------------------------------------------------------------


class AddUser(Mutation):
    login: str
    display_name: str = ""
    email: str = ""
    password: str | None = Field(default=None, repr=False)
    is_admin: bool = False


class UserRef(Read):
    user: str


class ListUsers(Read):
    include_disabled: bool = True


class UpdateUser(Mutation):
    user: str
    display_name: str | None = None
    email: str | None = None


class UserAction(Mutation):
    user: str


class SetAdmin(Mutation):
    user: str
    is_admin: bool


class SetPassword(Mutation):
    user: str
    password: str | None = Field(repr=False)


class VerifyPassword(Read):
    login: str
    password: str = Field(repr=False)


class AddKey(Mutation):
    user: str
    key: str
    title: str | None = None


class RemoveKey(Mutation):
    key: str
    user: str | None = None


class KeyRef(Read):
    key: str


class FindKey(Read):
    fingerprint: str
    include_disabled: bool = False


class AllKeys(Read):
    include_disabled: bool = False


class TouchKey(Read):
    fingerprint: str


class UpdateKey(Mutation):
    key: str
    title: str


class CreateToken(Mutation):
    user: str
    title: str


class RevokeToken(Mutation):
    token: str
    user: str | None = None


class VerifyToken(Read):
    token: str = Field(repr=False)


class CreateGroup(Mutation):
    name: str
    description: str = ""


class GroupRef(Read):
    group: str


class DeleteGroup(Mutation):
    group: str


class Membership(Mutation):
    group: str
    user: str


class Subscribe(Req):
    service: str = Field(min_length=1, max_length=128)


# ---- am_repo_db -------------------------------------------------------------


class CreateRepo(Mutation):
    path: str
    description: str = ""
    is_public: bool = False
    default_branch: str = "main"


class RepoRef(Read):
    repo: str


class ListRepos(Read):
    owner: str | None = None
    visible_to: str | None = None
    public_only: bool = False


class ListReadable(Read):
    user: str | None


class UpdateRepo(Mutation):
    repo: str
    description: str | None = None
    is_public: bool | None = None
    default_branch: str | None = None


class RenameRepo(Mutation):
    repo: str
    new_path: str


class DeleteRepo(Mutation):
    repo: str


class Grant(Mutation):
    repo: str
    grantee: str
    level: AccessLevel


class Revoke(Mutation):
    repo: str
    grantee: str


class Protect(Mutation):
    repo: str
    pattern: str
    admins_only: bool = False


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


class QueryAudit(Read):
    query: AuditFilter = Field(default_factory=AuditFilter)


class RecentPushes(Read):
    limit: int = 10


# ---- am_hook_api ------------------------------------------------------------


class HookRef(Req):
    ref: str
    old: str
    new: str
    ff: bool | None = None
    build: bool | None = None  # post-receive: the new commit has .applikant/build.sh


class HookCall(Req):
    hook: HookName
    repo: str
    user: str
    node: str | None = None
    event_id: str | None = None
    refs: list[HookRef] = Field(max_length=100_000)
    git_dir: str | None = None
    env: dict[str, str] | None = None


# ---- am_observer ------------------------------------------------------------


class ReportError(Req):
    error: str = Field(max_length=2000)
