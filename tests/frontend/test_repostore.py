"""The shared store on disk: the cluster's marker, probes, the intent journal."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from applikant.frontend import repostore
from applikant.frontend.repostore import Journal, Marker, MarkerError


def test_the_cluster_id_is_the_same_for_one_cookie_and_tells_cookies_apart() -> None:
    a = repostore.cluster_id(b"cookie-one-0123456789")
    assert a == repostore.cluster_id(b"cookie-one-0123456789")
    assert a != repostore.cluster_id(b"cookie-two-0123456789")
    assert len(a) == 32 and all(c in "0123456789abcdef" for c in a)
    assert b"cookie-one" not in a.encode()


def test_a_marker_is_written_once_and_read_back(tmp_path: Path) -> None:
    assert repostore.read_marker(str(tmp_path)) is None
    first, wrote = repostore.write_marker(str(tmp_path), "ab" * 16, "af@h1")
    assert wrote and first.cluster == "ab" * 16 and first.by == "af@h1"
    assert repostore.read_marker(str(tmp_path)) == first
    again, wrote = repostore.write_marker(str(tmp_path), "cd" * 16, "af@h2")
    assert not wrote and again == first  # never replaced
    assert [p.name for p in tmp_path.iterdir()] == [repostore.MARKER]  # no temp file left


def test_of_many_writers_at_once_exactly_one_marks_the_root(tmp_path: Path) -> None:
    results: list[tuple[Marker, bool]] = []
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait()
        results.append(repostore.write_marker(str(tmp_path), f"{i:02d}" * 16, f"af{i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wrote for _, wrote in results) == 1
    assert len({m for m, _ in results}) == 1


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"cluster": "short", "store": "0123456789abcdef"}', b"\xff\xfe"],
)
def test_a_file_that_is_not_a_marker_is_an_error_never_a_guess(
    tmp_path: Path, content: bytes
) -> None:
    (tmp_path / repostore.MARKER).write_bytes(content)
    with pytest.raises(MarkerError, match="not a marker"):
        repostore.read_marker(str(tmp_path))


def test_rewriting_a_marker_keeps_the_store_id(tmp_path: Path) -> None:
    first, _ = repostore.write_marker(str(tmp_path), "ab" * 16, "init")
    new = repostore.rewrite_marker(str(tmp_path), "cd" * 16, "operator")
    assert (new.cluster, new.store) == ("cd" * 16, first.store)
    assert repostore.read_marker(str(tmp_path)) == new


def test_hidden_files_are_not_entries(tmp_path: Path) -> None:
    assert not repostore.has_entries(str(tmp_path / "missing"))
    repostore.write_marker(str(tmp_path), "ab" * 16, "x")
    (tmp_path / ".applikant-hook").write_text("#!/bin/sh\n")
    assert not repostore.has_entries(str(tmp_path))
    (tmp_path / "alice").mkdir()
    assert repostore.has_entries(str(tmp_path))


def test_a_probe_is_read_back_by_name_and_removed(tmp_path: Path) -> None:
    name, token = repostore.write_probe(str(tmp_path))
    assert repostore.read_probe(str(tmp_path), name) == token
    assert repostore.read_probe(str(tmp_path), "../../etc/passwd") is None
    assert repostore.read_probe(str(tmp_path / "elsewhere"), name) is None
    repostore.remove_probe(str(tmp_path), name)
    repostore.remove_probe(str(tmp_path), name)  # idempotent
    assert repostore.read_probe(str(tmp_path), name) is None


def test_the_journal_keeps_intents_in_order_until_done(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    assert journal.pending() == ([], [])
    paths = [journal.begin({"op": "create", "repo": f"a/r{i}"}) for i in range(3)]
    intents, problems = journal.pending()
    assert [p for p, _ in intents] == paths and not problems
    assert [i["repo"] for _, i in intents] == ["a/r0", "a/r1", "a/r2"]
    assert oct(os.stat(paths[0]).st_mode & 0o777) == "0o600"
    journal.done(paths[1])
    journal.done(paths[1])  # idempotent
    assert not journal.still_open(paths[1]) and journal.still_open(paths[0])
    assert [i["repo"] for _, i in journal.pending()[0]] == ["a/r0", "a/r2"]


def test_an_unreadable_intent_is_set_aside_and_reported(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    good = journal.begin({"op": "delete", "repo": "a/b"})
    bad = Path(journal.dir) / "00000000000000000001-deadbeef.json"
    bad.write_text("{half")
    (Path(journal.dir) / "00000000000000000002-feedbeef.json").write_text(json.dumps([1]))
    intents, problems = journal.pending()
    assert [p for p, _ in intents] == [good]
    assert len(problems) == 2 and bad.name in problems[0]
    assert sorted(p.name for p in (Path(journal.dir) / "failed").iterdir()) == [
        "00000000000000000001-deadbeef.json",
        "00000000000000000002-feedbeef.json",
    ]
