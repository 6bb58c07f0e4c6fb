"""A directory's rows (rows.tree_rows): kept at a commit but for their times,
and made again when what they show changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from applikant.web.gitread import Commit, TreeEntry
from applikant.web.rows import tree_rows

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
COMMIT = "c" * 40
ENTRIES = [
    TreeEntry("040000", "tree", "a" * 40, None, "src", "src"),
    TreeEntry("100644", "blob", "b" * 40, 2048, "a <b>.md", "a <b>.md"),
    TreeEntry("120000", "blob", "d" * 40, 7, "link", "link"),
    TreeEntry("160000", "commit", "e" * 40, None, "sub", "sub"),
]


def _commit(n: int, when: datetime) -> Commit:
    return Commit(f"{n:040x}", "Ann", "a@example.org", when.isoformat(), f"change <{n}>")


LAST = {
    "src": _commit(1, NOW - timedelta(hours=3)),
    "a <b>.md": _commit(2, NOW - timedelta(days=9)),
}


def test_kept_rows_are_the_rows_made_afresh() -> None:
    fresh = tree_rows("o/r", "main", ENTRIES, LAST, now=NOW)
    for _ in range(2):
        assert tree_rows("o/r", "main", ENTRIES, LAST, commit=COMMIT, now=NOW) == fresh
    assert 'href="/o/r/tree?ref=main&amp;path=src"' in fresh
    assert "a &lt;b&gt;.md</a>" in fresh and "change &lt;2&gt;" in fresh
    assert ">3 hours ago</time>" in fresh and ">1 week ago</time>" in fresh
    assert '<span class="muted">(link)</span>' in fresh and "7 B" in fresh
    assert "(submodule @ eeeeeeeeee)" in fresh
    assert fresh.isascii()  # symbols as character references: an ASCII page encodes as a copy


def test_times_are_counted_from_each_request() -> None:
    tree_rows("o/r", "main", ENTRIES, LAST, commit=COMMIT, now=NOW)
    later = tree_rows("o/r", "main", ENTRIES, LAST, commit=COMMIT, now=NOW + timedelta(days=2))
    assert ">2 days ago</time>" in later and "3 hours ago" not in later


def test_other_last_commits_or_names_make_other_rows() -> None:
    tree_rows("o/r", "main", ENTRIES, LAST, commit=COMMIT, now=NOW)
    # gitread found the last commits of more entries (a partial answer completed).
    more = {**LAST, "link": _commit(3, NOW - timedelta(minutes=5))}
    rows = tree_rows("o/r", "main", ENTRIES, more, commit=COMMIT, now=NOW)
    assert "change &lt;3&gt;" in rows and ">5 minutes ago</time>" in rows
    assert "7 B" not in rows
    other = tree_rows("o/r2", "dev/x", ENTRIES, more, commit=COMMIT, now=NOW)
    assert 'href="/o/r2/tree?ref=dev/x&amp;path=src"' in other and "/o/r/" not in other
    # The same rows again for the first name, though the cache holds more now.
    assert tree_rows("o/r", "main", ENTRIES, more, commit=COMMIT, now=NOW) == rows
