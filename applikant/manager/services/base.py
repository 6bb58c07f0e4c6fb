"""What am's services share: handler tables, argument checking, result encoding,
error accounting.

A service is a class with `NAME` (its global name) and `SCHEMA` (its table in
applikant.schema: `{method: Op(request, answer)}`), and one `async def
method(self, ctx, req)` per entry. `handlers()` gives the table for
`node.register_global`: each handler checks the call's args against the
method's request model first (`schema.parse`: BadRequest naming the method and
the field, `am_user_db.add_user: field 'is_admin' must be true or false`), then
the method authorizes the actor (Manager.require_*) and asks the store. Typed
errors (BadRequest, NotFound, Conflict, Forbidden) go back to the caller as
they are; anything else is a bug: the node layer logs it and answers
"internal", and the observer notes it against the calling node.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import wraps
from typing import Any

from pydantic import BaseModel

from applikant.manager.errors import Unavailable
from applikant.manager.runtime import Manager
from applikant.manager.store.paging import Page
from applikant.node.errors import ServiceError
from applikant.node.node import CallContext, Handler
from applikant.schema.base import Op, parse


def dump(value: Any) -> Any:
    """A store result as msgpack-able data (models as JSON-friendly dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Page):
        return value.as_json(dump)
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    return value


class Service:
    NAME = ""
    SCHEMA: Mapping[str, Op] = {}

    def __init__(self, manager: Manager) -> None:
        self.m = manager

    def where(self, ctx: CallContext) -> str:
        return f"{ctx.service}.{ctx.method}"

    def handlers(self) -> dict[str, Handler]:
        """One handler per method of SCHEMA (each checks its args first)."""
        return {name: self._handler(name, op) for name, op in self.SCHEMA.items()}

    def _handler(self, name: str, op: Op) -> Handler:
        method = getattr(self, name)
        observer = self.m.observer
        request = op.request

        @wraps(method)
        async def handler(ctx: CallContext, args: Any) -> Any:
            try:
                req = None if request is None else parse(request, args, self.where(ctx))
                return await method(ctx, req)
            except ServiceError:
                raise
            except self.m.unavailable as exc:
                # The database is out of reach, or this am was fenced: the
                # caller tries again (elsewhere); the lease watch looks now.
                self.m.trouble.set()
                raise Unavailable(
                    f"the manager (am) cannot serve now: {_first_line(exc)}"
                ) from None
            except Exception as exc:
                observer.error(
                    ctx.caller, f"{ctx.service}.{ctx.method} failed: {type(exc).__name__}"
                )
                raise

        return handler


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
