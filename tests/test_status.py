"""`applikant status`: every node am knows, up or down, uptime, names, last errors."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from applikant.version import version
from harness.gitenv import GitSite
from harness.wait import wait_until

pytestmark = pytest.mark.slow


def test_status_shows_every_node_and_what_went_wrong(tmp_path: Path) -> None:
    with GitSite(tmp_path) as site:
        r = site.cluster.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        names = [n["node"] for n in report["nodes"]]
        assert sorted(names) == sorted(set(names)), "each node once"
        nodes = {n["node"]: n for n in report["nodes"]}
        assert len(nodes) == len(report["nodes"])  # am once, though it is its own observer
        assert nodes["am@localhost"]["info"]["uptime_s"] > 0
        assert "am_user_db" in nodes["am@localhost"]["info"]["own_names"]
        assert nodes["af@localhost"]["state"] == "up"
        assert "af_auth" in nodes["af@localhost"]["info"]["own_names"]
        assert report["version"] == nodes["af@localhost"]["info"]["version"] == version()
        table = site.cluster.cli("status")
        assert "af@localhost" in table.stdout and "UPTIME" in table.stdout
        assert table.stdout.count("am@localhost") == 1
        assert f"applikant {version()} (this command)" in table.stdout and "VERSION" in table.stdout
        site.stop_af(signal.SIGKILL)

        def af_down() -> dict | None:
            out = json.loads(site.cluster.cli("status", "--json").stdout)
            af = {n["node"]: n for n in out["nodes"]}["af@localhost"]
            return af if af["state"] == "down" else None

        af = wait_until(af_down, what="af down in status")
        assert af["last_down_reason"]
        assert af["info"] == {}
