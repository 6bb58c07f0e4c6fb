"""am as a daemon: `applikant start am` runs `setup` under applikant.daemon.

On SQLite, setup opens the database (creating and migrating it), then starts
the services and registers their global names (applikant.manager.services.start).

On PostgreSQL several am may share the database, one active at a time
(applikant.manager.lease). Each runs `lead`: as a standby it waits for the
lease; holding it, it opens the store fenced by the lease's epoch, starts the
services and takes the am_* names over (stamp -epoch); it watches the lease
every `lease_timeout / 4` s, and when the lease is lost (taken over, its session
ended, the server out of reach, a write fenced) it steps down: names withdrawn,
store closed, standby again. It never writes while it does not hold the lease:
the database refuses (fencing). The daemon is ready once it is active or a
standby. The stores are closed when the daemon stops.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import trio

from applikant import config as config_mod
from applikant import envconfig
from applikant.diskspace import Reserve
from applikant.logs import EventLog
from applikant.manager import services
from applikant.manager.errors import SchemaTooNew
from applikant.manager.passwords import Passwords
from applikant.manager.runtime import Manager, open_manager
from applikant.manager.store.engines import backend_for, is_url, redact
from applikant.node.node import Node

if TYPE_CHECKING:
    from applikant.manager.lease import Lease

log = EventLog("am")


async def _serve(
    manager: Manager,
    config: config_mod.Config,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    *,
    stamp: float | None = None,
    own: bool = True,
) -> None:
    """Serve am's names with `manager` until cancelled; close it then when `own`."""
    manager.reserve = _reserve(manager.path, config)
    try:
        async with trio.open_nursery() as nursery:
            await services.start(manager, config, nursery, stamp=stamp)
            counts = manager.reader.audit.counts()
            log.info(
                "am_ready",
                db=redact(manager.path),
                users=counts.users,
                repos=counts.repos,
                keys=counts.keys,
                schema=manager.writer.schema_version,
            )
            task_status.started()
            await trio.sleep_forever()
    finally:
        if own:
            manager.close()


def _reserve(path: str, config: config_mod.Config) -> Reserve:
    """am's disk reserve (applikant.diskspace): the filesystem of its SQLite file.

    On PostgreSQL am keeps none: the database's disk is the server's, which am
    cannot see (and am writes no data of its own locally). The server refuses a
    write that does not fit (an error reply, which af retries), and its own disk
    is watched where it runs; said once in the log.
    """
    if is_url(path):
        log.info(
            "disk_reserve_off", reason="am's database is on PostgreSQL; its disk is the server's"
        )
        return Reserve([], 0)
    return Reserve([path], config.node.disk_reserve_mb)


async def setup(node: Node, config: config_mod.Config, nursery: trio.Nursery) -> None:
    """Open am's database and serve am's global services (services.start);
    on PostgreSQL, as the active am or a standby (`lead`)."""
    path = config.path(config.am.db, "am.sqlite3")
    if is_url(path):
        await nursery.start(lead, node, config, path)
        return
    try:
        before = backend_for(path).version_of(path)
        manager = open_manager(path, node)
    except Exception as exc:
        raise _start_error(path, exc) from None
    _log_migration(path, before, manager)
    await nursery.start(_serve, manager, config)


def _start_error(path: str, exc: Exception) -> Exception:
    """A database that cannot be opened: one plain line (run_daemon prints a
    ConfigError so and exits 1); anything else is a bug, raised as it is."""
    errors: tuple[type[Exception], ...] = (
        SchemaTooNew,
        *backend_for(path).unavailable_errors,
        *_driver_error(path),
        _sqlite_error(),
    )
    if not isinstance(exc, errors):
        return exc
    log.error("start_failed", db=redact(path), reason=str(exc))
    return envconfig.ConfigError(f"cannot open the database {redact(path)}: {exc}")


def _sqlite_error() -> type[Exception]:
    import sqlite3

    return sqlite3.Error


def _driver_error(path: str) -> tuple[type[Exception], ...]:
    """Every error of the database's driver (a wrong URL, a missing privilege)."""
    if not is_url(path):
        return ()
    import psycopg

    return (psycopg.Error,)


def _log_migration(path: str, before: int | None, manager: Manager) -> None:
    if before is not None and before != manager.writer.schema_version:
        # An upgrade's one visible step (README: upgrade): say it in the journal.
        log.info(
            "am_schema_migrated",
            db=redact(path),
            from_version=before,
            to_version=manager.writer.schema_version,
        )


