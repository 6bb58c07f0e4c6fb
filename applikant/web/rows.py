"""The rows of the two long lists of the code pages, built in Python: a
directory's entries and a commit list.

The same loops in Jinja cost about a millisecond a page (autoescape wraps
every field of every row in Markup, and each `repo.full_name` is a failed
getattr before the dict lookup); here each row is one f-string over escaped
fields, a few times faster, as `highlight.code_rows` does for file lines.
What they show is what the templates showed; the templates only place them.
A directory's rows at a commit are kept but for their times (`tree_rows`):
a warm tree page only puts the relative times in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from .gitread import Commit, TreeEntry
from .lru import Lru
from .render import file_size
from .timefmt import time_html, time_tag

__all__ = ["commit_rows", "tree_rows"]


def _q(text: str) -> str:
    """A query-string value, as Jinja's `urlencode` filter writes it."""
    return quote(text, safe="/")


@dataclass(frozen=True)
class _TreeParts:
    """A directory's rows cut where their times go: `static[0]`, time 0,
    `static[1]`, ... (`dates[i]` None: no time there), for the entries and
    last commits they were made of."""

    entries: list[TreeEntry]
    last: Mapping[str, Commit]
    static: list[str]
    dates: list[str]


# The rows of a directory at a commit, for a repository name and ref (the
# links): all of it fixed by the commit id but the relative times, which are
# put in on each request. Valid only for the very entries and last commits
# they were made of (gitread's caches hand out the same objects while they
# keep them; a partial `last` is a new object each time).
_tree_parts: Lru[tuple[str, str, str, str], _TreeParts] = Lru(8 * 1024 * 1024)  # about bytes


def tree_rows(
    full_name: str,
    ref: str,
    entries: list[TreeEntry],
    last: Mapping[str, Commit],
    *,
    commit: str = "",
    subpath: str = "",
    now: datetime | None = None,
) -> Markup:
    """One `<tr>` per entry: its link (directory, file or submodule), the last
    commit that changed it and when, or a file's size when that is not known.
    With `commit` (the id the entries are of), what does not change is kept."""
    key = (full_name, ref, commit, subpath)
    parts = _tree_parts.get(key) if commit else None
    if parts is None or parts.entries is not entries or parts.last is not last:
        parts = _tree_parts_of(full_name, ref, entries, last)
        if commit:
            _tree_parts.put(key, parts, 200 + sum(len(p) for p in parts.static))
    now = now or datetime.now(UTC)
    out = [parts.static[0]]
    for date, static in zip(parts.dates, parts.static[1:], strict=True):
        out.append(time_html(date, now=now))
        out.append(static)
    return Markup("".join(out))


def _tree_parts_of(
    full_name: str, ref: str, entries: list[TreeEntry], last: Mapping[str, Commit]
) -> _TreeParts:
    full, qref = escape(full_name), escape(_q(ref))
    static: list[str] = []
    dates: list[str] = []
    out = []
    for e in entries:
        name, path = escape(e.name), escape(_q(e.path))
        if e.kind == "tree":
            cell = (
                '<span class="icon" aria-hidden="true">&#9656;</span><a class="dir" '
                f'href="/{full}/tree?ref={qref}&amp;path={path}">{name}</a>'
            )
        elif e.kind == "blob":
            link = ' <span class="muted">(link)</span>' if e.mode == "120000" else ""
            cell = (
                '<span class="icon" aria-hidden="true">&middot;</span>'
                f'<a href="/{full}/blob?ref={qref}&amp;path={path}">{name}</a>{link}'
            )
        else:
            cell = (
                f'<span class="icon" aria-hidden="true">&#9702;</span>{name} '
                f'<span class="muted">(submodule @ {escape(e.id[:10])})</span>'
            )
        c = last.get(e.name)
        msg = (
            f'<a href="/{full}/commit/{escape(c.id)}" class="muted">{escape(c.subject)}</a>'
            if c is not None
            else ""
        )
        out.append(
            f'<tr>\n    <td class="name">{cell}</td>\n    <td class="lastmsg">{msg}</td>\n'
            '    <td class="num">'
        )
        if c is not None:
            static.append("".join(out))
            dates.append(c.date)
            out = []
        elif e.kind == "blob":
            out.append(file_size(e.size))
        out.append("</td>\n  </tr>\n")
    static.append("".join(out))
    return _TreeParts(entries, last, static, dates)


def commit_rows(
    full_name: str,
    commits: list[Commit],
    builds: Mapping[str, dict[str, Any]],
    subpath: str,
    summary: Callable[[dict[str, Any]], str],
) -> Markup:
    """One `<tr>` per commit: id and message (links to it), author, when, its
    newest build (`summary` words its state) and a link to its files."""
    full = escape(full_name)
    at = f"&amp;path={escape(_q(subpath.rpartition('/')[0]))}" if subpath else ""
    out = []
    for c in commits:
        cid = escape(c.id)
        b = builds.get(c.id)
        build = ""
        if b:
            number, status = escape(b.get("number")), escape(b.get("status"))
            build = (
                f'<a href="/{full}/builds/{number}" class="badge status-{status}" '
                f'title="{escape(summary(b))}">#{number} {status}</a>'
            )
        out.append(
            f'<tr><td><a href="/{full}/commit/{cid}" class="sha">{escape(c.short)}</a></td>\n'
            f'    <td class="msg"><a href="/{full}/commit/{cid}" class="plainlink">'
            f"{escape(c.subject)}</a></td>\n"
            f'    <td>{escape(c.author)}</td><td class="nowrap">{time_tag(c.date)}</td>\n'
            f'    <td class="nowrap">{build}</td>\n'
            f'    <td class="nowrap"><a href="/{full}/tree?ref={cid}{at}" '
            'title="Browse the files at this commit" class="muted">Files</a></td></tr>\n'
        )
    return Markup("".join(out))
