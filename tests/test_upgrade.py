"""A store made by the first schema is upgraded when am starts, nothing lost.

tests/fixtures/am-schema-v1.sqlite3 was written at schema version 1 (users alice
and bob, bob's key, group devs with write on alice/project, a protected main
and a recorded push); am must bring it to the current version on start.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from applikant import procs
from applikant.manager.store.sqlite import MIGRATIONS
from harness.cluster import Cluster
from harness.wait import wait_until

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "am-schema-v1.sqlite3"


def test_am_upgrades_a_first_schema_store_on_start(cluster: Cluster, tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    shutil.copyfile(FIXTURE, db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone() == (1,)
    cluster.config.write_text(cluster.config.read_text() + f'\n[am]\ndb = "{db}"\n')
    cluster.start_portmapper()
    am = cluster._spawn(procs.python_module("applikant.cli.main", "start", "am"), "am")
    wait_until(
        lambda: cluster.cli("ping", "am@localhost").returncode == 0 or not am.alive(),
        what="am up",
    )
    assert am.alive(), am.log_text()
    version = sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)
    # The one line an operator looks for after an upgrade (README: upgrade).
    assert "am_schema_migrated" in am.log_text()
    assert f"from_version=1 to_version={len(MIGRATIONS)}" in am.log_text()

    users = json.loads(cluster.cli("user", "list", "--json").stdout)
    assert sorted(u["login"] for u in users) == ["alice", "bob"]
    keys = json.loads(cluster.cli("key", "list", "bob", "--json").stdout)
    assert [k["title"] for k in keys] == ["bob@laptop"]
    grants = json.loads(cluster.cli("perm", "list", "alice/project", "--json").stdout)
    assert [(g["grantee"], g["level"]) for g in grants] == [("devs", "write")]
    audit = json.loads(cluster.cli("audit", "--action", "push", "--json").stdout)
    assert [e["repo"] for e in audit] == ["alice/project"]
