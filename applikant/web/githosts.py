"""What each git host's af reports of pushes not recorded yet: queued events,
intents, dead letters, and its disk reserve; for `/metrics` and the admin
dashboard.

af keeps these on its own host (its spool), so aw asks each af node am's
observer lists as up (`af_status.status`, a local name on that node), with a
short deadline: a slow git host leaves its row out rather than the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import trio

from ..node.errors import DistError

__all__ = ["git_host_reports"]

TIMEOUT = 2.0


async def git_host_reports(
    node: Any, nodes: list[dict[str, Any]], af_name: str
) -> list[dict[str, Any]]:
    """``[{"node", "events", "dead_letters", "disk"}]`` of the af nodes among
    ``nodes`` (am's observer's list) that answer; ``af_name`` is af's short name."""
    wanted = [
        n["node"] for n in nodes if n.get("up") and str(n.get("node", "")).split("@")[0] == af_name
    ]
    reports: dict[str, dict[str, Any]] = {}

    async def ask(name: str) -> None:
        try:
            status = await node.call("af_status", "status", node=name, timeout=TIMEOUT)
        except (DistError, trio.TooSlowError):
            return
        if isinstance(status, dict) and isinstance(status.get("events"), dict):
            reports[name] = {
                "node": name,
                "events": status["events"],
                "dead_letters": [_letter(d) for d in status.get("dead_letters") or []],
                "disk": status.get("disk") or {"ok": True, "problem": ""},
            }

    async with trio.open_nursery() as nursery:
        for name in wanted:
            nursery.start_soon(ask, name)
    return [reports[name] for name in wanted if name in reports]


def _letter(entry: Any) -> dict[str, str]:
    entry = entry if isinstance(entry, dict) else {}
    moment = entry.get("time")
    when = (
        datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(moment, (int, float)) and moment > 0
        else ""
    )
    return {
        "event_id": str(entry.get("event_id", "")),
        "repo": str(entry.get("repo", "")),
        "reason": str(entry.get("reason", "")),
        "time": when,
    }
