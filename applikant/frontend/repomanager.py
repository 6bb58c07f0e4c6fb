"""Who may serve the shared repository store, and who changes it: af's store role
and the ``af_repo_manager`` service.

Every git host's af checks its repo root before it serves anything
(:class:`StoreRole`), once am answers and its registry has settled:

* a root marked for another cluster is refused;
* when another af manages the cluster's store (holds ``af_repo_manager``), this
  root must carry the same marker (cluster and store id) *and* a probe file
  written here must be readable there (a copy of the root carries the marker
  too, but does not show files written a moment ago); else it is refused;
* when nobody manages the store, this af claims ``af_repo_manager``. A marked
  root is taken as it is. An unmarked one is marked (the first af of a cluster)
  when it holds repositories (an installation from before markers) or when am
  knows no repository yet; an empty unmarked root while am knows repositories is
  refused: the store is elsewhere and this host would start a second copy.

:func:`decide` is that table, without I/O. A refusal is final until af is
restarted (the operator fixes the mount first); it is logged, reported to am
(``applikant status`` shows it against af's node), answered to every ``as``
and shown by ``af_status`` and ``applikant doctor``.

The manager, the holder of ``af_repo_manager``, is the only af that changes the
store (creates, renames, deletes repositories, installs hooks; see repoops.py)
and reconciles it with am; the others forward such requests to it. When the
holder goes away a surviving af takes the name over and, before anything else,
replays the holder's intent journal and reconciles the store with am
(``on_manage``). After a healed partition the registry keeps one holder; the
other af gives up the role and checks the winner's store like any other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from applikant.amclient import AmClient, AmError
from applikant.frontend import repostore
from applikant.frontend.repodisk import (
    CommandRefused,
    RepoDisk,
    RepoDiskError,
    RepoExists,
    RepoNotFound,
)
from applikant.frontend.repoops import RepoOps
from applikant.frontend.repostore import Marker, MarkerError
from applikant.frontend.sshcommand import check_repo
from applikant.logs import EventLog
from applikant.node.errors import (
    BadRequest,
    CallTimeout,
    DistError,
    NameTaken,
    NodeDown,
    NoSuchName,
    NotFound,
    RemoteError,
    ServiceError,
)
from applikant.node.node import CallContext, NameLost, Node, NodeDownEvent

__all__ = [
    "ADOPT",
    "CLAIM",
    "JOIN",
    "MANAGER",
    "REFUSE",
    "RepoManager",
    "StoreRole",
    "decide",
    "repo_arg",
]

log = EventLog("af")

MANAGER = "af_repo_manager"
#: What :func:`decide` can say.
REFUSE, JOIN, CLAIM, ADOPT = "refuse", "join", "claim", "adopt"
CALL_TIMEOUT = 10.0
AM_REPOS_ASKED = 100  # how many of am's repositories an unmarked root's check counts
PROBE_TRIES = 10  # a new file may take a moment to show on another NFS client


def decide(
    cluster: str,
    marker: Marker | None,
    *,
    holder: tuple[str, str] | None = None,
    has_entries: bool = False,
    am_repos: int = 0,
    am_repos_more: bool = False,
) -> tuple[str, str]:
    """What an af with ``marker`` on its root does: (:data:`REFUSE`, why) or
    (:data:`JOIN` | :data:`CLAIM` | :data:`ADOPT`, ""). ``holder`` is (node,
    store id) of the af managing the store, if another one does; ``has_entries``
    whether the root holds anything of its own; ``am_repos`` how many
    repositories am knows (asked only for an unmarked root with nobody managing;
    ``am_repos_more``: it knows more than that)."""
    if marker is not None and marker.cluster != cluster:
        return REFUSE, (
            f"the repo root is marked for another cluster (cluster id {marker.cluster}, "
            f"this cluster's is {cluster}): it is another cluster's store"
        )
    if holder is not None:
        node, store = holder
        if marker is None:
            return REFUSE, (
                f"the repo root has no cluster marker, but the cluster's store (managed by "
                f"{node}) has one: this root is not the shared store; mount the cluster's "
                "shared repository root here"
            )
        if marker.store != store:
            return REFUSE, (
                f"the repo root is store {marker.store}, but the cluster's store (managed by "
                f"{node}) is {store}: this root is another copy, not the shared store"
            )
        return JOIN, ""
    if marker is not None:
        return CLAIM, ""
    if has_entries or am_repos == 0:
        return ADOPT, ""
    return REFUSE, (
        f"the repo root is empty and has no cluster marker, but am knows {am_repos}"
        f"{' or more' if am_repos_more else ''} "
        "repositories: the cluster's store is elsewhere; mount the shared repository root "
        "here (or, if the store is lost for good, mark this root with "
        "`applikant init --mark-repo-root`)"
    )


OnManage = Callable[[], Awaitable[None]]


class StoreRole:
    """This af's standing on its repo root: ``state`` is ``checking``, ``ok`` or
    ``refused`` (``reason`` says why); ``manages`` is true while it holds
    ``af_repo_manager`` and may change the store. ``cluster`` is the cluster id
    (:func:`~applikant.frontend.repostore.cluster_id` of the cookie); ``services``
    are the cluster-wide af names claimed with it (the contract in DESIGN.md)."""

    def __init__(
        self,
        node: Node,
        link: AmClient,
        ops: RepoOps,
        cluster: str,
        services: Callable[[], Mapping[str, Mapping[str, Any]]],
        on_manage: OnManage,
    ) -> None:
        self.node = node
        self.link = link
        self.ops = ops
        self.root = ops.disk.root
        self.cluster = cluster
        self.services = services
        self.on_manage = on_manage
        self.state = "checking"
        self.reason = ""
        self.marker: Marker | None = None
        self.holder: str | None = None  # the manager this af last checked its root against
        self._managing = False
        self._am_seen = trio.Event()  # set at the first connect to am
        link.on_connect(self._on_connect)

    # ---- what others ask --------------------------------------------------------------

    @property
    def serving(self) -> bool:
        return self.state == "ok"

    @property
    def manages(self) -> bool:
        return (
            self.state == "ok"
            and self._managing
            and self.node.registry.owner(MANAGER) == self.node.name
        )

    def why_not(self) -> str:
        """One line for a user whose request this af will not serve."""
        if self.state == "refused":
            return f"this git host does not serve repositories: {self.reason}"
        return "this git host is still checking its repository store; try again in a moment"

    def info(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "root": self.root,
            "cluster": self.cluster,
            "store": self.marker.store if self.marker else None,
            "manager": self.node.registry.owner(MANAGER),
            "manages": self.manages,
        }

    # ---- the task ---------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Check the root once am answers, then keep the role as nodes come and go."""
        events = self.node.monitor()
        task_status.started()
        async with events:  # closed when the role ends (refused): the node stops feeding it
            await self._am_seen.wait()
            retry = max(self.link.retry, 0.2)
            while self.state == "checking":
                try:
                    await self._settle()
                    await self._check()
                except (AmError, DistError, OSError) as exc:
                    log.warning("store_check_deferred", reason=str(exc))
                    await trio.sleep(retry)
            tick = self.node.settings.tick_time
            while self.state == "ok":
                with trio.move_on_after(tick):  # and once a tick: names can leave quietly
                    event = await events.receive()
                    if isinstance(event, NameLost):
                        log.info("global_name_kept_elsewhere", name=event.name, winner=event.winner)
                    elif not isinstance(event, NodeDownEvent):
                        continue
                try:
                    await self._review()
                except (DistError, OSError) as exc:
                    log.warning("store_review_failed", reason=str(exc))

    async def _settle(self) -> None:
        try:
            await self.node.sync(timeout=2.0)
        except trio.TooSlowError:
            pass

    async def _check(self) -> None:
        try:
            marker = await trio.to_thread.run_sync(repostore.read_marker, self.root)
        except MarkerError as exc:
            await self._refuse(str(exc))
            return
        self.marker = marker
        owner = self.node.registry.owner(MANAGER)
        if owner is not None and owner != self.node.name:
            await self._join(owner)
            return
        has_entries = await trio.to_thread.run_sync(repostore.has_entries, self.root)
        am_repos, more = 0, False
        if marker is None and not has_entries:
            # One page is enough to know whether the cluster's repositories are elsewhere.
            page = await self.link.call(
                "am_repo_db", "list_repos", {"limit": AM_REPOS_ASKED}, timeout=CALL_TIMEOUT
            )
            am_repos, more = len(page["items"]), page["next"] is not None
        verdict, why = decide(
            self.cluster, marker, has_entries=has_entries, am_repos=am_repos, am_repos_more=more
        )
        if verdict == REFUSE:
            await self._refuse(why)
            return
        if not await self._claim():
            owner = self.node.registry.owner(MANAGER)
            if owner is None:
                raise NodeDown("the af that holds af_repo_manager went away; checking again")
            await self._join(owner)
            return
        if marker is None:
            made, wrote = await trio.to_thread.run_sync(
                repostore.write_marker, self.root, self.cluster, self.node.name
            )
            self.marker = made
            if made.cluster != self.cluster:  # another cluster's af marked it meanwhile
                await self._refuse(decide(self.cluster, made)[1])
                return
            log.info("store_marked", root=self.root, store=made.store, wrote=wrote)
        self.state = "ok"
        await self._take_over()

    async def _join(self, owner: str) -> None:
        """Check this root against the store ``owner`` manages; refuse if it differs."""
        info = await self.node.call(MANAGER, "store_info", {}, node=owner, timeout=CALL_TIMEOUT)
        store = info.get("store") if isinstance(info, dict) else None
        verdict, why = decide(self.cluster, self.marker, holder=(owner, str(store)))
        if verdict == JOIN and not await self._probe(owner):
            verdict, why = (
                REFUSE,
                (
                    f"the repo root carries the cluster's marker, but a file written here is not "
                    f"seen by {owner}, which manages the store: this root is a copy, not the "
                    "shared store"
                ),
            )
        if verdict == REFUSE:
            await self._refuse(why)
            return
        first = self.state == "checking"
        self.state, self.holder, self._managing = "ok", owner, False
        log.info(
            "store_joined", root=self.root, manager=owner, store=self.marker and self.marker.store
        )
        if first:
            await self._claim_others()

    async def _probe(self, owner: str) -> bool:
        name, token = await trio.to_thread.run_sync(repostore.write_probe, self.root)
        try:
            for _ in range(PROBE_TRIES):
                reply = await self.node.call(
                    MANAGER,
                    "verify_probe",
                    {"name": name, "token": token},
                    node=owner,
                    timeout=CALL_TIMEOUT,
                )
                if isinstance(reply, dict) and reply.get("ok") is True:
                    return True
                await trio.sleep(0.2)
            return False
        finally:
            await trio.to_thread.run_sync(repostore.remove_probe, self.root, name)

    async def _claim(self) -> bool:
        """Claim af_repo_manager (and the other af names that are free); whether
        this af now holds af_repo_manager."""
        if self.node.registry.owner(MANAGER) != self.node.name:
            try:
                await self.node.register_global(MANAGER, self.services()[MANAGER])
            except NameTaken:
                return False
        await self._settle()
        if self.node.registry.owner(MANAGER) != self.node.name:
            return False
        await self._claim_others()
        return True

    async def _claim_others(self) -> None:
        for name, handlers in self.services().items():
            if name != MANAGER and self.node.registry.owner(name) is None:
                try:
                    await self.node.register_global(name, handlers)
                except NameTaken:
                    pass

    async def _take_over(self) -> None:
        self._managing = True
        self.holder = self.node.name
        log.info("repo_manager", root=self.root, store=self.marker and self.marker.store)
        await self.on_manage()

    async def _review(self) -> None:
        """After a node went down or a name was lost: hold or follow af_repo_manager."""
        await self._claim_others()
        owner = self.node.registry.owner(MANAGER)
        if owner is None:
            if await self._claim():
                await self._take_over()
            elif (owner := self.node.registry.owner(MANAGER)) is not None:
                await self._join(owner)
        elif owner == self.node.name:
            if not self._managing:
                await self._take_over()
        elif owner != self.holder or self._managing:
            if self._managing:
                log.warning("repo_manager_lost", to=owner)
            self._managing = False
            await self._join(owner)

    async def _refuse(self, reason: str) -> None:
        self.state, self.reason, self._managing = "refused", reason, False
        log.error("repo_root_refused", root=self.root, reason=reason)
        for name in list(self.services()):
            if self.node.registry.owner(name) == self.node.name:
                await self.node.unregister_global(name)
        await self._report()

    async def _on_connect(self) -> None:
        self._am_seen.set()
        await self._report()

    async def _report(self) -> None:
        """Tell am (``applikant status``) why this af refuses; on each (re)connect."""
        if self.state != "refused":
            return
        try:
            await self.link.call(
                "am_observer",
                "report_error",
                {"error": f"repo root {self.root} refused: {self.reason}"},
                timeout=CALL_TIMEOUT,
            )
        except AmError as exc:
            log.warning("report_failed", reason=str(exc))


