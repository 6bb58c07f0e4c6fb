"""/metrics in Prometheus' text format, with figures that move when things happen."""

from __future__ import annotations

import os

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


def test_dead_letters_and_waiting_pushes_are_shown(site: WebSite) -> None:
    """What a git host keeps for want of am's record is on /metrics and the dashboard."""
    from applikant.frontend import spool

    spool_dir = str(site.spool_dir)
    text = httpx.get(f"{site.base}/metrics").text
    assert sample(text, "applikant_pushes_dead_letters", '{node="af@localhost"}') == 0
    assert sample(text, "applikant_disk_below_reserve", '{node="af@localhost"}') == 0
    path = spool.bury(
        spool_dir,
        "dead-beef",
        {"request": {"env": {"APPLIKANT_REPO": "team/gone"}, "event_id": "dead-beef"}},
        "not_found: push not recorded: no repository team/gone",
    )
    try:
        text = httpx.get(f"{site.base}/metrics").text
        assert sample(text, "applikant_pushes_dead_letters", '{node="af@localhost"}') == 1
        assert (
            sample(text, "applikant_pushes_unrecorded", '{node="af@localhost",state="queued"}') == 0
        )
        page = site.admin_client().get(f"{site.base}/").text
        assert "keeps 1 push the manager refused to record" in page
        assert "team/gone" in page and "no repository team/gone" in page
    finally:
        os.unlink(path)
        os.unlink(path + ".reason")
    page = site.admin_client().get(f"{site.base}/").text
    assert "refused to record" not in page