# ---- PostgreSQL: the active am and its standbys ---------------------------------------


async def lead(
    node: Node,
    config: config_mod.Config,
    url: str,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Forever: wait for the lease, serve while holding it, step down when it
    is lost. Started once am is active or a standby; the start fails when the
    database cannot be reached at all."""
    from applikant.manager.lease import Lease

    timeout = config.am.lease_timeout
    poll = min(0.25, timeout / 4)
    unavailable = backend_for(url).unavailable_errors
    # Made once, before any lease: a takeover should not wait for it.
    passwords = await trio.to_thread.run_sync(Passwords)
    started = False
    while True:
        lease = Lease(url, node.name, timeout=timeout)
        try:
            await trio.to_thread.run_sync(lease.connect)
            if not await trio.to_thread.run_sync(lease.try_acquire):
                log.info("am_standby", db=redact(url))
                if not started:
                    task_status.started()
                    started = True
                await _wait_for_lock(lease, poll)
            ready = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_active, node, config, url, lease, ready, passwords)
                await ready.wait()
                if not started:
                    task_status.started()
                    started = True
        except unavailable as exc:
            if not started:
                raise _start_error(url, exc) from None
            log.warning("db_unreachable", db=redact(url), reason=_first_line(exc))
        finally:
            with _cleanup(timeout):
                await trio.to_thread.run_sync(lease.close, abandon_on_cancel=True)
        await trio.sleep(poll)


async def _wait_for_lock(lease: Lease, poll: float) -> None:
    """Poll for the lease's lock (a standby; each try also keeps its session alive)."""
    while True:
        if await trio.to_thread.run_sync(lease.try_acquire):
            return
        await trio.sleep(poll)


def _cleanup(timeout: float) -> trio.CancelScope:
    """A scope for giving things up: not cancelled from outside, but bounded."""
    return trio.CancelScope(deadline=trio.current_time() + timeout, shield=True)


async def _active(
    node: Node,
    config: config_mod.Config,
    url: str,
    lease: Lease,
    ready: trio.Event,
    passwords: Passwords,
) -> None:
    """Holding the lease's lock: take the lease, serve, watch it; return when
    it is lost (or the database fails; `ready` is set then too)."""
    timeout = config.am.lease_timeout
    unavailable = backend_for(url).unavailable_errors
    manager: Manager | None = None
    try:
        async with trio.open_nursery() as getting_ready:
            # Opening (and migrating) the store may take longer than the
            # session may stay idle: keep the lock's session alive meanwhile.
            getting_ready.start_soon(_touch, lease, timeout / 4)
            before = await trio.to_thread.run_sync(backend_for(url).version_of, url)
            manager = await trio.to_thread.run_sync(
                partial(open_manager, url, node, passwords, timeout=max(timeout, 2.0))
            )
            epoch = await trio.to_thread.run_sync(lease.take)
            getting_ready.cancel_scope.cancel()
        _log_migration(url, before, manager)
        manager.writer.core.backend.lease = epoch
        log.info("am_active", epoch=epoch, db=redact(url))
        async with trio.open_nursery() as serving:
            await serving.start(partial(_serve, manager, config, stamp=-float(epoch), own=False))
            ready.set()
            await _watch(lease, manager, timeout)
            log.warning("am_lease_lost", epoch=epoch)
            serving.cancel_scope.cancel()
    except* unavailable as group:
        log.warning("am_stepped_down", reason=_first_line(group.exceptions[0]))
    finally:
        ready.set()
        with _cleanup(timeout):
            await services.stop(node)
            if manager is not None:
                # A store stuck on a dead server must not hold the step-down up.
                await trio.to_thread.run_sync(manager.close, abandon_on_cancel=True)


async def _touch(lease: Lease, every: float) -> None:
    while True:
        await trio.sleep(every)
        await trio.to_thread.run_sync(lease.touch)


async def _watch(lease: Lease, manager: Manager, timeout: float) -> None:
    """Return when the lease is no longer this am's: taken over, its session or
    the server gone, or no answer within `timeout`."""
    every = timeout / 4
    while True:
        with trio.move_on_after(every):
            await manager.trouble.wait()
        manager.trouble = trio.Event()
        held = False
        with trio.move_on_after(timeout):
            try:
                held = await trio.to_thread.run_sync(lease.check, abandon_on_cancel=True)
            except Exception as exc:
                log.warning("lease_check_failed", reason=_first_line(exc))
        if not held:
            return


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