# ---- the service ---------------------------------------------------------------------------


def repo_arg(value: Any) -> str:
    """A request's ``owner/name``; BadRequest when it is not one."""
    if not isinstance(value, str):
        raise BadRequest("repo must be owner/name")
    try:
        check_repo(value)
    except CommandRefused as exc:
        raise BadRequest(exc.message) from None
    return value


class RepoManager:
    """The ``af_repo_manager`` service. Changes are made by the managing af (this
    one, or the holder of the global name, to which they are forwarded once);
    ``list_repos`` and ``check_repo`` read this host's view of the store."""

    def __init__(self, node: Node, role: StoreRole, ops: RepoOps) -> None:
        self.node = node
        self.role = role
        self.ops = ops
        self.disk: RepoDisk = ops.disk

    def handlers(self) -> dict[str, Any]:
        return {
            "create_repo": self.create_repo,
            "list_repos": self.list_repos,
            "rename_repo": self.rename_repo,
            "delete_repo": self.delete_repo,
            "check_repo": self.check_repo,
            "store_info": self.store_info,
            "verify_probe": self.verify_probe,
        }

    async def create_repo(self, ctx: CallContext, args: Any) -> Any:
        """``{"repo", "default_branch"?, "id"?}`` -> ``{"path"}``; idempotent."""
        args = args if isinstance(args, dict) else {"repo": args}
        repo = repo_arg(args.get("repo") or args.get("full_name"))
        spec = {
            "full_name": repo,
            "id": args.get("id") or "",
            "default_branch": args.get("default_branch") or "main",
        }
        if not self.role.manages:
            return await self._forward("create_repo", {**spec, "repo": repo}, args)
        return {"path": await self._run(self.ops.ensure, spec)}

    async def ensure(self, repo: dict[str, Any]) -> str:
        """The path of ``repo`` (an am Repo as a dict) on this host, made by the
        managing af if it is not there yet. Raises RepoDiskError when it cannot."""
        if self.role.manages:
            return await trio.to_thread.run_sync(self.ops.ensure, repo)
        try:
            spec = {k: repo.get(k) for k in ("id", "default_branch")}
            await self._forward("create_repo", {**spec, "repo": repo["full_name"]}, {})
        except ServiceError as exc:
            raise RepoDiskError(exc.message) from None
        except RemoteError as exc:
            raise RepoDiskError(exc.message) from None
        name = str(repo["full_name"])
        if not self.disk.exists(name):
            log.error("store_not_shared", repo=name, manager=self.role.holder)
            raise RepoDiskError(
                f"{name} was made by the af that manages the store but is not seen here"
            )
        return self.disk.path(name)

    async def list_repos(self, ctx: CallContext, args: Any) -> Any:
        return await self._run(self.disk.list)

    async def rename_repo(self, ctx: CallContext, args: Any) -> Any:
        old, new = repo_arg(args.get("old")), repo_arg(args.get("new"))
        if not self.role.manages:
            return await self._forward("rename_repo", {"old": old, "new": new}, args)

        def rename() -> str:
            if not self.disk.exists(old):
                raise RepoNotFound(f"no repository {old}")
            if self.disk.exists(new):
                raise RepoExists(f"repository {new} already exists")
            return self.ops.rename(old, new, self.ops.read_id(old) or "") or self.disk.path(new)

        return {"path": await self._run(rename)}

    async def delete_repo(self, ctx: CallContext, args: Any) -> None:
        repo = repo_arg(args.get("repo") if isinstance(args, dict) else args)
        if not self.role.manages:
            await self._forward("delete_repo", {"repo": repo}, args)
            return

        def delete() -> None:
            if not self.disk.exists(repo):
                raise RepoNotFound(f"no repository {repo}")
            self.ops.delete(repo)

        await self._run(delete)

    async def check_repo(self, ctx: CallContext, args: Any) -> Any:
        repo = repo_arg(args.get("repo") if isinstance(args, dict) else args)
        return await self._run(self.disk.check_hooks, repo)

    async def store_info(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        """This af's standing and its root's marker (what another af compares with);
        ``unavailable`` while this af has not settled on its root."""
        if self.role.manages:
            return self.role.info()
        raise ServiceError("this af does not manage the repository store (yet)", kind="unavailable")

    async def verify_probe(self, ctx: CallContext, args: Any) -> dict[str, bool]:
        """``{"name", "token"}``: whether this host's root shows that probe file."""
        name = args.get("name") if isinstance(args, dict) else None
        token = args.get("token") if isinstance(args, dict) else None
        if not isinstance(name, str) or not isinstance(token, str):
            raise BadRequest("name and token must be strings")
        found = await trio.to_thread.run_sync(repostore.read_probe, self.disk.root, name)
        return {"ok": found == token}

    # ---- internals -------------------------------------------------------------------

    async def _forward(self, method: str, args: dict[str, Any], original: Any) -> Any:
        if not self.role.serving:
            raise ServiceError(self.role.why_not(), kind="unavailable")
        if isinstance(original, dict) and original.get("forwarded"):
            # The caller took this af for the manager: registries disagree for a moment.
            raise ServiceError("this af does not manage the repository store", kind="not_manager")
        try:
            return await self.node.call(
                MANAGER, method, {**args, "forwarded": True}, timeout=CALL_TIMEOUT
            )
        except NoSuchName:
            raise ServiceError(
                "no af manages the repository store right now; try again in a moment",
                kind="unavailable",
            ) from None
        except (NodeDown, CallTimeout) as exc:
            raise ServiceError(
                f"the af that manages the repository store cannot be reached: {exc}",
                kind="unavailable",
            ) from None

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except RepoNotFound as exc:
            raise NotFound(str(exc)) from None
        except RepoExists as exc:
            raise ServiceError(str(exc), kind="conflict") from None
        except CommandRefused as exc:
            raise BadRequest(exc.message) from None
        except RepoDiskError as exc:
            raise ServiceError(str(exc), kind="repo_error") from None
