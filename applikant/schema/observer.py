"""`am_observer`: what am knows of the cluster's nodes."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Op, Req, Result


class NodeError(Result):
    time: str
    error: str


class NodeState(Result):
    """One node as am has seen it: up or down since when, and its last errors."""

    node: str
    state: str  # up or down
    since: str
    ups: int
    downs: int
    last_down_reason: str
    errors: list[NodeError]


class Cluster(Result):
    am: str
    time: str
    nodes: list[NodeState]


class ClusterNode(Result):
    """A node as aw's API lists it (`GET /api/cluster`)."""

    node: str
    up: bool


class ReportError(Req):
    error: str = Field(max_length=2000)


AM_OBSERVER: dict[str, Op] = {
    "cluster": Op(None, Cluster),
    "subscribers": Op(None, list[dict[str, Any]]),
    "report_error": Op(ReportError, None),
}
"""Every method of am_observer: its request model and its answer."""
