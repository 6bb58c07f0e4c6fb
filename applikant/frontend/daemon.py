"""af, the daemon on the git host: ``applikant start af`` runs :func:`setup`.

What it starts (each part has its own module):

* :class:`~applikant.amclient.AmClient`: the link to am, re-opened when am
  comes back (or its names move); each time it runs the callbacks below.
* :class:`~applikant.frontend.repomanager.StoreRole`: checks the repo root (the
  cluster's marker; the same store as the af that manages it) before af serves
  anything, and holds or follows ``af_repo_manager``.
* :class:`~applikant.frontend.mirror.Mirror`: am's change events and full
  snapshots applied to sshd's keys, and to the shared store when this af
  manages it.
* :class:`~applikant.frontend.hookserver.HookServer`: ``af_hook_server`` and
  the delivery of spooled post-receive events.
* :class:`~applikant.frontend.services.Auth` and
  :class:`~applikant.frontend.repomanager.RepoManager`: ``af_auth`` and
  ``af_repo_manager``.
* :class:`~applikant.frontend.keyuse.KeyUse`: when keys were last used, told
  to am in batches.

Names: every service is registered under a *local* name on af's node, which is
what ``as``, ``ah`` and ``keys-for`` call (they know af's node, and a second git
host with its own af needs nothing else). Once its root has been accepted, af
also claims them as global names (the cluster's contract) when free: the
holder of ``af_repo_manager`` is the one af that changes the shared store; the
others forward such changes to it, serve their own host through the local names,
and take the global names over when their holder goes down. An af whose root was
refused claims nothing and answers every ``as`` with the reason.

Files, from ``[af]`` (empty means under ``[node].data_dir``): ``repo_root``
(``repos``), ``authorized_keys`` (``.ssh/authorized_keys``), ``spool_dir``
(``spool``); ``hook_program`` (the Python ``ah``) defaults to ``applikant-ah``
beside this Python, ``as_command`` to this Python running ``as`` without ``site``
(``python -S .../as_launch.py``), with ``--config PATH`` added when af was started with a config file other than the
default one (sshd gives forced commands an empty environment). Hooks link to
``<repo_root>/.applikant-hook``, a shell script the managing af writes when it
takes the role: ``as`` answers it over pipes during SSH pushes, anything else
runs ``ah`` through it (see hookpipe.py). With several git hosts the root is
mounted at the same path on each, and Applikant installed at the same path.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio

from applikant import envconfig, fsutil
from applikant.amclient import AmClient
from applikant.config import Config
from applikant.diskspace import Reserve
from applikant.frontend import authkeys, hookpipe, repostore, spool
from applikant.frontend.hookserver import HookServer
from applikant.frontend.keyuse import KeyUse
from applikant.frontend.mirror import AM_TIMEOUT, EVENTS_SERVICE, Mirror
from applikant.frontend.repodisk import ESSENTIAL_HOOKS, RepoDisk
from applikant.frontend.repomanager import RepoManager, StoreRole
from applikant.frontend.repoops import RepoOps
from applikant.frontend.services import Auth
from applikant.logs import EventLog
from applikant.node.node import CallContext, Node

__all__ = ["Frontend", "default_as_command", "default_program", "setup"]

log = EventLog("af")

#: The script every hook links to, in the repo root (a name no repo can have).
HOOK_SCRIPT = ".applikant-hook"


def default_program(name: str) -> str:
    """``name`` in the directory of this Python (the venv's bin when installed in one)."""
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)


