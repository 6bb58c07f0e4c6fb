"""Reading bare repositories for the web pages, with git plumbing only.

Every function runs one git command (`for-each-ref`, `log`, `ls-tree`,
`cat-file`) as a trio subprocess on a repository path that the caller got from
`repo_path` (a name am knows, joined under the repo root and checked to stay
there). Refs and paths typed by visitors pass `check_ref` and `check_path`
first: no option-looking refs, no `..`, no absolute paths, no NUL.

Errors: `GitReadError(status, message)`; 404 for an unknown ref or path, 400
for a refused one. Output sizes are bounded (a file view shows at most
`BLOB_LIMIT` bytes), so no page holds a whole large blob in memory.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import trio

from ..logs import EventLog
from . import catfile
from .lru import Lru
from .together import gather

events = EventLog("aw")

__all__ = [
    "Blob",
    "Commit",
    "Directory",
    "GitReadError",
    "Ref",
    "TreeEntry",
    "check_path",
    "check_ref",
    "directory",
    "find_readme",
    "git_env",
    "log",
    "ls_tree",
    "read_blob",
    "refs",
    "repo_path",
    "resolve",
]

BLOB_LIMIT = 512 * 1024
#: af's file of a repository's am id (frontend/repoops.py ID_FILE; a test checks).
ID_FILE = "applikant-id"
PATH_MAX = 4096
_REF_OK = re.compile(r"[A-Za-z0-9._/@+-]{1,255}\Z")
_README = re.compile(r"readme(\.(md|markdown|txt|rst))?\Z", re.IGNORECASE)


class GitReadError(Exception):
    """A read could not be answered; `status` is the HTTP status it maps to."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BadRepoPath(GitReadError, ValueError):
    """A repository's name or directory aw must not read (404 on a page)."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)


@dataclass(frozen=True)
class Ref:
    name: str  # short name: main, v1.0
    kind: str  # branch or tag
    target: str
    date: str
    subject: str
    author: str = ""


@dataclass(frozen=True)
class Commit:
    id: str
    author: str
    email: str
    date: str
    subject: str

    @property
    def short(self) -> str:
        return self.id[:10]


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    kind: str  # blob, tree or commit (a submodule)
    id: str
    size: int | None
    name: str
    path: str


@dataclass(frozen=True)
class Blob:
    path: str
    size: int
    data: bytes  # at most BLOB_LIMIT bytes
    truncated: bool
    id: str = ""

    @property
    def binary(self) -> bool:
        return b"\x00" in self.data[:8000]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")


def git_env() -> dict[str, str]:
    """The environment for git commands: no user or system config, no prompts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", HOME=env.get("HOME", "/"), LC_ALL="C"
    )
    return env


def repo_path(root: str, full_name: str) -> str:
    """`<root>/<owner>/<name>.git` for a name am returned; BadRepoPath (a
    ValueError, 404) unless that is the repository's own directory: an owner
    directory or repository that is a symlink (`bob/alias.git ->
    ../alice/secret.git`) is refused, as af does."""
    owner, _, name = full_name.partition("/")
    if not owner or not name or "/" in name or ".." in full_name or "\x00" in full_name:
        raise BadRepoPath(f"not a repository name: {full_name!r}")
    base = _real_root(root)
    owner_dir = os.path.join(base, owner)
    path = os.path.join(owner_dir, name + ".git")
    # Under a root without symlinks (its real path), only these two can be one.
    if os.path.normpath(path) != path or os.path.islink(owner_dir) or os.path.islink(path):
        events.warning("repo_not_own_directory", repo=full_name, real=os.path.realpath(path))
        raise BadRepoPath(f"repository {full_name} is not available on this host")
    return path


@functools.lru_cache(maxsize=16)
def _real_root(root: str) -> str:
    """The repositories' root without symlinks: found once, not for each
    request (a walk of every directory above it)."""
    return os.path.realpath(root)


def check_ref(ref: str) -> str:
    """A ref typed by a visitor: branch, tag or object id; GitReadError(400) if refused."""
    if not _REF_OK.match(ref) or ref.startswith(("-", "/")) or ".." in ref or "@{" in ref:
        raise GitReadError(400, f"{ref[:80]!r} is not a branch, tag or commit name")
    return ref


def check_path(path: str) -> str:
    """A path inside a tree, normalised ('' is the root); GitReadError(400) if refused."""
    if len(path) > PATH_MAX or "\x00" in path or "\\" in path:
        raise GitReadError(400, "that file path is not allowed")
    parts = [p for p in path.split("/") if p != ""]
    if path.startswith("/") or any(p in (".", "..") for p in parts):
        raise GitReadError(400, "file paths must stay inside the repository ('..' is refused)")
    return "/".join(parts)


