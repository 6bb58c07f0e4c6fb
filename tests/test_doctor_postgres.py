"""`applikant doctor` on a PostgreSQL store: the server answers, the schema is
one this am knows, an am holds the lease (and which one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from applikant import procs
from applikant.config import AmSection, Config, NodeSection
from applikant.manager.lease import Lease
from applikant.manager.store import Store
from applikant.manager.store.schema import MIGRATIONS
from applikant.ops.doctor import check_database
from harness.postgres import PgServer
from harness.wait import wait_until

pytestmark = pytest.mark.slow


def config(tmp_path: Path, db: str) -> Config:
    return Config(node=NodeSection(data_dir=str(tmp_path)), am=AmSection(db=db))


def found(checks: list, name: str) -> tuple[str, str]:
    [check] = [c for c in checks if c.name == name]
    return check.status, check.found


def test_doctor_checks_the_postgresql_store(tmp_path: Path, pg_server: PgServer) -> None:
    url = pg_server.create_database()
    status, text = found(check_database(config(tmp_path, url)), "database")
    assert status == "warn" and f"schema version 0 of {len(MIGRATIONS)}" in text, text

    Store(url).close()
    checks = check_database(config(tmp_path, url))
    assert found(checks, "database")[0] == "ok"
    assert found(checks, "am lease") == ("warn", "no am has taken the lease yet")
    assert found(checks, "database connections")[0] == "ok"

    lease = Lease(url, "am@manager1")
    lease.connect()
    assert lease.try_acquire()
    lease.take()
    status, text = found(check_database(config(tmp_path, url)), "am lease")
    assert status == "ok" and "am@manager1 is active (epoch 1" in text, text
    lease.close()

    def dead() -> tuple[str, str] | None:
        got = found(check_database(config(tmp_path, url)), "am lease")
        return got if got[0] == "fail" else None

    status, text = wait_until(dead, timeout=10, what="the lease to be free")
    assert "no am is active" in text and "am@manager1" in text, text

    pg_server.sql(
        f"UPDATE applikant_schema SET version = {len(MIGRATIONS) + 1}", url.rsplit("/", 1)[1]
    )
    status, text = found(check_database(config(tmp_path, url)), "database")
    assert status == "fail" and "knows up to" in text, text
    pg_server.drop_database(url)


def test_doctor_says_when_the_server_does_not_answer(tmp_path: Path) -> None:
    url = f"postgresql://am:secret@127.0.0.1:{procs.free_port()}/applikant"
    [check] = check_database(config(tmp_path, url))
    assert check.status == "fail" and "does not answer" in check.found
    assert "secret" not in check.found and "pg_hba.conf" in check.fix
