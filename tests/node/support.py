"""What the node-layer tests share: a portmapper in the test's own trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from applikant.node import portmapper
from applikant.node.node import CallContext
from applikant.node.settings import DistSettings

COOKIE = b"cookie"


@asynccontextmanager
async def running_portmapper() -> AsyncIterator[DistSettings]:
    """A portmapper on a free loopback port, and settings that point nodes at it."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(portmapper.serve, "127.0.0.1", 0)
        yield DistSettings(
            portmapper_port=port,
            listen_min=30000 + port % 20000,
            listen_max=30099 + port % 20000,
            handshake_timeout=2.0,
        )
        nursery.cancel_scope.cancel()


async def echo(ctx: CallContext, args: object) -> object:
    return args
