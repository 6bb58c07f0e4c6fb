"""`git blame --porcelain`, read into chunks of lines that share a commit.

One git process per page; its output is bounded (`MAX_BYTES`) and so is its
time (gitread's timeout): a file too large to blame gets a clear refusal, not
a page that takes a minute. Results are cached by (commit, path), which never
change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import gitread
from .lru import Lru

__all__ = ["MAX_BYTES", "BlameCommit", "Chunk", "blame"]

MAX_BYTES = 16 * 1024 * 1024


@dataclass
class BlameCommit:
    id: str
    author: str = ""
    email: str = ""
    date: str = ""
    subject: str = ""
    previous: str = ""  # the commit before this one touched the line, for "blame prior"
    previous_path: str = ""

    @property
    def short(self) -> str:
        return self.id[:10]


@dataclass
class Chunk:
    """Consecutive lines (final line numbers from `start`) last changed by `commit`."""

    commit: BlameCommit
    start: int
    lines: list[str] = field(default_factory=list)


_cache: Lru[tuple[str, str], list[Chunk]] = Lru(64 * 1024 * 1024)


def _iso(epoch: str) -> str:
    try:
        moment = datetime.fromtimestamp(int(epoch), UTC)
    except (ValueError, OverflowError):
        return ""
    return moment.isoformat()


def parse(out: bytes) -> list[Chunk]:
    """Chunks from `git blame --porcelain` output."""
    commits: dict[str, BlameCommit] = {}
    chunks: list[Chunk] = []
    current: BlameCommit | None = None
    final = 0
    info: dict[str, str] = {}
    for raw in out.split(b"\n"):
        if raw.startswith(b"\t"):
            if current is None:
                continue
            if "author-time" in info:  # the first line of this commit: its details
                current.author = info.get("author", "")
                current.email = info.get("author-mail", "").strip("<>")
                current.date = _iso(info["author-time"])
                current.subject = info.get("summary", "")
                prev = info.get("previous", "")
                if prev:
                    current.previous, _, name = prev.partition(" ")
                    current.previous_path = gitread.unquote(name)
            info = {}
            text = raw[1:].decode("utf-8", "replace")
            last = chunks[-1] if chunks else None
            if (
                last is not None
                and last.commit is current
                and last.start + len(last.lines) == final
            ):
                last.lines.append(text)
            else:
                chunks.append(Chunk(current, final, [text]))
            continue
        line = raw.decode("utf-8", "replace")
        head = line.split(" ")
        if len(head) >= 3 and len(head[0]) in (40, 64) and head[1].isdigit() and head[2].isdigit():
            sha = head[0]
            current = commits.setdefault(sha, BlameCommit(sha))
            final = int(head[2])
            continue
        key, _, value = line.partition(" ")
        if key:
            info[key] = value
    return chunks


async def blame(path: str, commit: str, subpath: str) -> list[Chunk]:
    """Chunks of the file `subpath` at `commit`; GitReadError(404) for no such
    file, 413 when the file is too large to blame here."""
    subpath = gitread.check_path(subpath)
    cached = _cache.get((commit, subpath))
    if cached is not None:
        return cached
    if not subpath or await gitread.object_kind(path, commit, subpath) != "blob":
        raise gitread.GitReadError(404, f"no file {subpath!r} at this commit")
    data, complete, code = await gitread._capped(
        path, ("blame", "--porcelain", commit, "--", subpath), MAX_BYTES
    )
    if not complete:
        raise gitread.GitReadError(413, "this file is too large to blame here; view it raw")
    if code != 0:
        raise gitread.GitReadError(404, f"no file {subpath!r} at this commit")
    chunks = parse(data)
    _cache.put((commit, subpath), chunks, len(data) // 2 + 64)
    return chunks
