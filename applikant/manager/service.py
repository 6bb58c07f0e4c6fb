"""What am's services share: handler tables, result encoding, error accounting.

A service is a class with `NAME` (its global name) and `METHODS` (the names of
its `async def method(self, ctx, args)` handlers). `handlers()` gives the table
for `node.register_global`. Every handler validates its args first
(requests.parse), authorizes the actor (Manager.require_*), then asks the store.
Typed errors (BadRequest, NotFound, Conflict, Forbidden) go back to the caller
as they are; anything else is a bug: the node layer logs it and answers
"internal", and the observer notes it against the calling node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import wraps
from typing import Any

from pydantic import BaseModel

from applikant.manager.runtime import Manager
from applikant.node.errors import ServiceError
from applikant.node.node import CallContext, Handler


def dump(value: Any) -> Any:
    """A store result as msgpack-able data (models as JSON-friendly dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [dump(v) for v in value]
    return value


class Service:
    NAME = ""
    METHODS: Iterable[str] = ()

    def __init__(self, manager: Manager) -> None:
        self.m = manager

    def where(self, ctx: CallContext) -> str:
        return f"{ctx.service}.{ctx.method}"

    def handlers(self) -> Mapping[str, Handler]:
        table: dict[str, Handler] = {}
        for name in self.METHODS:
            table[name] = self._accounted(getattr(self, name))
        return table

    def _accounted(self, method: Handler) -> Handler:
        observer = self.m.observer

        @wraps(method)
        async def handler(ctx: CallContext, args: Any) -> Any:
            try:
                return await method(ctx, args)
            except ServiceError:
                raise
            except Exception as exc:
                observer.error(
                    ctx.caller, f"{ctx.service}.{ctx.method} failed: {type(exc).__name__}"
                )
                raise

        return handler