def default_as_command() -> str:
    """This Python running ``as`` without ``site`` (as_launch.py; or, where that
    file's path cannot go into a forced command, ``applikant-as`` beside this
    Python), plus ``--config`` for a non-default config."""
    launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "as_launch.py")
    python = os.path.abspath(sys.executable)
    if all(c in authkeys._COMMAND_CHARS for c in python + launcher):
        command = f"{python} -S {launcher}"
    else:
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
        self.link = AmClient(
            node, envconfig.am_nodes(config.raw), component="af", retry=af.am_retry
        )
        self.ops = RepoOps(self.disk, node.name)
        cluster = repostore.cluster_id(config.cookie())
        self.role = StoreRole(node, self.link, self.ops, cluster, self.services, self._on_manage)
        try:
            self.mirror = Mirror(
                self.link,
                self.role,
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
        self.repos = RepoManager(node, self.role, self.ops)
        self.key_use = KeyUse(self.link)
        self.auth = Auth(
            self.link,
            self.disk,
            self.role,
            self.repos,
            host,
            self.as_command,
            self.key_use,
            self.reserve,
        )
        self.link.subscribe(EVENTS_SERVICE, timeout=AM_TIMEOUT)
        self.link.on_connect(self.mirror.on_connect)
        self.link.on_connect(self.hooks.delivery.on_connect)

    async def status(self, ctx: object, args: object) -> dict[str, Any]:
        """``af_status.status`` (local): the link to am, the mirror's progress, the
        store, and the pushes not recorded yet (``events``) with the newest dead letters."""
        events = await trio.to_thread.run_sync(spool.summary, self.spool_dir)
        dead = await trio.to_thread.run_sync(spool.dead_letters, self.spool_dir, 20)
        shortfall = await trio.to_thread.run_sync(self.reserve.shortfall)
        delivery = self.hooks.delivery
        return {
            "am_up": self.link.up,
            "connects": self.link.connects,
            # settled: keys in step with am, the root checked (and reconciled when managing)
            "synced": self.mirror.synced and self.role.state != "checking",
            "applied": self.mirror.applied,
            "keys": len(self.mirror.keys),
            "spool_delivered": self.hooks.delivered,
            "keys_used_told": self.key_use.flushed,
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
            "store": self.role.info(),
        }

    async def handle_hook(self, ctx: CallContext, request: object) -> dict[str, Any]:
        """``af_hook_server.handle_hook``, refused while this host serves no store."""
        if not self.role.serving:
            hook = request.get("hook") if isinstance(request, dict) else None
            return {"ok": hook != "pre-receive", "messages": [f"applikant: {self.role.why_not()}"]}
        return await self.hooks.handle_hook(ctx, request)

    def services(self) -> dict[str, dict[str, Any]]:
        return {
            "af_auth": self.auth.handlers(),
            "af_hook_server": {"handle_hook": self.handle_hook},
            "af_repo_manager": self.repos.handlers(),
        }

    async def _on_manage(self) -> None:
        """This af has just become the store's manager: the hook script, then a
        resync that replays the journal and reconciles the store with am."""
        try:
            await trio.to_thread.run_sync(write_hook_script, self.config)
        except OSError as exc:
            # A full disk must not keep af down; the script in place still works.
            if not os.access(self.disk.hook_program, os.X_OK):
                raise
            log.error("hook_script_not_rewritten", reason=str(exc), note="keeping the one in place")
        self.mirror.request_resync()

    async def start(self, nursery: trio.Nursery) -> None:
        """Register the local services and start the tasks; returns once they run.
        The global names follow once the repo root is accepted (StoreRole)."""
        self.node.register_local(EVENTS_SERVICE, {"changed": self.mirror.changed})
        self.node.register_local("af_status", {"status": self.status})
        for name, handlers in self.services().items():
            self.node.register_local(name, handlers)
        await nursery.start(self.role.run)
        nursery.start_soon(self.mirror.run)
        nursery.start_soon(self.hooks.delivery.run)
        nursery.start_soon(self.key_use.run)
        await nursery.start(self.link.run)
        nursery.start_soon(self._port_file)
        log.info(
            "af_started",
            repo_root=self.repo_root,
            keys_file=self.keys_file,
            as_command=self.as_command,
            spool_dir=self.spool_dir,
        )

    async def _port_file(self) -> None:
        """Say where this node listens (envconfig.af_port_file) while af runs:
        `as` and `ah` then skip the portmapper (the handshake still proves it is
        af). Removed when af stops; a file left by a killed af is only a miss."""
        path = envconfig.af_port_file(self.config.raw)
        content = f"{self.node.name} {self.node.port}\n"
        try:
            await trio.to_thread.run_sync(lambda: fsutil.write_atomic(path, content, mode=0o644))
        except OSError as exc:
            log.warning("port_file_not_written", path=path, reason=str(exc))
            return
        try:
            await trio.sleep_forever()
        finally:
            if envconfig.read_port_file(path, self.node.name) == self.node.port:
                try:
                    os.unlink(path)
                except OSError:
                    pass


async def setup(node: Node, config: Config, nursery: trio.Nursery) -> None:
    """``applikant start af``: build af and start it on ``node``."""
    frontend = Frontend(node, config)
    await frontend.start(nursery)
