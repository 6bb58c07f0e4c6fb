"""What every schema module shares: the model bases, `parse`, and `Op`.

Three kinds of model, one convention each:
- results (`Result`): what am answers, as `model.model_dump(mode="json")` over
  msgpack, rebuilt on the other side with `Model.model_validate(data)`. Frozen,
  unknown fields refused, JSON-friendly types only (str, int, bool, datetime as
  ISO 8601 UTC, lists and maps of those). Password hashes never appear in any.
- requests (`Req`, with `Mutation` and `Read`): the `args` map of one service
  method, checked by `parse` before anything else happens. Strict types
  (msgpack gives real booleans and integers, so `"yes"` is not a boolean), no
  unknown fields, required fields present.
- bodies (`Body`): the fields a person sends, shared by am's request and aw's
  REST body for the same operation (`AddUser(NewUser, Mutation)` is am's
  `add_user`, `NewUser` the body of `POST /api/users`). Bodies bound every
  string (`str_max_length`), so aw refuses a huge value before asking am.

`actor` is who a call acts for: `system` (the admin command line and the
daemons, which hold the cluster cookie) or `user-42` (aw acting for a
logged-in user). Mutating methods require it; reads default to `system`.
`by` names the person behind a `system` call, for the record: the admin
command line sends `cli:<OS user>` (`cli:root`). am authorises the call as
`system` (the cookie is the credential) and writes `by` into the audit log as
the actor (`recorded_actor`); `by` with any other actor is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from applikant.node.errors import BadRequest

__all__ = [
    "SYSTEM",
    "AccessLevel",
    "Body",
    "Mutation",
    "Op",
    "OwnerKind",
    "Page",
    "Paged",
    "Read",
    "Req",
    "Result",
    "acts_as_system",
    "describe",
    "parse",
]

SYSTEM = "system"
"""The actor of changes made by am itself or by its local admin command line."""

BY_PATTERN = r"^cli:[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}$"
"""What `by` may say: the admin command line and the OS user who ran it."""


def acts_as_system(actor: str) -> bool:
    """Whether an audit actor is the cluster itself: `system`, or the admin
    command line recorded as its OS user (`cli:root`)."""
    return actor == SYSTEM or actor.startswith("cli:")


AccessLevel = Literal["read", "write", "admin"]
OwnerKind = Literal["user", "group"]

#: The longest string any body field takes; fields with tighter limits say so.
BODY_STR_MAX = 16384


class Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Req(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Body(Req):
    model_config = ConfigDict(str_max_length=BODY_STR_MAX)


class _Acting(Req):
    """A request made for someone (see the module docstring for `actor`, `by`)."""

    actor: str = SYSTEM
    by: str | None = Field(default=None, pattern=BY_PATTERN)

    @model_validator(mode="after")
    def _by_for_system_only(self) -> _Acting:
        if self.by is not None and self.actor != SYSTEM:
            raise ValueError("'by' names the person behind a system call only")
        return self

    @property
    def recorded_actor(self) -> str:
        """Who the audit log names: `by` for a system call that gives it, else the actor."""
        return self.by or self.actor


class Mutation(_Acting):
    actor: str


class Read(_Acting):
    actor: str = SYSTEM


class Paged(Req):
    """A page of a list: at most `limit` items after `cursor` (the `next` of the
    page before; none for the first page). Cursors are opaque; see
    applikant.manager.store.paging."""

    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=512)


T = TypeVar("T")


class Page(Result, Generic[T]):
    """One page of a list: `next` is the cursor of the page after it (None: the
    last page); `total` is given only when it cost nothing to know."""

    items: list[T]
    next: str | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a service: the model of its args and what it answers.

    `request` None: the method takes no arguments (whatever is sent is ignored).
    `answer` is a Result model, `list[Model]`, `Model | None`, a plain type
    (`dict`, `list[str]`) for free-form answers, or None for no answer.
    """

    request: type[Req] | None
    answer: Any = None


M = TypeVar("M", bound=Req)

_TYPE_WORDS = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "list_type": "a list",
    "dict_type": "a map",
    "model_type": "a map",
    "model_attributes_type": "a map",
}


def describe(error: Any) -> str:
    """One pydantic error in words: `field 'is_admin' must be true or false`."""
    loc = ".".join(str(part) for part in error["loc"]) or "arguments"
    kind = error["type"]
    if kind == "missing":
        return f"field {loc!r} is required"
    if kind == "extra_forbidden":
        return f"unknown field {loc!r}"
    if kind == "literal_error":
        return f"field {loc!r} must be {error['ctx']['expected']}"
    if kind == "value_error" and not error["loc"]:  # a rule across fields
        return str(error["ctx"]["error"])
    if kind in _TYPE_WORDS:
        return f"field {loc!r} must be {_TYPE_WORDS[kind]}"
    if kind == "string_too_long":
        return f"field {loc!r} must be at most {error['ctx']['max_length']} characters"
    if kind == "string_too_short":
        least = error["ctx"]["min_length"]
        if least == 1:
            return f"field {loc!r} must not be empty"
        return f"field {loc!r} must be at least {least} characters"
    return f"field {loc!r}: {error['msg']}"


def parse(model: type[M], args: Any, where: str) -> M:
    """`args` as a `model`; BadRequest naming `where` (service.method) and the field:
    `am_user_db.add_user: field 'is_admin' must be true or false`."""
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"{where}: the arguments must be a map of named fields")
    try:
        return model.model_validate(args)
    except ValidationError as exc:
        raise BadRequest(f"{where}: {describe(exc.errors()[0])}") from None
