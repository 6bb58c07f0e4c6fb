"""The rows of the two long lists of the code pages, built in Python: a
directory's entries and a commit list.

The same loops in Jinja cost about a millisecond a page (autoescape wraps
every field of every row in Markup, and each `repo.full_name` is a failed
getattr before the dict lookup); here each row is one f-string over escaped
fields, a few times faster, as `highlight.code_rows` does for file lines.
What they show is what the templates showed; the templates only place them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from markupsafe import Markup, escape

from .gitread import Commit, TreeEntry
from .render import file_size
from .timefmt import time_tag

__all__ = ["commit_rows", "tree_rows"]


def _q(text: str) -> str:
    """A query-string value, as Jinja's `urlencode` filter writes it."""
    return quote(text, safe="/")


def tree_rows(
    full_name: str, ref: str, entries: list[TreeEntry], last: Mapping[str, Commit]
) -> Markup:
    """One `<tr>` per entry: its link (directory, file or submodule), the last
    commit that changed it and when, or a file's size when that is not known."""
    full, qref = escape(full_name), escape(_q(ref))
    out = []
    for e in entries:
        name, path = escape(e.name), escape(_q(e.path))
        if e.kind == "tree":
            cell = (
                '<span class="icon" aria-hidden="true">▸</span><a class="dir" '
                f'href="/{full}/tree?ref={qref}&amp;path={path}">{name}</a>'
            )
        elif e.kind == "blob":
            link = ' <span class="muted">(link)</span>' if e.mode == "120000" else ""
            cell = (
                '<span class="icon" aria-hidden="true">·</span>'
                f'<a href="/{full}/blob?ref={qref}&amp;path={path}">{name}</a>{link}'
            )
        else:
            cell = (
                f'<span class="icon" aria-hidden="true">◦</span>{name} '
                f'<span class="muted">(submodule @ {escape(e.id[:10])})</span>'
            )
        c = last.get(e.name)
        if c is not None:
            msg = f'<a href="/{full}/commit/{escape(c.id)}" class="muted">{escape(c.subject)}</a>'
            when = str(time_tag(c.date))
        else:
            msg, when = "", file_size(e.size) if e.kind == "blob" else ""
        out.append(
            f'<tr>\n    <td class="name">{cell}</td>\n    <td class="lastmsg">{msg}</td>\n'
            f'    <td class="num">{when}</td>\n  </tr>\n'
        )
    return Markup("".join(out))


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
