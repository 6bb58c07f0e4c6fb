"""Retention: am prunes old builds (with their logs) and old webhook
deliveries in the background, so the database does not grow for ever.

Every `[am] prune_interval` seconds (and once soon after am starts): the
finished builds of each repository beyond its newest `keep_builds`, and the
deliveries that are over and older than `keep_deliveries_days` days. 0 keeps
everything. Each batch is one short write through the manager (other writes
go between batches, and below the disk reserve too: it frees space); nothing is
audited (housekeeping), one log line says what went.
"""

from __future__ import annotations

from datetime import timedelta

import trio

from applikant.logs import EventLog
from applikant.manager.runtime import Manager

__all__ = ["FIRST_AFTER", "prune_once", "run_pruner"]

log = EventLog("am")

FIRST_AFTER = 60.0  # seconds after am starts: let the start-up traffic pass first
BATCH = 500


async def prune_once(manager: Manager, keep_builds: int, keep_days: float) -> dict[str, int]:
    """One pruning pass: {"builds": n, "deliveries": n} deleted."""
    done = {"builds": 0, "deliveries": 0}
    if keep_builds > 0:
        while True:
            gone, _ = await manager.write_reserved(
                manager.writer.builds.prune, keep_builds, limit=BATCH
            )
            done["builds"] += gone
            if gone < BATCH:
                break
    if keep_days > 0:
        before = manager.writer.core.clock() - timedelta(days=keep_days)
        while True:
            gone, _ = await manager.write_reserved(
                manager.writer.webhooks.prune_deliveries, before, limit=BATCH
            )
            done["deliveries"] += gone
            if gone < BATCH:
                break
    return done


async def run_pruner(
    manager: Manager,
    *,
    keep_builds: int,
    keep_days: float,
    interval: float,
    first_after: float = FIRST_AFTER,
) -> None:
    """Prune for ever (until cancelled with am's nursery); a failed pass is
    logged and tried again at the next interval."""
    if keep_builds <= 0 and keep_days <= 0:
        return
    await trio.sleep(min(first_after, interval))
    while True:
        try:
            done = await prune_once(manager, keep_builds, keep_days)
        except Exception as exc:  # the store failed: the next pass tries again
            log.error("prune_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if any(done.values()):
                log.info("pruned", **done, keep_builds=keep_builds, keep_days=keep_days)
        await trio.sleep(interval)
