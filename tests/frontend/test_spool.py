"""The post-receive spool: whole files only, oldest first, parked failures."""

import os
import stat
from pathlib import Path

import pytest

from applikant.frontend import spool


def test_write_read_order_remove(tmp_path: Path) -> None:
    d = str(tmp_path / "spool")
    first = spool.write(d, "aaaa-1", {"request": {"n": 1}})
    second = spool.write(d, "bbbb-2", {"request": {"n": 2}})
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    assert spool.pending(d) == [first, second]
    assert spool.read(second) == {"request": {"n": 2}}
    spool.remove(first)
    spool.remove(first)  # idempotent
    assert spool.pending(d) == [second]
    assert not [n for n in os.listdir(d) if n.startswith(".")]  # no temp files left


def test_pending_ignores_temp_and_foreign_files(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    d.mkdir()
    (d / ".tmp-123.json-9").write_text("{")
    (d / "README").write_text("x")
    assert spool.pending(str(d)) == []
    assert spool.pending(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "A" * 3, "x" * 65, 7])
def test_bad_ids_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError):
        spool.write(str(tmp_path), bad, {})  # type: ignore[arg-type]
    assert spool.pending(str(tmp_path)) == []


def test_unencodable_record_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        spool.write(str(tmp_path), "abc", {"x": object()})
    assert os.listdir(tmp_path) == []


def test_park_keeps_the_reason(tmp_path: Path) -> None:
    d = str(tmp_path)
    path = spool.write(d, "cafe", {"request": {}})
    target = spool.park(path, "not_found: no repository a/b")
    assert spool.pending(d) == []
    assert os.path.dirname(target) == os.path.join(d, spool.FAILED_DIR)
    assert Path(target + ".reason").read_text() == "not_found: no repository a/b\n"


def test_read_refuses_non_objects(tmp_path: Path) -> None:
    p = tmp_path / "1-ab.json"
    p.write_text("[1, 2]")
    with pytest.raises(ValueError):
        spool.read(str(p))
