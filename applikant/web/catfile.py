"""One long-lived `git cat-file --batch-command` per repository, so that reading
an object (a file at a commit, its type, its size) costs a line on a pipe
instead of a git process (about 3-5 ms each on a busy host).

    found = await catfile.read(path, "<commit id>:<path>", limit)   # or None

Bounds: at most `MAX_PROCESSES` processes (the least recently used one is
closed to make room), each closed after `IDLE` seconds unused (a system task
sweeps them and ends when none is left), and objects larger than `MAX_OBJECT`
are not read through the pipe (the caller falls back to a one-shot process it
can cut short). A process is never shared between repositories, nor kept for
a repository whose directory was replaced (deleted and made again under the
same name). One request at a time talks to a process (a lock); a request that
is cancelled or times out mid-answer leaves the pipe in an unknown state, so
that process is killed, and a process that died is replaced on the next read
(one retry). Processes belong to the trio run that started them (a RunVar),
and are killed when it ends.

Callers pass `<full commit id>:<path>`, which names the same object whenever
it is asked; objects pushed after the process started are found (git looks
for new packs when an object is missing).
"""

from __future__ import annotations

import os
from collections import OrderedDict

import trio

from ..logs import EventLog

events = EventLog("aw")

__all__ = ["IDLE", "MAX_OBJECT", "MAX_PROCESSES", "Dead", "pids", "read"]

MAX_PROCESSES = 16
IDLE = 30.0
MAX_OBJECT = 4 * 1024 * 1024
TIMEOUT = 20.0


class Dead(Exception):
    """The process ended or answered something unreadable; it is discarded."""


class _Batch:
    """The process of one repository and what was read ahead of its answers."""

    def __init__(self, path: str, proc: trio.Process, ident: tuple[int, int]) -> None:
        self.path = path
        self.proc = proc
        self.ident = ident  # the directory it was started on (see _identity)
        self.lock = trio.Lock()
        self.used = trio.current_time()
        self.pending = bytearray()
        self.alive = True

    async def _fill(self) -> None:
        assert self.proc.stdout is not None
        data = await self.proc.stdout.receive_some(65536)
        if not data:
            raise Dead("git cat-file ended")
        self.pending += data

    async def _line(self) -> bytes:
        while (end := self.pending.find(b"\n")) < 0:
            if len(self.pending) > 65536:
                raise Dead("git cat-file answered an overlong line")
            await self._fill()
        line = bytes(self.pending[:end])
        del self.pending[: end + 1]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self.pending) < size:
            await self._fill()
        data = bytes(self.pending[:size])
        del self.pending[:size]
        return data

    async def ask(self, spec: str, limit: int) -> tuple[str, str, int, bytes] | None:
        """(id, type, size, content up to `limit`) of `spec`, None if missing;
        content is b"" unless it is a blob of at most MAX_OBJECT bytes and `limit` > 0."""
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(f"info {spec}\n".encode())
        fields = (await self._line()).decode("utf-8", "replace").rsplit(" ", 2)
        if len(fields) != 3 or not fields[2].isdigit() or fields[1] in ("missing", "ambiguous"):
            return None  # "<spec> missing": the process stays in step
        oid, kind, size = fields[0], fields[1], int(fields[2])
        if limit <= 0 or kind != "blob" or size > MAX_OBJECT:
            return oid, kind, size, b""
        await self.proc.stdin.send_all(f"contents {oid}\n".encode())
        head = await self._line()
        if not head.startswith(oid.encode()):
            raise Dead(f"git cat-file answered {head[:80]!r} for {oid}")
        data = await self._exactly(size + 1)  # the content and its newline
        return oid, kind, size, data[: min(size, limit)]

    async def aclose(self) -> None:
        self.alive = False
        if self.proc.returncode is None:
            self.proc.kill()
        with trio.CancelScope(shield=True):
            await self.proc.wait()


