"""Diffs for the commit and compare pages: one git process, bounded, parsed.

`commit_diff(path, commit)` runs one `git show` (the commit's details, then
`--raw`, `--numstat` and the patch against its first parent); `range_diff(path,
base, head)` runs `git diff base...head` the same way. The raw and numstat
sections come first and are small, so the list of changed files with their
counts is always whole; the patch is read up to `Limits.bytes` and the process
is killed there. Then the patch is cut per file (`Limits.file_lines`) and in
total (`Limits.total_lines`, `Limits.files`), every cut noted on the file or on
the diff: a 10,000-line change costs what its first lines cost, and says so.

Lines are highlighted per file (the old and new sides each as one block, so
multi-line strings keep their colour) and the result is cached by the
immutable ids it was computed from.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from markupsafe import Markup

from . import gitread, highlight
from .lru import Lru

__all__ = [
    "Commit",
    "Diff",
    "FileDiff",
    "Hunk",
    "Limits",
    "Line",
    "commit_diff",
    "parse",
    "range_diff",
    "split_rows",
]


@dataclass(frozen=True)
class Limits:
    bytes: int = 4 * 1024 * 1024
    files: int = 300  # files whose patch is shown
    file_lines: int = 2000
    total_lines: int = 10_000
    line_chars: int = 3000
    listed: int = 3000  # files listed at all


LIMITS = Limits()
_HUNK = re.compile(rb"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")
HEADER_END = b"\x00\x00\n"
COMMIT_FORMAT = "--format=%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B%x00%x00"
DIFF_OPTIONS = (
    "-M",
    "--raw",
    "--numstat",
    "-p",
    "--no-abbrev",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--submodule=short",
)


@dataclass
class Line:
    kind: str  # ctx, add, del, or note ("\ No newline at end of file")
    old: int | None
    new: int | None
    text: str
    html: Markup = field(default_factory=Markup)


@dataclass
class Hunk:
    header: str
    lines: list[Line] = field(default_factory=list)


@dataclass
class FileDiff:
    status: str  # A added, D deleted, M modified, R renamed, C copied, T type changed
    old_path: str
    new_path: str
    old_mode: str
    new_mode: str
    old_id: str
    new_id: str
    similarity: int | None = None
    added: int | None = None  # None: binary
    deleted: int | None = None
    hunks: list[Hunk] = field(default_factory=list)
    binary: bool = False
    cut: str = ""  # why fewer lines are shown than changed

    @property
    def path(self) -> str:
        return self.new_path if self.status != "D" else self.old_path

    @property
    def anchor(self) -> str:
        return "diff-" + hashlib.sha1(self.path.encode()).hexdigest()[:12]

    @property
    def mode_changed(self) -> bool:
        return self.status not in ("A", "D") and self.old_mode != self.new_mode

    @property
    def shown_lines(self) -> int:
        return sum(len(h.lines) for h in self.hunks)


@dataclass
class Diff:
    files: list[FileDiff]
    cut: str = ""

    @property
    def added(self) -> int:
        return sum(f.added or 0 for f in self.files)

    @property
    def deleted(self) -> int:
        return sum(f.deleted or 0 for f in self.files)


@dataclass
class Commit:
    """A commit's details as the commit page shows them."""

    id: str
    parents: list[str]
    author: str
    author_email: str
    author_date: str
    committer: str
    committer_email: str
    committer_date: str
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def body(self) -> str:
        return self.message.partition("\n")[2].strip("\n")

    @property
    def short(self) -> str:
        return self.id[:10]


def _raw_entry(line: str) -> FileDiff | None:
    meta, _, paths = line.partition("\t")
    fields = meta[1:].split(" ")
    if len(fields) < 5:
        return None
    old_mode, new_mode, old_id, new_id, status = fields[:5]
    names = [gitread.unquote(p) for p in paths.split("\t")]
    old_path = names[0]
    new_path = names[1] if len(names) > 1 else names[0]
    similarity = int(status[1:]) if status[1:].isdigit() else None
    return FileDiff(status[0], old_path, new_path, old_mode, new_mode, old_id, new_id, similarity)


def parse(data: bytes, complete: bool, limits: Limits = LIMITS) -> Diff:
    """A Diff from `--raw --numstat -p` output (`complete`: git said all of it)."""
    text_end = data.find(b"\ndiff --git ")
    head, patch = (data, b"") if text_end < 0 else (data[:text_end], data[text_end + 1 :])
    files: list[FileDiff] = []
    counts: list[tuple[int | None, int | None]] = []
    for raw in head.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            entry = _raw_entry(line)
            if entry is not None:
                files.append(entry)
        elif line and line[0] in "-0123456789" and "\t" in line:
            added, deleted = line.split("\t", 2)[:2]
            counts.append(
                (int(added), int(deleted))
                if added.isdigit() and deleted.isdigit()
                else (None, None)
            )
    for f, (plus, minus) in zip(files, counts, strict=False):
        f.added, f.deleted = plus, minus
        f.binary = plus is None
    diff = Diff(files[: limits.listed])
    if len(files) > limits.listed:
        diff.cut = f"Only the first {limits.listed} of {len(files)} changed files are listed."
    blocks = patch.split(b"\ndiff --git ") if patch else []
    total = 0
    for index, block in enumerate(blocks):
        if index >= len(diff.files):
            break
        f = diff.files[index]
        last_block = index == len(blocks) - 1
        if index >= limits.files or total >= limits.total_lines:
            f.cut = "This diff is not shown: the change is too large to show at once."
            continue
        total += _read_hunks(f, block, min(limits.file_lines, limits.total_lines - total), limits)
        if last_block and not complete and not f.cut:
            f.cut = "This diff is cut: the change is too large to show whole."
    for f in diff.files[len(blocks) :]:
        if not f.cut and not (f.binary or (f.added == 0 and f.deleted == 0)):
            f.cut = "This diff is not shown: the change is too large to show at once."
    return diff


