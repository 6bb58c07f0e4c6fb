"""`applikant start COMPONENT`: run a daemon in the foreground (systemd's ExecStart)."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from . import common

# component -> module with `async def setup(node, config, nursery)`
COMPONENTS = {
    "am": "applikant.manager.daemon",
    "af": "applikant.frontend.daemon",
    "aw": "applikant.web.daemon",
    "ab": "applikant.builder.daemon",
}

app = typer.Typer()


@app.command()
def start(component: Annotated[str, typer.Argument(help="am, af, aw, ab or portmapper")]) -> None:
    """Run one component in the foreground until SIGTERM."""
    if component == "portmapper":
        from .cluster import portmapper

        portmapper(host=None, port=None)
        return
    module_name = COMPONENTS.get(component)
    if module_name is None:
        common.fail(
            f"unknown component {component!r}; choose one of "
            f"{', '.join(sorted(COMPONENTS))} or portmapper"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        common.fail(f"{component} is not part of this installation yet")
    from ..daemon import run_daemon

    run_daemon(component, module.setup)
