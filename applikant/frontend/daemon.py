"""af, the daemon on the git host: ``applikant start af`` runs :func:`setup`.

What it starts (each part has its own module):

* :class:`~applikant.amclient.AmClient`: the link to am, re-opened when am
  comes back (or its names move); each time it runs the callbacks below.
* :class:`~applikant.frontend.mirror.Mirror`: am's change events and full
  snapshots applied to sshd's keys and the repos on disk.
* :class:`~applikant.frontend.hookserver.HookServer`: ``af_hook_server`` and
  the delivery of spooled post-receive events.
* :class:`~applikant.frontend.services.Auth` and ``RepoManager``:
  ``af_auth`` and ``af_repo_manager``.

Names: every service is registered under a *local* name on af's node, which is
what ``as``, ``ah`` and ``keys-for`` call (they know af's node, and a second git
host with its own af needs nothing else). The same services are also claimed as
global names (the contract in DESIGN.md) when free; a second af finds them taken,
logs it and serves its own host through the local names.

Files, from ``[af]`` (empty means under ``[node].data_dir``): ``repo_root``
(``repos``), ``authorized_keys`` (``.ssh/authorized_keys``), ``spool_dir``
(``spool``); ``hook_program`` (the Python ``ah``) and ``as_command`` default to
``applikant-ah`` and ``applikant-as`` beside this Python, with ``--config PATH``
added to the latter when af was started with a config file other than the
default one (sshd gives forced commands an empty environment). Hooks link to
``<repo_root>/.applikant-hook``, a shell script af writes at start: ``as``
answers it over pipes during SSH pushes, anything else runs ``ah`` through it
(see hookpipe.py).
"""

from __future__ import annotations

import os
import sys

import trio

from applikant import envconfig
from applikant.amclient import AmClient
from applikant.config import Config
from applikant.diskspace import Reserve
from applikant.frontend import authkeys, hookpipe, spool
from applikant.frontend.hookserver import HookServer
from applikant.frontend.mirror import AM_TIMEOUT, EVENTS_SERVICE, Mirror
from applikant.frontend.repodisk import ESSENTIAL_HOOKS, RepoDisk
from applikant.frontend.services import Auth, RepoManager
from applikant.logs import EventLog
from applikant.node.errors import NameTaken
from applikant.node.node import NameLost, Node, NodeDownEvent

__all__ = ["Frontend", "default_as_command", "default_program", "setup"]

log = EventLog("af")

#: The script every hook links to, in the repo root (a name no repo can have).
HOOK_SCRIPT = ".applikant-hook"