def _read_hunks(f: FileDiff, block: bytes, budget: int, limits: Limits) -> int:
    """Parse one file's patch into `f.hunks`, at most `budget` lines; the count read."""
    shown = 0
    hunk: Hunk | None = None
    old = new = 0
    for raw in block.split(b"\n"):
        if not raw:
            continue  # an empty context line is " ": nothing in a patch is empty
        if raw.startswith(b"@@"):
            m = _HUNK.match(raw)
            if m is None:
                continue
            if shown >= budget:
                break
            old, new = int(m[1]), int(m[2])
            hunk = Hunk(raw.decode("utf-8", "replace")[:500])
            f.hunks.append(hunk)
            continue
        if hunk is None:
            if raw.startswith(b"Binary files"):
                f.binary = True
            continue
        if shown >= budget:
            changed = (f.added or 0) + (f.deleted or 0)
            f.cut = (
                f"This diff is cut: {changed:,} lines changed, the first {shown:,} lines are shown."
            )
            break
        kind = {43: "add", 45: "del", 32: "ctx", 92: "note"}.get(raw[0])
        if kind is None:
            continue
        body = raw[1:].decode("utf-8", "replace")
        if len(body) > limits.line_chars:
            body = body[: limits.line_chars] + " …"
        if kind == "add":
            hunk.lines.append(Line(kind, None, new, body))
            new += 1
        elif kind == "del":
            hunk.lines.append(Line(kind, old, None, body))
            old += 1
        elif kind == "ctx":
            hunk.lines.append(Line(kind, old, new, body))
            old += 1
            new += 1
        else:
            hunk.lines.append(Line(kind, None, None, body))
        shown += 1
    if f.hunks and not f.hunks[-1].lines:
        f.hunks.pop()
    return shown


def highlight_file(f: FileDiff) -> None:
    """Fill `Line.html`: the old side (context and deletions) and the new side
    (context and additions) are highlighted as one block each."""
    sides: dict[str, list[Line]] = {"old": [], "new": []}
    for hunk in f.hunks:
        for line in hunk.lines:
            if line.kind in ("ctx", "del"):
                sides["old"].append(line)
            if line.kind in ("ctx", "add"):
                sides["new"].append(line)
            if line.kind == "note":
                line.html = Markup.escape(line.text)
    for side, name in (("old", f.old_path), ("new", f.new_path)):
        items = sides[side]
        if not items:
            continue
        rendered = highlight.lines("\n".join(i.text for i in items), name)
        for item, html in zip(items, rendered, strict=False):
            if side == "new" or item.kind == "del":
                item.html = html


def split_rows(hunk: Hunk) -> list[tuple[Line | None, Line | None]]:
    """The hunk side by side: each run of deletions beside the additions after it."""
    rows: list[tuple[Line | None, Line | None]] = []
    dels: list[Line] = []
    adds: list[Line] = []

    def flush() -> None:
        for i in range(max(len(dels), len(adds))):
            rows.append((dels[i] if i < len(dels) else None, adds[i] if i < len(adds) else None))
        dels.clear()
        adds.clear()

    for line in hunk.lines:
        if line.kind == "del":
            if adds:
                flush()
            dels.append(line)
        elif line.kind == "add":
            adds.append(line)
        else:
            flush()
            rows.append((line, line))
    flush()
    return rows


def _parse_commit(header: bytes) -> Commit:
    parts = header.decode("utf-8", "replace").split("\x00")
    parts += [""] * (9 - len(parts))
    return Commit(
        id=parts[0],
        parents=parts[1].split(),
        author=parts[2],
        author_email=parts[3],
        author_date=parts[4],
        committer=parts[5],
        committer_email=parts[6],
        committer_date=parts[7],
        message=parts[8].rstrip("\n"),
    )


_cache: Lru[tuple[str, ...], tuple[Commit | None, Diff]] = Lru(96 * 1024 * 1024)


def _finish(data: bytes, complete: bool) -> Diff:
    result = parse(data, complete)
    for f in result.files:
        if f.hunks:
            highlight_file(f)
    return result


async def commit_diff(path: str, commit: str) -> tuple[Commit, Diff]:
    """The commit `commit` (a full id) and its diff against its first parent."""
    found = _cache.get(("commit", path, commit))
    if found is not None and found[0] is not None:
        return found[0], found[1]
    data, complete, code = await gitread._capped(
        path,
        ("show", "--diff-merges=first-parent", COMMIT_FORMAT, *DIFF_OPTIONS, commit, "--"),
        LIMITS.bytes,
    )
    if complete and code != 0:
        raise gitread.GitReadError(404, f"no commit {commit[:40]!r} in this repository")
    end = data.find(HEADER_END)
    if end < 0:
        raise gitread.GitReadError(413, "this commit's message is too large to show")
    details = _parse_commit(data[:end])
    result = _finish(data[end + len(HEADER_END) :], complete)
    _cache.put(("commit", path, commit), (details, result), len(data) * 3 + 1024)
    return details, result


async def range_diff(path: str, base: str, head: str) -> Diff:
    """What `head` changed since it forked from `base` (`git diff base...head`; full ids)."""
    found = _cache.get(("range", path, base, head))
    if found is not None:
        return found[1]
    data, complete, code = await gitread._capped(
        path, ("diff", *DIFF_OPTIONS, f"{base}...{head}", "--"), LIMITS.bytes
    )
    if complete and code != 0:
        raise gitread.GitReadError(404, "these two commits cannot be compared")
    result = _finish(data, complete)
    _cache.put(("range", path, base, head), (None, result), len(data) * 3 + 1024)
    return result