TIMEOUT = 20.0


def _argv(path: str, args: tuple[str, ...]) -> list[str]:
    if not os.path.isdir(path):
        raise GitReadError(404, "the repository has no data on this server yet")
    return ["git", f"--git-dir={path}", "-c", "core.quotepath=false", *args]


async def _git(
    path: str,
    *args: str,
    limit: int = 8 * 1024 * 1024,
    ok_codes: tuple[int, ...] = (0,),
    timeout: float = TIMEOUT,
) -> bytes:
    """Run `git --git-dir=path args`; stdout (at most `limit` bytes).

    GitReadError(404) when git fails, 503 when it runs longer than `timeout`.
    """
    data, _complete, code = await _capped(path, args, limit, timeout)
    if code not in ok_codes:
        raise GitReadError(404, "not found in this repository")
    return data


async def _capped(
    path: str, args: tuple[str, ...], limit: int, timeout: float = TIMEOUT, stdin: bytes = b""
) -> tuple[bytes, bool, int | None]:
    """(stdout up to `limit` bytes, whether that was all of it, exit code).

    A process with more to say than `limit` is killed: the caller shows what
    fits and says that the rest was cut (exit code None then).
    """
    proc = await trio.lowlevel.open_process(
        _argv(path, args), stdout=-1, stderr=-3, stdin=-1 if stdin else -3, env=git_env()
    )
    if stdin:
        assert proc.stdin is not None
        await proc.stdin.send_all(stdin)  # small: a line or two, within the pipe's buffer
        await proc.stdin.aclose()
    chunks: list[bytes] = []
    got = 0
    complete = False
    try:
        assert proc.stdout is not None
        with trio.move_on_after(timeout) as scope:
            while got <= limit:
                chunk = await proc.stdout.receive_some(65536)
                if not chunk:
                    complete = True
                    break
                chunks.append(bytes(chunk))
                got += len(chunk)
        if scope.cancelled_caught:
            raise GitReadError(
                503, f"git took longer than {timeout:g} s to answer this; try a smaller request"
            )
    finally:
        if not complete and proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
    data = b"".join(chunks)
    if not complete:
        return data[:limit], False, None
    return data, True, proc.returncode


