"""The admin command line, `applikant`: thin commands, each one call through an
ephemeral node (or a daemon started in the foreground)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import (
    admin_audit,
    admin_branch,
    admin_group,
    admin_hook,
    admin_key,
    admin_perm,
    admin_repo,
    admin_tokens,
    admin_user,
    cluster,
    common,
    ops,
    start,
)

ADMIN_GROUPS: list = [
    admin_user,
    admin_key,
    admin_tokens,
    admin_group,
    admin_repo,
    admin_perm,
    admin_branch,
    admin_audit,
]  # modules with `app` and `NAME`, appended below
from . import admin_build  # noqa: E402

ADMIN_GROUPS.append(admin_build)  # `applikant build`: the build queue
from . import tls  # noqa: E402

ADMIN_GROUPS.append(tls)  # `applikant tls`: certificates for links between hosts
ADMIN_GROUPS.append(admin_hook)  # `applikant hook`: webhooks

# add_completion: `applikant --install-completion` (bash, zsh, fish; the shell is
# the one it runs in) and `--show-completion`.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    help="Applikant: a self-hosted git platform for small teams.",
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from ..version import version

        typer.echo(f"applikant {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            envvar="APPLIKANT_CONFIG",
            help="config file (default /etc/applikant/applikant.toml; "
            "in a checkout, make run's var/applikant.toml)",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="print the version and exit"
        ),
    ] = False,
) -> None:
    common.set_config(config)


for sub in (cluster.app, start.app, ops.app):
    app.registered_commands.extend(sub.registered_commands)
# Command groups of the admin CLI (user, key, repo, ...) register themselves here:
for group in ADMIN_GROUPS:
    app.add_typer(group.app, name=group.NAME, help=group.__doc__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