class _Pool:
    def __init__(self) -> None:
        self.batches: OrderedDict[str, _Batch] = OrderedDict()
        self.sweeping = False


_pool: trio.lowlevel.RunVar[_Pool] = trio.lowlevel.RunVar("catfile_pool")


def _current() -> _Pool:
    try:
        return _pool.get()
    except LookupError:
        pool = _Pool()
        _pool.set(pool)
        return pool


async def _sweep(pool: _Pool) -> None:
    """Close processes unused for IDLE seconds; end when none is left. A system
    task: cancelled only when the run ends, and then it closes them all."""
    emptied = False
    try:
        while pool.batches:
            await trio.sleep(IDLE / 4)
            now = trio.current_time()
            for batch in list(pool.batches.values()):
                if not batch.lock.locked() and now - batch.used >= IDLE:
                    pool.batches.pop(batch.path, None)
                    await batch.aclose()
        emptied = True
    finally:
        pool.sweeping = False
        if not emptied:
            for batch in list(pool.batches.values()):
                await batch.aclose()
            pool.batches.clear()


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the repository's directory, None if there is none: a
    repository deleted and made again under the same name is another one, and
    must not be read by a process that still holds the old one's packs open."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


async def _batch(path: str) -> _Batch | None:
    """The process for `path`, started if needed; None when every slot is busy."""
    pool = _current()
    ident = _identity(path)
    batch = pool.batches.get(path)
    if ident is None:
        return None
    if batch is not None and batch.alive and batch.proc.returncode is None and batch.ident == ident:
        pool.batches.move_to_end(path)
        return batch
    if batch is not None:
        pool.batches.pop(path, None)
        await batch.aclose()
    while len(pool.batches) >= MAX_PROCESSES:
        idle = next((b for b in pool.batches.values() if not b.lock.locked()), None)
        if idle is None:
            return None
        pool.batches.pop(idle.path, None)
        await idle.aclose()
    proc = await trio.lowlevel.open_process(
        ["git", f"--git-dir={path}", "cat-file", "--batch-command"],
        stdin=-1,
        stdout=-1,
        stderr=-3,
        env=_env(),
    )
    batch = _Batch(path, proc, ident)
    pool.batches[path] = batch
    if not pool.sweeping:
        pool.sweeping = True
        trio.lowlevel.spawn_system_task(_sweep, pool, name="catfile-sweep")
    return batch


def _env() -> dict[str, str]:
    from .gitread import git_env  # here: gitread imports this module

    return git_env()


async def read(path: str, spec: str, limit: int) -> tuple[str, str, int, bytes] | None:
    """(id, type, size, up to `limit` bytes) of the object `spec` names in the
    repository at `path`, or None when there is none.

    Raises Dead when no process could answer (no repository there, all slots
    busy, or the process died twice): the caller then runs a one-shot git.
    The content is b"" for a tree or a blob over MAX_OBJECT: read it another way."""
    if "\n" in spec:
        raise ValueError("object names with line breaks cannot be read here")
    for _attempt in range(2):
        batch = await _batch(path)
        if batch is None:
            raise Dead(f"no cat-file process for {path}")
        async with batch.lock:
            if not batch.alive:
                continue  # killed while we waited for the lock
            done = False
            try:
                with trio.fail_after(TIMEOUT):
                    found = await batch.ask(spec, limit)
                done = True
                batch.used = trio.current_time()
                return found
            except (Dead, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                events.info("catfile_restarted", repo=path, reason=str(exc)[:200])
            finally:
                if not done:  # cancelled, timed out or dead: its pipe is out of step
                    _current().batches.pop(path, None)
                    await batch.aclose()
    raise Dead(f"git cat-file for {path} died twice")


def pids(path: str) -> list[int]:
    """The process id serving `path` in this run, if any (for tests)."""
    batch = _current().batches.get(path)
    return [batch.proc.pid] if batch is not None and batch.alive else []
