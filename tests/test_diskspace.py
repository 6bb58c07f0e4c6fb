"""The disk reserve: what counts as free, the cap on small filesystems, the words."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from applikant import diskspace
from applikant.diskspace import MIB, Reserve


def test_existing_climbs_to_a_real_directory(tmp_path: Path) -> None:
    assert diskspace.existing(str(tmp_path / "a" / "b" / "c")) == str(tmp_path)
    assert diskspace.existing(str(tmp_path)) == str(tmp_path)


def test_usage_matches_statvfs(tmp_path: Path) -> None:
    free, total = diskspace.usage(str(tmp_path / "not-yet"))
    st = os.statvfs(tmp_path)
    assert total == st.f_blocks * st.f_frsize
    assert 0 <= free <= total


def test_reserve_is_capped_at_a_tenth_of_the_filesystem() -> None:
    reserve = Reserve([], 256)
    assert reserve.reserve_of(100 * 1024 * MIB) == 256 * MIB
    assert reserve.reserve_of(1000 * MIB) == 100 * MIB
    assert Reserve([], 0).reserve_of(1000 * MIB) == 0


def test_shortfall(tmp_path: Path) -> None:
    _, total = diskspace.usage(str(tmp_path))
    assert Reserve([str(tmp_path)], 0).shortfall() is None
    # ask for one byte more than the filesystem holds (what is free moves while
    # other processes write: a reserve of free + 1 could be met a moment later)
    huge = Reserve([str(tmp_path)], 1)
    huge.reserve_of = lambda total: total + 1  # type: ignore[method-assign]
    short = huge.shortfall()
    assert short is not None and short.reserve == total + 1 and 0 <= short.free <= total
    assert str(short).startswith(f"only {short.free // MIB} MiB free on {tmp_path}")


def test_paths_that_cannot_be_looked_at_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str) -> tuple[int, int]:
        raise PermissionError(13, "denied")

    monkeypatch.setattr(diskspace, "usage", broken)
    assert Reserve(["/nowhere"], 256).shortfall() is None


def test_am_keeps_no_reserve_for_a_database_on_postgresql(tmp_path: Path) -> None:
    """On PostgreSQL the database's disk is the server's: am keeps no reserve
    (said in its log) and doctor says why it does not look; the local data
    directory, repositories and spool are still checked."""
    from applikant.config import Config
    from applikant.manager.daemon import _reserve
    from applikant.ops.doctor_data import check_disk_reserve

    cfg = Config.model_validate(
        {"node": {"data_dir": str(tmp_path), "disk_reserve_mb": 1}, "am": {"db": ""}}
    )
    sqlite = _reserve(cfg.path(cfg.am.db, "am.sqlite3"), cfg)
    assert sqlite.reserve_mb == 1 and sqlite.paths == [str(tmp_path / "am.sqlite3")]
    assert not any(c.name.startswith("disk reserve (am") for c in check_disk_reserve(cfg))

    url = "postgresql://applikant@db.example.org/applikant"
    cfg = Config.model_validate(
        {"node": {"data_dir": str(tmp_path), "disk_reserve_mb": 1}, "am": {"db": url}}
    )
    assert _reserve(url, cfg).shortfall() is None and _reserve(url, cfg).reserve_mb == 0
    checks = {c.name: c for c in check_disk_reserve(cfg)}
    skipped = checks["disk reserve (am's database)"]
    assert skipped.status == "skip" and "PostgreSQL" in skipped.found
    [local] = [c for name, c in checks.items() if name.startswith("disk reserve /")]
    assert str(tmp_path) in local.found and url not in local.found