def default_program(name: str) -> str:
    """``name`` in the directory of this Python (the venv's bin when installed in one)."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)


def default_as_command() -> str:
    """``applikant-as`` beside this Python, plus ``--config`` for a non-default config."""
    command = default_program("applikant-as")
    path = envconfig.config_path()
    if path and os.path.abspath(path) != envconfig.DEFAULT_CONFIG:
        path = os.path.abspath(path)
        if any(c not in authkeys._COMMAND_CHARS for c in path):
            # sshd runs the forced command through a shell, and it is one word here
            raise envconfig.ConfigError(
                f"the config file's path {path!r} cannot go into a forced command (use letters, "
                "digits and /._+- only), or set [af] as_command"
            )
        command += f" --config {path}"
    return command


def repo_disk(config: Config) -> RepoDisk:
    """The repositories of this git host as af lays them out (also used by
    `applikant restore` and `doctor`): every hook a link to the hook script."""
    repo_root = config.path(config.af.repo_root, "repos")
    return RepoDisk(repo_root, os.path.join(repo_root, HOOK_SCRIPT), hooks=ESSENTIAL_HOOKS)


def write_hook_script(config: Config) -> None:
    """The script every hook links to: `as` answers it over pipes, else it runs ah."""
    ah_program = config.af.hook_program or default_program("applikant-ah")
    path = os.path.join(config.path(config.af.repo_root, "repos"), HOOK_SCRIPT)
    content = hookpipe.wrapper_script(ah_program)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == content and os.access(path, os.X_OK):
                return
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    authkeys.write_atomic(path, content, mode=0o755)


class Frontend:
    """All of af's parts, wired together; :meth:`start` runs them."""

    def __init__(self, node: Node, config: Config) -> None:
        af = config.af
        self.node = node
        self.repo_root = config.path(af.repo_root, "repos")
        self.keys_file = config.path(af.authorized_keys, os.path.join(".ssh", "authorized_keys"))
        self.spool_dir = config.path(af.spool_dir, "spool")
        self.as_command = af.as_command or default_as_command()
        self.config = config
        # Every hook links to a shell script that `as` answers over pipes, or
        # that runs ah (hookpipe.py); pre-receive and post-receive only (ah_cmd.py).
        self.disk = repo_disk(config)
        self.link = AmClient(node, config.node_name("am"), component="af", retry=af.am_retry)
        try:
            self.mirror = Mirror(
                self.link,
                self.disk,
                keys_mode=af.keys_mode,
                keys_file=self.keys_file,
                as_command=self.as_command,
            )
        except ValueError as exc:  # authkeys.InvalidKey included
            raise envconfig.ConfigError(
                f"[af] as_command {self.as_command!r} or keys_mode {af.keys_mode!r}: {exc}"
            ) from None
        # Below it, pushes are refused and records of accepted ones still fit.
        self.reserve = Reserve([self.repo_root, self.spool_dir], config.node.disk_reserve_mb)
        self.hooks = HookServer(self.link, self.disk, self.spool_dir, node.name, self.reserve)
        host = node.name.split("@", 1)[1]
        self.auth = Auth(self.link, self.disk, self.mirror, host, self.as_command, self.reserve)
        self.repos = RepoManager(self.disk, self.mirror)
        self.link.subscribe(EVENTS_SERVICE, timeout=AM_TIMEOUT)
        self.link.on_connect(self.mirror.on_connect)
        self.link.on_connect(self.hooks.delivery.on_connect)

    async def status(self, ctx: object, args: object) -> dict:
        """``af_status.status`` (local): the link to am, the mirror's progress, and
        the pushes not recorded yet (``events``) with the newest dead letters."""
        events = await trio.to_thread.run_sync(spool.summary, self.spool_dir)
        dead = await trio.to_thread.run_sync(spool.dead_letters, self.spool_dir, 20)
        shortfall = await trio.to_thread.run_sync(self.reserve.shortfall)
        delivery = self.hooks.delivery
        return {
            "am_up": self.link.up,
            "connects": self.link.connects,
            "synced": self.mirror.synced,
            "applied": self.mirror.applied,
            "keys": len(self.mirror.keys),
            "spool_delivered": self.hooks.delivered,
            "keys_mode": self.mirror.keys_mode,
            "keys_written": self.mirror.keys_written,
            "keys_error": self.mirror.keys_error,
            "events": {
                **events,
                "delivered": delivery.delivered,
                "discarded": delivery.discarded,
                "last_error": delivery.last_error,
            },
            "dead_letters": [
                {k: d[k] for k in ("event_id", "repo", "reason", "time")} for d in dead
            ],
            "disk": {"ok": shortfall is None, "problem": str(shortfall or "")},
        }

    def services(self) -> dict[str, dict]:
        return {
            "af_auth": self.auth.handlers(),
            "af_hook_server": {"handle_hook": self.hooks.handle_hook},
            "af_repo_manager": self.repos.handlers(),
        }

    async def start(self, nursery: trio.Nursery) -> None:
        """Register the services and start the tasks; returns once they run."""
        try:
            await trio.to_thread.run_sync(self.disk.purge_trash)
            await trio.to_thread.run_sync(write_hook_script, self.config)
        except OSError as exc:
            # A full disk must not keep af down; the script in place still works.
            if not os.access(self.disk.hook_program, os.X_OK):
                raise
            log.error("start_repairs_failed", reason=str(exc), note="keeping the hook script")
        self.node.register_local(EVENTS_SERVICE, {"changed": self.mirror.changed})
        self.node.register_local("af_status", {"status": self.status})
        for name, handlers in self.services().items():
            self.node.register_local(name, handlers)
        events = self.node.monitor()
        await self._claim_global_names()
        nursery.start_soon(self._keep_global_names, events)
        nursery.start_soon(self.mirror.run)
        nursery.start_soon(self.hooks.delivery.run)
        await nursery.start(self.link.run)
        log.info(
            "af_started",
            repo_root=self.repo_root,
            keys_file=self.keys_file,
            as_command=self.as_command,
            spool_dir=self.spool_dir,
        )

    async def _claim_global_names(self) -> None:
        """Claim the cluster-wide af names that nobody holds. With several git
        hosts the first af holds them and the others serve their own host through
        the local names; when the holder goes away, a survivor takes them over."""
        for name, handlers in self.services().items():
            owner = self.node.registry.owner(name)
            if owner is not None:
                continue
            try:
                await self.node.register_global(name, handlers)
            except NameTaken as exc:
                log.info(
                    "global_name_taken",
                    name=name,
                    reason=str(exc),
                    note="serving this host through the local name",
                )

    async def _keep_global_names(self, events: trio.MemoryReceiveChannel) -> None:
        async for event in events:
            if isinstance(event, (NodeDownEvent, NameLost)):
                if isinstance(event, NameLost):
                    log.info(
                        "global_name_kept_elsewhere",
                        name=event.name,
                        winner=event.winner,
                        note="serving this host through the local name",
                    )
                await self._claim_global_names()


async def setup(node: Node, config: Config, nursery: trio.Nursery) -> None:
    """``applikant start af``: build af and start it on ``node``."""
    frontend = Frontend(node, config)
    await frontend.start(nursery)
