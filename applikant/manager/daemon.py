"""am as a daemon: `applikant start am` runs `setup` under applikant.daemon.

setup opens the database (creating and migrating it), then starts the services
and registers their global names (applikant.manager.services.start). The
stores are closed when the daemon stops.
"""

from __future__ import annotations

import os
import sqlite3

import trio

from applikant import config as config_mod
from applikant import envconfig
from applikant.logs import EventLog
from applikant.manager import services
from applikant.manager.errors import SchemaTooNew
from applikant.manager.runtime import Manager, open_manager
from applikant.node.node import Node

log = EventLog("am")


async def _serve(
    manager: Manager,
    config: config_mod.Config | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        async with trio.open_nursery() as nursery:
            await services.start(manager, config or config_mod.Config(), nursery)
            counts = manager.reader.audit.counts()
            log.info(
                "am_ready",
                db=manager.path,
                users=counts.users,
                repos=counts.repos,
                keys=counts.keys,
                schema=manager.writer.schema_version,
            )
            task_status.started()
            await trio.sleep_forever()
    finally:
        manager.close()


async def setup(node: Node, config: config_mod.Config, nursery: trio.Nursery) -> None:
    """Open am's database and serve am's global services (services.start)."""
    path = config.path(config.am.db, "am.sqlite3")
    try:
        before = _schema_version_of(path)
        manager = open_manager(path, node)
    except (SchemaTooNew, sqlite3.Error) as exc:
        # run_daemon prints a ConfigError as one plain line and exits 1.
        log.error("start_failed", db=path, reason=str(exc))
        raise envconfig.ConfigError(f"cannot open the database {path}: {exc}") from None
    if before is not None and before != manager.writer.schema_version:
        # An upgrade's one visible step (README: upgrade): say it in the journal.
        log.info(
            "am_schema_migrated",
            db=path,
            from_version=before,
            to_version=manager.writer.schema_version,
        )
    await nursery.start(_serve, manager, config)


def _schema_version_of(path: str) -> int | None:
    """The schema version of an existing database file, before am migrates it."""
    if not os.path.exists(path):
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()
