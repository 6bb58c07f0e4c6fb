"""A stand-in for am while its services are being built: the real Store behind
am's service names, as the contract in issue 4 describes them. Development only:
the end-to-end tests run against the real am when it is installed.

    python -m tests.frontend.standin_am am@localhost DB_PATH
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from applikant import envconfig, logs
from applikant.dist.node import CallContext, open_node
from applikant.manager.store import SYSTEM, Store


def _dump(value: Any) -> Any:
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


async def run(name: str, db: str) -> None:
    raw = envconfig.load_raw()
    subscribers: set[tuple[str, str]] = set()
    pending: list[dict] = []
    store = Store(db, on_change=pending.append)
    seen_events: set[str] = set()

    async with open_node(name, envconfig.cookie(raw), envconfig.dist_settings(raw)) as node:

        async def flush() -> None:
            while pending:
                event = pending.pop(0)
                for peer, service in list(subscribers):
                    try:
                        await node.cast(service, "changed", event, node=peer)
                    except Exception:  # noqa: BLE001
                        subscribers.discard((peer, service))

        def wrap(fn: Any) -> Any:
            async def handler(ctx: CallContext, args: Any) -> Any:
                try:
                    result = fn(ctx, args or {})
                finally:
                    await flush()
                return _dump(result)
            return handler

        def subscribe(ctx: CallContext, a: dict) -> None:
            subscribers.add((ctx.caller, a["service"]))

        def list_readable(ctx: CallContext, a: dict) -> list:
            out = []
            for repo in store.list_repos(visible_to=a["user"]):
                d = store.check_access(a["user"], repo.full_name, "read")
                out.append({"repo": repo.full_name, "level": d.level})
            return out

        def handle_hook(ctx: CallContext, data: dict) -> dict:
            updates = [{"refname": r["ref"], "old": r["old"], "new": r["new"], "is_fast_forward": r["ff"]}
                       for r in data["refs"]]
            if data["hook"] == "pre-receive":
                decisions = store.decide_ref_updates(data["user"], data["repo"], updates)
                denied = [f"applikant: {d.reason}" for d in decisions if not d.allowed]
                return {"ok": not denied, "messages": denied}
            if data["event_id"] not in seen_events:
                store.record_push(data["repo"], updates, actor=data["user"], node=data["node"])
                seen_events.add(data["event_id"])
            return {"ok": True, "messages": []}

        def admin(ctx: CallContext, a: dict) -> Any:
            method = getattr(store, a["method"])
            kwargs = dict(a.get("kwargs", {}))
            if a["method"].startswith(("add_", "remove_", "create_", "grant", "protect_", "disable_",
                                       "enable_", "rename_", "delete_")):
                kwargs["actor"] = SYSTEM
            return method(*a.get("args", []), **kwargs)

        await node.register_global("am_user_db", {
            "subscribe": wrap(subscribe),
            "all_keys": wrap(lambda c, a: store.all_keys()),
            "find_key": wrap(lambda c, a: store.find_key_by_fingerprint(a["fingerprint"])),
            "admin": wrap(admin),
        })
        await node.register_global("am_repo_db", {
            "check_access": wrap(lambda c, a: store.check_access(a["user"], a["repo"], a["access"])),
            "list_readable": wrap(list_readable),
            "list_repos": wrap(lambda c, a: store.list_repos()),
            "get_repo": wrap(lambda c, a: store.get_repo(a["repo"])),
        })
        await node.register_global("am_hook_api", {"handle_hook": wrap(handle_hook)})
        print("READY", node.port, flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    logs.setup("info")
    trio.run(run, sys.argv[1], sys.argv[2])