async def stream(path: str, *args: str, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """The stdout of a git command, chunk by chunk (archives, raw files): never
    held whole in memory; the process is killed when the reader stops early."""
    proc = await trio.lowlevel.open_process(
        _argv(path, args), stdout=-1, stderr=-3, stdin=-3, env=git_env()
    )
    try:
        assert proc.stdout is not None
        while True:
            data = await proc.stdout.receive_some(chunk)
            if not data:
                break
            yield bytes(data)
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()


_refs_cache: dict[str, tuple[tuple[object, ...], list[Ref]]] = {}
_REFS_CACHE_MAX = 512


def _refs_signature(path: str) -> tuple[object, ...]:
    """What changes whenever a branch or tag does: packed-refs, and every directory
    under refs/heads and refs/tags (git writes a ref by renaming a file into one)."""
    stamps: list[object] = []
    try:
        st = os.stat(os.path.join(path, "packed-refs"))
        stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    except FileNotFoundError:
        stamps.append(None)
    for top in ("refs/heads", "refs/tags"):
        for dirpath, _dirs, _files in os.walk(os.path.join(path, top)):
            st = os.stat(dirpath)
            stamps.append((dirpath, st.st_mtime_ns, st.st_ino))
    return tuple(stamps)


async def refs(path: str) -> list[Ref]:
    """Branches and tags, newest first; a tag's target is the commit it names.

    Kept until a ref changes on disk (`_refs_signature`), so most pages list the
    refs without running git."""
    signature = _refs_signature(path)
    cached = _refs_cache.get(path)
    if cached is not None and cached[0] == signature:
        return cached[1]
    fmt = (
        "%(refname)%00%(objectname)%00%(*objectname)%00%(creatordate:iso-strict)%00"
        "%(contents:subject)%00%(authorname)%(*authorname)"
    )
    out = await _git(
        path, "for-each-ref", "--sort=-creatordate", f"--format={fmt}", "refs/heads", "refs/tags"
    )
    result = []
    for line in out.decode("utf-8", "replace").splitlines():
        name, target, peeled, date, subject, author = ([*line.split("\x00"), "", "", "", ""])[:6]
        kind = "branch" if name.startswith("refs/heads/") else "tag"
        short = name.removeprefix("refs/heads/").removeprefix("refs/tags/")
        result.append(Ref(short, kind, peeled or target, date, subject, author))
    if len(_refs_cache) >= _REFS_CACHE_MAX:
        _refs_cache.pop(next(iter(_refs_cache)))
    _refs_cache[path] = (signature, result)
    return result


async def resolve(path: str, ref: str) -> str:
    """The commit id that `ref` names; GitReadError(404) if none. A full commit id
    found once is remembered (objects do not change)."""
    check_ref(ref)
    key = ("resolve", _incarnation(path), ref)
    if immutable(ref) and _memo.get(key):
        return ref
    out = await _git(
        path,
        "rev-parse",
        "--verify",
        "--quiet",
        "--end-of-options",
        f"{ref}^{{commit}}",
        ok_codes=(0, 1),
    )
    commit = out.decode().strip()
    if not commit:
        raise GitReadError(404, f"no branch, tag or commit {ref!r} in this repository")
    if immutable(ref) and commit == ref:
        _memo.put(key, True, 100)
    return commit


_LOG_FORMAT = "--format=%H%x00%an%x00%ae%x00%aI%x00%s"


_FULL_ID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
_memo: Lru[tuple[object, ...], object] = Lru(64 * 1024 * 1024)  # about bytes


def _incarnation(path: str) -> tuple[str, int, int]:
    """The repository at `path` as the caches key it: a repository deleted and
    made again under the same name shares nothing cached with the old one (which
    may hold commits the new one has not, and other readers). Its am id file is
    written once, when the repository is made: its inode and time tell one
    incarnation from the next (the directory's own would change with pushes)."""
    try:
        st = os.stat(os.path.join(path, ID_FILE))
    except OSError:
        try:
            st = os.stat(path)  # a repository not made by af (tests, imports)
        except OSError:
            return (path, 0, 0)
    return (path, st.st_ino, st.st_mtime_ns)


def immutable(commit: str) -> bool:
    """Whether `commit` is a full object id: what is read at it never changes."""
    return _FULL_ID.match(commit) is not None


def _commits(out: bytes) -> list[Commit]:
    commits = []
    for line in out.decode("utf-8", "replace").splitlines():
        parts = line.split("\x00")
        if len(parts) == 5:
            commits.append(Commit(*parts))
    return commits


async def log(
    path: str, commit: str, limit: int = 20, subpath: str = "", skip: int = 0
) -> list[Commit]:
    """`limit` commits reachable from `commit` after the first `skip` (touching
    `subpath` if given), newest first: one page of a history. Cached for a full id."""
    key = ("log", _incarnation(path), commit, int(limit), subpath, int(skip))
    found = _memo.get(key) if immutable(commit) else None
    if found is not None:
        return found  # type: ignore[return-value]
    args = ["log", f"-n{int(limit)}", f"--skip={int(skip)}", _LOG_FORMAT, commit, "--"]
    if subpath:
        args.append(check_path(subpath))
    result = _commits(await _git(path, *args))
    if immutable(commit):
        _memo.put(key, result, 200 + 250 * len(result))
    return result


async def log_range(path: str, base: str, head: str, limit: int = 250) -> list[Commit]:
    """Commits reachable from `head` but not from `base` (`git log base..head`; full ids)."""
    key = ("range", _incarnation(path), base, head, int(limit))
    found = _memo.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    result = _commits(
        await _git(path, "log", f"-n{int(limit)}", _LOG_FORMAT, head, f"^{base}", "--")
    )
    if immutable(base) and immutable(head):
        _memo.put(key, result, 200 + 250 * len(result))
    return result


async def ahead_behind(path: str, base: str, head: str) -> tuple[int, int]:
    """(commits in `head` not in `base`, commits in `base` not in `head`); cached."""
    found = _ahead_behind.get((base, head))
    if found is None:
        out = await _git(path, "rev-list", "--left-right", "--count", f"{base}...{head}")
        behind, _, ahead = out.decode().strip().partition("\t")
        found = (int(ahead or 0), int(behind or 0))
        _ahead_behind.put((base, head), found, 1)
    return found


_ahead_behind: Lru[tuple[str, str], tuple[int, int]] = Lru(100_000)  # entries


def unquote(text: str) -> str:
    """A path as git prints it: C-quoted ("a\\tb", octal escapes) when it has odd bytes."""
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text
    raw = text[1:-1].encode("utf-8", "surrogateescape")
    out = bytearray()
    i = 0
    simple = {
        ord("n"): 10,
        ord("t"): 9,
        ord('"'): 34,
        ord("\\"): 92,
        ord("a"): 7,
        ord("b"): 8,
        ord("f"): 12,
        ord("r"): 13,
        ord("v"): 11,
    }
    while i < len(raw):
        c = raw[i]
        if c == 92 and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt in simple:
                out.append(simple[nxt])
                i += 2
                continue
            if 48 <= nxt <= 55 and i + 3 < len(raw) + 0 and raw[i + 1 : i + 4].isdigit():
                out.append(int(raw[i + 1 : i + 4], 8) & 0xFF)
                i += 4
                continue
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


async def object_kind(path: str, commit: str, subpath: str) -> str | None:
    """blob, tree or None for `subpath` in `commit` ('' is the root tree)."""
    found = await read_object(path, f"{commit}:{subpath}", 0)
    return None if found is None else found[1]


async def ls_tree(path: str, commit: str, subpath: str = "") -> list[TreeEntry]:
    """Entries of the tree at `subpath` in `commit`, directories first (one git process)."""
    subpath = check_path(subpath)
    key = ("tree", _incarnation(path), commit, subpath)
    found = _memo.get(key) if immutable(commit) else None
    if found is not None:
        return found  # type: ignore[return-value]
    out, _complete, code = await _capped(
        path, ("ls-tree", "-z", "-l", "--end-of-options", f"{commit}:{subpath}"), 32 * 1024 * 1024
    )
    if code not in (0, None):
        raise GitReadError(404, f"no directory {subpath or '/'!r} at this commit")
    entries = []
    for record in out.split(b"\x00"):
        meta, tab, name = record.decode("utf-8", "replace").partition("\t")
        if not tab:
            continue
        mode, kind, oid, size = meta.split(maxsplit=3)
        entries.append(
            TreeEntry(
                mode,
                kind,
                oid,
                int(size) if size.strip().isdigit() else None,
                name,
                f"{subpath}/{name}" if subpath else name,
            )
        )
    entries.sort(key=lambda e: (e.kind != "tree", e.name.lower()))
    if immutable(commit):
        _memo.put(key, entries, 200 + 200 * len(entries))
    return entries


async def read_object(path: str, spec: str, limit: int) -> tuple[str, str, int, bytes] | None:
    """(id, type, size, at most `limit` bytes of content) of the object `spec`
    names, or None when there is none: asked of the repository's long-lived
    `git cat-file` (catfile), or of a one-shot one for a blob too large for it.
    Cached when `spec` is `<full commit id>:<path>`."""
    if "\n" in spec:
        raise GitReadError(404, "names with line breaks cannot be shown here")
    key = ("object", _incarnation(path), spec, limit)
    cacheable = immutable(spec.partition(":")[0]) and ":" in spec
    if cacheable:
        found = _memo.get(key)
        if found is not None:
            return found  # type: ignore[return-value]
    try:
        result = await catfile.read(path, spec, limit)
    except catfile.Dead:
        if not os.path.isdir(path):
            raise GitReadError(404, "the repository has no data on this server yet") from None
    else:
        if result is None or limit <= 0 or result[1] != "blob" or result[2] <= catfile.MAX_OBJECT:
            return _remember(key, result, cacheable)
    # A blob too large for the pipe (or no process to ask): one git we can cut short.
    data, _complete, _code = await _capped(
        path, ("cat-file", "--batch"), limit + 200, stdin=spec.encode() + b"\n"
    )
    head, _, body = data.partition(b"\n")
    fields = head.decode("utf-8", "replace").rsplit(" ", 2)
    if len(fields) != 3 or not fields[2].isdigit() or fields[1] in ("missing", "ambiguous"):
        return None
    size = int(fields[2])
    return _remember(key, (fields[0], fields[1], size, body[: min(size, limit)]), cacheable)


def _remember(
    key: tuple[object, ...], result: tuple[str, str, int, bytes] | None, cacheable: bool
) -> tuple[str, str, int, bytes] | None:
    if cacheable and result is not None:
        _memo.put(key, result, len(result[3]) + 200)
    return result


async def read_blob(path: str, commit: str, subpath: str, limit: int = BLOB_LIMIT) -> Blob:
    """At most `limit` bytes of the file `subpath` in `commit`; GitReadError(404) if none."""
    subpath = check_path(subpath)
    found = await read_object(path, f"{commit}:{subpath}", limit) if subpath else None
    if found is None or found[1] != "blob":
        raise GitReadError(404, f"no file {subpath!r} at this commit")
    oid, _kind, size, data = found
    return Blob(subpath, size, data, size > len(data), oid)


def readme_of(entries: list[TreeEntry]) -> TreeEntry | None:
    """The README among a directory's entries (Markdown first), if there is one."""
    names = sorted(
        (e for e in entries if e.kind == "blob" and _README.match(e.name)),
        key=lambda e: (not e.name.lower().endswith((".md", ".markdown")), e.name),
    )
    return names[0] if names else None


@dataclass(frozen=True)
class Directory:
    """What a directory's page shows of it at one commit."""

    entries: list[TreeEntry]
    latest: list[Commit]  # the newest commits that touched it
    last: dict[str, Commit]  # the last commit of each entry (those found)
    readme: Blob | None


async def directory(
    path: str, commit: str, subpath: str = "", limit: int = 1, readme_limit: int = 256 * 1024
) -> Directory:
    """The entries of `subpath` at `commit`, its `limit` newest commits, the
    last commit of each entry and its README: kept whole at a full commit id
    once every entry's last commit was found, so a warm page asks one cache.
    GitReadError(404) when there is no such directory."""
    subpath = check_path(subpath)
    key = ("dir", _incarnation(path), commit, subpath, int(limit), int(readme_limit))
    found = _memo.get(key) if immutable(commit) else None
    if found is not None:
        return found  # type: ignore[return-value]
    entries, latest = await gather(
        lambda: ls_tree(path, commit, subpath), lambda: log(path, commit, limit, subpath)
    )
    entry = readme_of(entries)

    async def readme() -> Blob | None:
        return None if entry is None else await read_blob(path, commit, entry.path, readme_limit)

    last, blob = await gather(
        lambda: last_commits(path, commit, subpath, [e.name for e in entries]), readme
    )
    result = Directory(entries, latest, last, blob)
    if immutable(commit) and len(last) == len(entries):
        size = len(blob.data) if blob is not None else 0
        _memo.put(key, result, 500 + 200 * len(entries) + 250 * len(latest) + size)
    return result


async def find_readme(path: str, commit: str) -> Blob | None:
    """The README at the root of `commit`, if there is one."""
    try:
        entries = await ls_tree(path, commit, "")
    except GitReadError:
        return None
    entry = readme_of(entries)
    return None if entry is None else await read_blob(path, commit, entry.path, limit=256 * 1024)


# ---- the last commit of each entry of a tree -------------------------------------

_last: Lru[tuple[str, str], dict[str, Commit]] = Lru(16 * 1024 * 1024)  # about bytes


async def last_commits(
    path: str, commit: str, subpath: str, names: list[str], budget: float = 1.0
) -> dict[str, Commit]:
    """For each of `names` (entries of the directory `subpath` at `commit`), the
    newest commit that changed it, as far as one `git log` finds in `budget`
    seconds; names not reached are missing. Complete answers are cached by
    (commit, subpath): both are immutable, so they never go stale."""
    subpath = check_path(subpath)
    cached = _last.get((commit, subpath))
    if cached is not None:
        return cached
    wanted = set(names)
    found: dict[str, Commit] = {}
    prefix = subpath + "/" if subpath else ""
    args = [
        *_argv(path, ()),
        "log",
        "--format=%x01%H%x00%an%x00%ae%x00%aI%x00%s",
        "--name-only",
        "--no-renames",
        commit,
        "--",
        subpath or ".",
    ]
    proc = await trio.lowlevel.open_process(args, stdout=-1, stderr=-3, stdin=-3, env=git_env())
    current: Commit | None = None
    done = False
    pending = b""
    try:
        assert proc.stdout is not None
        with trio.move_on_after(budget):
            while wanted and not done:
                chunk = await proc.stdout.receive_some(65536)
                if not chunk:
                    done = True
                lines = (pending + chunk).split(b"\n")
                pending = b"" if done else lines.pop()
                for raw in lines:
                    if not raw:
                        continue
                    if raw.startswith(b"\x01"):
                        parts = raw[1:].decode("utf-8", "replace").split("\x00")
                        current = Commit(*parts) if len(parts) == 5 else None
                        continue
                    name = unquote(raw.decode("utf-8", "replace"))
                    if current is None or not name.startswith(prefix):
                        continue
                    top = name[len(prefix) :].split("/", 1)[0]
                    if top in wanted:
                        found[top] = current
                        wanted.discard(top)
    finally:
        if proc.returncode is None:
            proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
    if not wanted or done:
        _last.put((commit, subpath), found, 256 + 300 * len(found))
    return found
