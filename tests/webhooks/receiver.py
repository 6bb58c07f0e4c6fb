"""A real HTTP receiver for webhook tests: Starlette on Hypercorn's trio
worker, on 127.0.0.1 and a free port, in the test's own trio run (so trio's
mock clock drives its timeouts too).

Paths:
  /ok           200 "thanks"
  /flaky/N      500 for the first N requests, then 200
  /hang         never answers
  /redirect     302 to itself, for ever
  /bounce       302 to `redirect_to`
  /status/N     answers N
  /big          200 with a 1 MiB body
A request whose signature does not verify gets 401, whatever the path.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from applikant.webhooks import verify

SECRET = "s3cret-for-tests"


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    signed: bool
    at: float  # trio.current_time()


@dataclass
class Receiver:
    port: int = 0
    host: str = "127.0.0.1"
    redirect_to: str = ""
    seen: list[Seen] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    stop: trio.Event = field(default_factory=trio.Event)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            signed = verify(SECRET, body, request.headers.get("x-applikant-signature-256"))
            self.seen.append(Seen(path, dict(request.headers), body, signed, trio.current_time()))
            self.hits[path] = self.hits.get(path, 0) + 1
            if not signed:
                return PlainTextResponse("bad signature", status_code=401)
            parts = path.strip("/").split("/")
            if parts[0] == "ok":
                return PlainTextResponse("thanks")
            if parts[0] == "flaky":
                if self.hits[path] <= int(parts[1]):
                    return PlainTextResponse("down on purpose", status_code=500)
                return PlainTextResponse("back")
            if parts[0] == "hang":
                await trio.sleep_forever()
            if parts[0] == "redirect":
                return RedirectResponse(self.url(path), status_code=302)
            if parts[0] == "bounce":
                return RedirectResponse(self.redirect_to, status_code=302)
            if parts[0] == "status":
                return PlainTextResponse(f"status {parts[1]}", status_code=int(parts[1]))
            if parts[0] == "big":
                return Response(b"x" * (1 << 20))
            return PlainTextResponse("no such path", status_code=404)

        return Starlette(routes=[Route("/{path:path}", endpoint, methods=["POST"])])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def start_receiver(nursery: trio.Nursery, port: int = 0, host: str = "127.0.0.1") -> Receiver:
    """A Receiver listening on `host` (any loopback address) and `port` (or a
    free one) until the nursery ends or its `stop` is set."""
    receiver = Receiver(port=port or free_port(host), host=host)
    config = Config()
    config.bind = [f"{host}:{receiver.port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.1
    await nursery.start(partial(serve, receiver.app(), config, shutdown_trigger=receiver.stop.wait))
    return receiver
