"""/metrics in Prometheus' text format, with figures that move when things happen."""

from __future__ import annotations

import httpx

from harness.web import WebSite


def sample(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.split()[-1])
    raise AssertionError(f"no {name}{labels} in:\n{text}")


def test_metrics_count_users_nodes_and_calls(site: WebSite) -> None:
    r = httpx.get(f"{site.base}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE applikant_pushes_total counter" in text
    users = sample(text, "applikant_users")
    assert sample(text, "applikant_nodes", '{state="up"}') >= 2
    assert sample(text, "applikant_node_calls_served_total", '{daemon="am"}') > 0
    assert sample(text, "applikant_builds", '{status="queued"}') >= 0  # the build queue
    site.add_user(f"metrics{int(users)}")
    again = httpx.get(f"{site.base}/metrics").text
    assert sample(again, "applikant_users") == users + 1
