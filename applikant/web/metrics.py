"""`GET /metrics`: the cluster's figures in Prometheus' text format.

Scraped by a site admin, with the bearer token of `[aw] metrics_token_file`
(a Prometheus elsewhere), or from loopback (a local Prometheus) when the
request came through no proxy: a peer that is a trusted proxy, or a request
with a forwarding header (X-Forwarded-For, Forwarded, X-Real-IP), is not
"local" whatever its address, so a reverse proxy on the same host does not
open /metrics to everyone. Anyone else gets 403. Everything comes from am (counts, hook calls,
the nodes its observer sees, the build queue when builds run), from each git
host's af (pushes not recorded yet, dead letters, its disk reserve) and from
the node layer's own counters of am and aw.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ..node.errors import DistError
from .am import AmError
from .common import viewer_of, web_of
from .githosts import git_host_reports
from .security import FORWARDING_HEADERS, is_loopback, parse_bearer, secret_ok

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _local(request: Request) -> bool:
    """A scraper on this host talking to aw directly (see the module docstring)."""
    peer = request.client.host if request.client else ""
    if not is_loopback(peer) or web_of(request).proxies.trusts(peer):
        return False
    return not any(h in request.headers for h in FORWARDING_HEADERS)


async def _may_scrape(request: Request) -> bool:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return secret_ok(web_of(request).metrics_token, parse_bearer(header))
    return _local(request) or (await viewer_of(request)).is_admin


class Exposition:
    """Lines of the text format, each metric with its HELP and TYPE once."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._seen: set[str] = set()

    def add(
        self,
        name: str,
        kind: str,
        help_text: str,
        value: float,
        labels: dict[str, str] | None = None,
    ) -> None:
        if name not in self._seen:
            self._seen.add(name)
            self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        label = ""
        if labels:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            label = "{" + inner + "}"
        self.lines.append(f"{name}{label} {value:g}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def _optional(coro: Any) -> Any:
    try:
        return await coro
    except (AmError, DistError):
        return None


async def metrics(request: Request) -> PlainTextResponse:
    web = request.app.state.web
    if not await _may_scrape(request):
        return PlainTextResponse(
            "metrics are served to site admins, the metrics token and local scrapers only\n",
            status_code=403,
        )
    out = Exposition()
    counts = await _optional(web.am.counts("system")) or {}
    for key in ("users", "repos", "keys", "groups"):
        if key in counts:
            out.add(f"applikant_{key}", "gauge", f"Number of {key} in am's store", counts[key])
    for key, help_text in (
        ("pushes", "Pushes recorded"),
        ("push_denials", "Pushes refused"),
        ("access_denials", "SSH/HTTP access attempts refused"),
    ):
        if key in counts:
            out.add(f"applikant_{key}_total", "counter", help_text, counts[key])
    nodes = await _optional(web.am.cluster()) or []
    for state in ("up", "down"):
        out.add(
            "applikant_nodes",
            "gauge",
            "Nodes am's observer sees, by state",
            sum(1 for n in nodes if n.get("state") == state),
            {"state": state},
        )
    hosts = await git_host_reports(web.am.node, nodes, web.extra.get("af_name", "af"))
    for host in hosts:
        events, label = host["events"], {"node": host["node"]}
        for state in ("intents", "queued"):
            out.add(
                "applikant_pushes_unrecorded",
                "gauge",
                "Pushes a git host has not got am to record yet (written-ahead intents, queued)",
                events.get(state, 0),
                {**label, "state": state},
            )
        out.add(
            "applikant_pushes_dead_letters",
            "gauge",
            "Pushes am refused to record for good, kept by the git host (applikant doctor)",
            events.get("dead", 0),
            label,
        )
        out.add(
            "applikant_disk_below_reserve",
            "gauge",
            "1 when a git host's data filesystem is below its reserve (pushes refused)",
            0 if host["disk"].get("ok", True) else 1,
            label,
        )
    hooks = await _optional(web.am.call("am_hook_api", "stats", {})) or {}
    if hooks:
        out.add(
            "applikant_hook_calls_total",
            "counter",
            "Hook calls am handled",
            hooks.get("handled", 0),
        )
        out.add(
            "applikant_hook_calls_in_flight",
            "gauge",
            "Hook calls being handled now",
            hooks.get("in_flight", 0),
        )
    builds = await _optional(web.am.call("am_builds", "counts", {}))
    if isinstance(builds, dict):
        for status, count in sorted(builds.items()):
            out.add(
                "applikant_builds",
                "gauge",
                "Builds in am's queue, by status",
                count,
                {"status": status},
            )
    infos = [("aw", web.am.node.info_counters())]
    am_info = await _optional(web.am.node.call("node", "info", node=web.am.am_node, timeout=5))
    if isinstance(am_info, dict):
        infos.append(("am", am_info.get("counters", {})))
    for component, counters in infos:
        for key, value in sorted(counters.items()):
            out.add(
                f"applikant_node_{key}_total",
                "counter",
                "Calls over the node layer, per daemon",
                value,
                {"daemon": component},
            )
    return PlainTextResponse(out.text(), media_type=CONTENT_TYPE)


def routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
