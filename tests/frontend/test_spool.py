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


def _inode(path: str) -> int:
    return os.stat(path).st_ino


def test_a_dropped_intent_file_is_rewritten_whole_for_the_next(tmp_path: Path) -> None:
    d = str(tmp_path)
    first = spool.write_intent(d, "aaaa", {"request": {"stdin": "x" * 500}})
    inode = _inode(first)
    spool.drop_intent(d, "aaaa")
    spool.drop_intent(d, "aaaa")  # idempotent
    assert spool.intents(d) == [] and not os.path.exists(first)
    second = spool.write_intent(d, "bbbb", {"request": {"n": 2}})  # shorter than the first
    assert _inode(second) == inode  # the same file, no new inode
    assert spool.read(second) == {"request": {"n": 2}}
    assert stat.S_IMODE(os.stat(second).st_mode) == 0o600
    assert spool.intents(d) == [second]
    directory = os.path.dirname(second)
    assert sorted(os.listdir(directory)) == ["bbbb.json"]  # no slot, no temp file left


def test_free_slots_are_bounded_and_never_listed(tmp_path: Path) -> None:
    d = str(tmp_path)
    ids = [f"{n:04x}" for n in range(spool.FREE_SLOTS + 3)]
    for event_id in ids:
        spool.write_intent(d, event_id, {"n": event_id})
    for event_id in ids:
        spool.drop_intent(d, event_id)
    directory = os.path.join(d, spool.INTENTS_DIR)
    assert len(os.listdir(directory)) == spool.FREE_SLOTS  # the rest were removed
    assert spool.intents(d) == [] and spool.summary(d)["intents"] == 0
    again = [spool.write_intent(d, f"{n:04x}", {"again": n}) for n in range(100, 106)]
    assert spool.intents(d) == again
    assert [spool.read(p) for p in again] == [{"again": n} for n in range(100, 106)]
    assert sorted(os.listdir(directory)) == sorted(os.path.basename(p) for p in again)


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo", "linked"])
def test_a_slot_that_is_not_a_plain_file_of_ours_is_never_written(
    tmp_path: Path, kind: str
) -> None:
    d = str(tmp_path)
    directory = tmp_path / spool.INTENTS_DIR
    directory.mkdir()
    slot = directory / ".free-0"
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    if kind == "symlink":
        slot.symlink_to(target)
    elif kind == "directory":
        slot.mkdir()
    elif kind == "fifo":
        os.mkfifo(slot)
    else:
        os.link(target, slot)  # a second name of another file
    path = spool.write_intent(d, "cafe", {"n": 1})
    assert spool.read(path) == {"n": 1}
    assert target.read_text() == "keep\n"
    assert not slot.exists() and spool.intents(d) == [path]
