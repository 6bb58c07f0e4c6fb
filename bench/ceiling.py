"""The framework's ceiling: a trivial Starlette app on Hypercorn's trio worker,
configured as aw configures it, answering a small JSON list. bench.scale calls it
the way it calls aw (keep-alive clients), so aw's rates can be read against what
the framework alone allows on the same machine.

    .venv/bin/python -m bench.ceiling --port 8123    # serves until killed
"""

from __future__ import annotations

import argparse

import trio
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from applikant.web.daemon import hypercorn_config

ITEMS = [{"id": f"repo-{i}", "full_name": f"owner/repo{i}"} for i in range(3)]


async def listing(request: Request) -> JSONResponse:
    return JSONResponse(ITEMS)


app = Starlette(routes=[Route("/", listing)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    config = hypercorn_config(f"127.0.0.1:{args.port}")
    trio.run(serve, app, config)


if __name__ == "__main__":
    main()
