"""The build queue in am's store: builds and their log lines (schema v4).

A build is accepted once `enqueue` returns: it is committed (WAL,
synchronous=FULL) and survives a crash of am. From there:

    queued --take--> running --finish--> succeeded | failed | timed-out
      |                  |  \\--interrupt--> failed ("interrupted") or queued again
      +-----cancel-------+--> cancelled (a running build: cancel_requested,
                                the runner stops it and reports "cancelled")

Builds are numbered per repository (`alice/app #12`; `repos.builds_made` is
the last number given, so a number is never given twice, even after old
builds were pruned); `build-42` is a build's id, unique in the cluster, what
runners and events name it by. Log lines are numbered per build from 1
(`seq`), in the order the runner sent them; a build queued again after an
interruption keeps its earlier lines and goes on numbering after them.

`prune(keep)` deletes all but the newest `keep` finished builds of each
repository, with their logs (am runs it in the background).

Runner calls (`take`, `append_log`, `finish`) name the runner node and the
attempt: a runner that lost a build (interrupted while it was unreachable, or
cancelled) gets Conflict and stops it, so a stale runner never overwrites a
newer state.

Events (to am's subscribers, after the commit): `build.queued`,
`build.started`, `build.cancel` (a running build's runner should stop it),
`build.finished` (with status), `build.requeued`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from applikant.builder.models import FINAL_STATUSES, Build, BuildStatus
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.names import is_zero_id
from applikant.manager.store.core import Part, Query, Row, Tx
from applikant.manager.store.paging import Page, check_limit, cut, decode
from applikant.manager.store.rows import logins_of, repo_row
from applikant.schema.builds import LOG_BATCH_MAX

__all__ = ["LINE_MAX", "LOG_BATCH_MAX", "Builds", "parse_build_ref"]

_REPO_NUMBER = re.compile(r"\s*([^\s#]+/[^\s#]+?)(?:\.git)?\s*#\s*(\d{1,18})\s*\Z")
PRUNE_BATCH = 500  # builds deleted per transaction by prune

LINE_MAX = 64 * 1024  # characters per stored line (the runner splits at max_line)
LIST_MAX = 1000
_FINAL = tuple(s.value for s in FINAL_STATUSES)

_SELECT = (
    "SELECT b.*, CASE WHEN r.id IS NULL THEN b.repo ELSE o.name || '/' || r.name END AS repo_now"
    " FROM builds b LEFT JOIN repos r ON r.id = b.repo_id LEFT JOIN owners o ON o.id = r.owner_id"
)
BUILDS_PAGE_SQL = _SELECT + " WHERE b.id < ? ORDER BY b.id DESC LIMIT ?"


def parse_build_ref(ref: object) -> int:
    """The number of `build-42`, `#42` or `42` (str or int); BadRequest otherwise."""
    if isinstance(ref, int) and not isinstance(ref, bool):
        number = ref
    elif isinstance(ref, str):
        text = ref.strip().removeprefix("build-").removeprefix("#")
        if not text.isdigit() or len(text) > 18:
            raise BadRequest(f"a build is given as alice/app#12 or build-42, not {ref[:40]!r}")
        number = int(text)
    else:
        raise BadRequest("a build is given as alice/app#12 or build-42")
    if number < 1:
        raise BadRequest("build numbers start at 1")
    return number


def build_from_row(row: Row, logins: Mapping[str, str] | None = None) -> Build:
    return Build.model_validate(
        {
            "id": f"build-{row['id']}",
            "number": row["number"],
            "repo": row["repo_now"],
            "ref": row["ref"],
            "commit": row["commit_id"],
            "status": row["status"],
            # stored times (base.format_time) are ISO 8601 UTC already
            "queued_at": row["queued_at"],
            "started_at": row["started_at"],
            "finished_at": row["finished_at"],
            "exit_code": row["exit_code"],
            "reason": row["reason"],
            "log_size": row["log_size"],
            "log_truncated": bool(row["log_truncated"]),
            "pusher": row["pusher"],
            "pusher_login": (logins or {}).get(row["pusher"] or ""),
            "attempt": row["attempt"],
            "runner": row["runner"],
            "cancel_requested": bool(row["cancel_requested"]),
        }
    )


def _builds(q: Query, rows: Sequence[Row]) -> list[Build]:
    """The builds of `rows`, their pushers named by login."""
    logins = logins_of(q, (r["pusher"] for r in rows))
    return [build_from_row(r, logins) for r in rows]


def _brief(build: Build) -> dict[str, Any]:
    """What an event says about a build."""
    return {
        "build": build.id,
        "number": build.number,
        "repo": build.repo,
        "ref": build.ref,
        "commit": build.commit,
        "status": build.status.value,
        "runner": build.runner,
        "attempt": build.attempt,
    }


def _build_row(q: Query, ref: object, repo: str | None = None) -> Row:
    """A build by id (`build-42`), by repository and number (`alice/app#12`,
    or `12` with `repo`), or by a bare number, which is an id (`42`, `#42`)."""
    text = ref.strip() if isinstance(ref, str) else ref
    match = _REPO_NUMBER.match(text) if isinstance(text, str) else None
    if match is not None:
        repo, text = match.group(1), match.group(2)
    if repo is not None and not (isinstance(text, str) and text.startswith("build-")):
        number = parse_build_ref(text)
        rrow = repo_row(q, repo)
        full = f"{rrow['owner']}/{rrow['name']}"
        row = q.one(_SELECT + " WHERE b.repo_id = ? AND b.number = ?", (rrow["id"], number))
        if row is None:
            raise NotFound(f"no build {full} #{number}")
        return row
    number = parse_build_ref(text)
    row = q.one(_SELECT + " WHERE b.id = ?", (number,))
    if row is None:
        raise NotFound(f"no build build-{number}")
    return row


def _label(row: Row) -> str:
    """How people name a build: `alice/app #12`."""
    return f"{row['repo_now']} #{row['number']}"


def _next_number(tx: Tx, repo_id: int) -> int:
    """The repository's next build number (its counter is raised in this transaction)."""
    tx.run("UPDATE repos SET builds_made = builds_made + 1 WHERE id = ?", (repo_id,))
    return int(tx.scalar("SELECT builds_made FROM repos WHERE id = ?", (repo_id,)))


def _tx_build(tx: Tx, number: int) -> Build:
    return _builds(tx, [_build_row(tx, number)])[0]


class Builds(Part):
    """`store.builds`: the build queue; see the module docstring."""

    # ---- reading ---------------------------------------------------------------

    def get(self, ref: object, repo: str | None = None) -> Build:
        """The build `ref` (build-42, alice/app#12, or 12 of `repo`); NotFound
        when there is none."""
        with self._core.read() as q:
            return _builds(q, [_build_row(q, ref, repo)])[0]

    def page(
        self,
        *,
        repo: str | None = None,
        status: str | None = None,
        runner: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Build]:
        """One page of the builds matching every given filter, newest first (one
        range of the primary key, or of the index by repository or by status)."""
        check_limit(limit, LIST_MAX)
        key = decode("builds", cursor, int)
        where = ["b.id < ?"]
        params: list[object] = [key[0] if key else 1 << 62]
        with self._core.read() as q:
            if repo is not None:
                where.append("b.repo_id = ?")
                params.append(repo_row(q, repo)["id"])
            if status is not None:
                if status not in {s.value for s in BuildStatus}:
                    raise BadRequest(f"no build status {status[:40]!r}")
                where.append("b.status = ?")
                params.append(status)
            if runner is not None:
                where.append("b.runner = ?")
                params.append(runner)
            sql = BUILDS_PAGE_SQL.replace("b.id < ?", " AND ".join(where))
            rows = q.all(sql, (*params, limit + 1))
            builds = _builds(q, rows)
        return cut(builds, limit, "builds", lambda b: (int(b.id[6:]),), key is None)

    def all(self, **filters: Any) -> list[Build]:
        """The first page of `page(**filters)`: the newest matching builds."""
        return self.page(**filters).items

    def read_log(self, ref: object, *, after: int = 0, limit: int = 5000) -> dict[str, Any]:
        """Log lines numbered above `after`, at most `limit`:
        {"lines": [[seq, line]...], "next": last seq given (or `after`),
        "status", "final", "truncated", "total": lines stored}."""
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise BadRequest("after must be a non-negative integer")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
            raise BadRequest("limit must be an integer from 1 to 100000")
        with self._core.read() as q:
            row = _build_row(q, ref)
            lines = q.all(
                "SELECT seq, line FROM build_logs WHERE build_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (row["id"], after, limit),
            )
        out = [[seq, line] for seq, line in lines]
        return {
            "build": f"build-{row['id']}",
            "lines": out,
            "next": out[-1][0] if out else after,
            "status": row["status"],
            "final": row["status"] in _FINAL,
            "truncated": bool(row["log_truncated"]),
            "total": row["log_lines"],
        }

    def latest(self, repo: str, ref: str) -> Build | None:
        """The newest build of `ref` (refs/heads/main) in `repo`, or None (badges)."""
        with self._core.read() as q:
            rrow = repo_row(q, repo)
            row = q.one(
                _SELECT + " WHERE b.repo_id = ? AND b.ref = ? ORDER BY b.id DESC LIMIT 1",
                (rrow["id"], ref),
            )
            return None if row is None else _builds(q, [row])[0]

    def of_commits(self, repo: str, commits: Sequence[str]) -> dict[str, Build]:
        """The newest build of each of `commits` (full ids) in `repo` that has
        one, by commit (the commit list and commit pages)."""
        if len(commits) > LIST_MAX:
            raise BadRequest(f"at most {LIST_MAX} commits at once")
        found: dict[str, Build] = {}
        with self._core.read() as q:
            rrow = repo_row(q, repo)
            for commit in dict.fromkeys(commits):
                row = q.one(
                    _SELECT + " WHERE b.repo_id = ? AND b.commit_id = ? ORDER BY b.id DESC LIMIT 1",
                    (rrow["id"], commit),
                )
                if row is not None:
                    found[commit] = _builds(q, [row])[0]
        return found

    def counts(self) -> dict[str, int]:
        """How many builds are in each status."""
        with self._core.read() as q:
            rows = q.all("SELECT status, COUNT(*) FROM builds GROUP BY status")
        counts = {s.value: 0 for s in BuildStatus}
        counts.update({status: n for status, n in rows})
        return counts

    # ---- queueing --------------------------------------------------------------

    def enqueue(
        self,
        repo: str,
        wanted: Sequence[Mapping[str, str]],
        *,
        actor: str,
        node: str | None = None,
        event_id: str | None = None,
        pusher: str | None = None,
    ) -> list[Build]:
        """Queue one build per {"ref", "commit"} of `repo`; the builds, in that order.

        With `event_id` (the push's hook event) this is idempotent: a ref that
        event already queued is not queued again, its build is returned.
        NotFound for an unknown repository; BadRequest for a bad ref or commit.
        """
        for item in wanted:
            ref, commit = item.get("ref"), item.get("commit")
            if (
                not isinstance(ref, str)
                or not ref.startswith("refs/")
                or len(ref) > 1000
                or any(c in ref for c in "\x00\n\r")
            ):
                raise BadRequest("a build's ref must be a full ref name (refs/heads/main)")
            if (
                not isinstance(commit, str)
                or len(commit) not in (40, 64)
                or any(c not in "0123456789abcdef" for c in commit)
                or is_zero_id(commit)
            ):
                raise BadRequest("a build's commit must be a full object id")
        built: list[int] = []
        with self._core.write(actor, node) as tx:
            rrow = repo_row(tx, repo)
            full = f"{rrow['owner']}/{rrow['name']}"
            for item in wanted:
                if event_id is not None:
                    seen = tx.one(
                        "SELECT id FROM builds WHERE event_id = ? AND ref = ?",
                        (event_id, item["ref"]),
                    )
                    if seen is not None:
                        built.append(seen["id"])
                        continue
                number = tx.insert(
                    "INSERT INTO builds (repo_id, repo, ref, commit_id, queued_at, pusher,"
                    " event_id, number) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rrow["id"],
                        full,
                        item["ref"],
                        item["commit"],
                        tx.now,
                        pusher,
                        event_id,
                        _next_number(tx, rrow["id"]),
                    ),
                )
                built.append(number)
                tx.event("build.queued", **_brief(_tx_build(tx, number)))
            return [_tx_build(tx, number) for number in built]

    def rerun(self, ref: object, *, actor: str, node: str | None = None) -> Build:
        """Queue a new build of the same repo, ref and commit (attempt + 1)."""
        with self._core.write(actor, node) as tx:
            row = _build_row(tx, ref)
            if row["repo_id"] is None:
                raise Conflict(f"build {_label(row)}'s repository no longer exists")
            number = tx.insert(
                "INSERT INTO builds (repo_id, repo, ref, commit_id, queued_at, pusher, attempt,"
                " number) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row["repo_id"],
                    row["repo_now"],
                    row["ref"],
                    row["commit_id"],
                    tx.now,
                    actor if actor.startswith("user-") else row["pusher"],
                    row["attempt"] + 1,
                    _next_number(tx, row["repo_id"]),
                ),
            )
            build = _tx_build(tx, number)
            tx.audit("build.rerun", build.repo, build=build.id, of=f"build-{row['id']}")
            tx.event("build.queued", **_brief(build))
            return build

    def cancel(self, ref: object, *, actor: str, node: str | None = None) -> Build:
        """Cancel a build: a queued one at once; a running one is marked
        (cancel_requested) and its runner told (`build.cancel`) to stop it.
        Conflict when it has already ended."""
        with self._core.write(actor, node) as tx:
            row = _build_row(tx, ref)
            number = row["id"]
            if row["status"] in _FINAL:
                raise Conflict(f"build {_label(row)} has already ended ({row['status']})")
            if row["status"] == BuildStatus.QUEUED.value:
                who = logins_of(tx, [actor]).get(actor, actor)
                tx.run(
                    "UPDATE builds SET status = 'cancelled', finished_at = ?, reason = ?"
                    " WHERE id = ?",
                    (tx.now, f"cancelled by {who} before it started", number),
                )
                build = _tx_build(tx, number)
                tx.event("build.finished", **_brief(build))
            else:
                tx.run("UPDATE builds SET cancel_requested = 1 WHERE id = ?", (number,))
                build = _tx_build(tx, number)
                tx.event("build.cancel", **_brief(build))
            tx.audit("build.cancel", build.repo, build=build.id, status=row["status"])
            return build

    # ---- the runner's side -----------------------------------------------------

    def take(self, runner: str, count: int, *, actor: str) -> list[Build]:
        """Up to `count` queued builds, oldest first, now running on `runner`."""
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100:
            raise BadRequest("count must be an integer from 0 to 100")
        with self._core.write(actor, runner) as tx:
            rows = tx.all(
                "SELECT id FROM builds WHERE status = 'queued' ORDER BY id LIMIT ?", (count,)
            )
            taken = []
            for row in rows:
                number = row["id"]
                tx.run(
                    "UPDATE builds SET status = 'running', started_at = ?, runner = ?,"
                    " cancel_requested = 0 WHERE id = ?",
                    (tx.now, runner, number),
                )
                build = _tx_build(tx, number)
                tx.event("build.started", **_brief(build))
                taken.append(build)
            return taken

    def _running_row(self, q: Query, ref: object, runner: str, attempt: int) -> Row:
        row = _build_row(q, ref)
        if row["status"] != "running" or row["runner"] != runner or row["attempt"] != attempt:
            raise Conflict(
                f"build {_label(row)} (attempt {attempt}) is no longer running on "
                f"{runner}: it is {row['status']}"
            )
        return row

    def append_log(
        self, ref: object, lines: Sequence[str], *, runner: str, attempt: int, actor: str
    ) -> dict[str, Any]:
        """Store `lines` after the build's last: {"next": last seq, "cancel": whether
        cancel was asked}. Conflict when the build is not running there."""
        if not isinstance(lines, (list, tuple)) or len(lines) > LOG_BATCH_MAX:
            raise BadRequest(f"lines must be a list of at most {LOG_BATCH_MAX} strings")
        if any(not isinstance(line, str) for line in lines):
            raise BadRequest("lines must be strings")
        with self._core.write(actor, runner) as tx:
            row = self._running_row(tx, ref, runner, attempt)
            first = row["log_lines"] + 1
            tx.many(
                "INSERT INTO build_logs (build_id, seq, line) VALUES (?, ?, ?)",
                [(row["id"], first + i, line[:LINE_MAX]) for i, line in enumerate(lines)],
            )
            size = sum(len(line.encode("utf-8", "replace")) + 1 for line in lines)
            tx.run(
                "UPDATE builds SET log_lines = log_lines + ?, log_size = log_size + ? WHERE id = ?",
                (len(lines), size, row["id"]),
            )
        return {"next": row["log_lines"] + len(lines), "cancel": bool(row["cancel_requested"])}

    def finish(
        self, ref: object, result: Mapping[str, Any], *, runner: str, attempt: int, actor: str
    ) -> Build:
        """Record how a run ended (a BuildResult's JSON); the build. Conflict
        when it is not running on `runner` in that attempt."""
        status = result.get("status")
        if status not in _FINAL:
            raise BadRequest(f"a finished build's status is one of {', '.join(_FINAL)}")
        exit_code = result.get("exit_code")
        if exit_code is not None and (
            not isinstance(exit_code, int) or isinstance(exit_code, bool)
        ):
            raise BadRequest("exit_code must be an integer or null")
        reason = str(result.get("reason") or "")[:2000]
        with self._core.write(actor, runner) as tx:
            row = self._running_row(tx, ref, runner, attempt)
            # log_size stays what the lines stored add up to (the runner's
            # figure leaves out am's own notes).
            tx.run(
                "UPDATE builds SET status = ?, finished_at = ?, exit_code = ?, reason = ?,"
                " log_truncated = ? WHERE id = ?",
                (
                    status,
                    tx.now,
                    exit_code,
                    reason,
                    1 if result.get("log_truncated") else 0,
                    row["id"],
                ),
            )
            build = _tx_build(tx, row["id"])
            tx.event("build.finished", **_brief(build))
            return build

    def interrupt(
        self,
        runner: str,
        *,
        policy: str,
        keep: Iterable[str] = (),
        actor: str,
        why: str = "interrupted",
    ) -> list[Build]:
        """Builds left running on `runner` (but those in `keep`, build ids it still
        runs): failed with reason `why` (policy "fail") or queued again with
        attempt + 1 (policy "requeue"; a build whose cancel was asked is
        cancelled instead). The builds changed."""
        if policy not in ("fail", "requeue"):
            raise BadRequest("policy must be fail or requeue")
        kept = {parse_build_ref(k) for k in keep}
        with self._core.write(actor, runner) as tx:
            rows = tx.all(
                "SELECT id, cancel_requested, log_lines FROM builds"
                " WHERE status = 'running' AND runner = ?",
                (runner,),
            )
            changed = []
            for row in rows:
                if row["id"] in kept:
                    continue
                if row["cancel_requested"]:
                    tx.run(
                        "UPDATE builds SET status = 'cancelled', finished_at = ?,"
                        " reason = ? WHERE id = ?",
                        (tx.now, f"cancelled ({why})", row["id"]),
                    )
                    kind = "build.finished"
                elif policy == "fail":
                    tx.run(
                        "UPDATE builds SET status = 'failed', finished_at = ?,"
                        " reason = ? WHERE id = ?",
                        (tx.now, why, row["id"]),
                    )
                    kind = "build.finished"
                else:
                    tx.run(
                        "UPDATE builds SET status = 'queued', started_at = NULL, runner = NULL,"
                        " attempt = attempt + 1 WHERE id = ?",
                        (row["id"],),
                    )
                    kind = "build.requeued"
                note = f"applikant: {why}" + (" (queued again)" if kind == "build.requeued" else "")
                tx.run(
                    "INSERT INTO build_logs (build_id, seq, line) VALUES (?, ?, ?)",
                    (row["id"], row["log_lines"] + 1, note),
                )
                tx.run("UPDATE builds SET log_lines = log_lines + 1 WHERE id = ?", (row["id"],))
                build = _tx_build(tx, row["id"])
                tx.event(kind, **_brief(build))
                if kind == "build.requeued":
                    tx.event("build.queued", **_brief(build))
                changed.append(build)
            return changed

    # ---- retention -----------------------------------------------------------------

    def prune(self, keep: int, *, limit: int = PRUNE_BATCH, actor: str = "system") -> int:
        """Delete finished builds of a repository beyond its newest `keep`, with
        their logs: at most `limit` in this one transaction; how many were
        deleted (call again while it is `limit`). A repository that is gone
        counts as one, by the name its builds keep. Queued and running builds
        are never deleted. Not audited: housekeeping."""
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise BadRequest("keep must be an integer of at least 1")
        final = ", ".join(f"'{status}'" for status in _FINAL)
        with self._core.write(actor) as tx:
            scopes: list[tuple[str, object]] = [
                ("repo_id = ?", r[0])
                for r in tx.all(
                    "SELECT repo_id FROM builds WHERE repo_id IS NOT NULL"
                    " GROUP BY repo_id HAVING count(*) > ?",
                    (keep,),
                )
            ]
            scopes += [
                ("repo_id IS NULL AND repo = ?", r[0])
                for r in tx.all(
                    "SELECT repo FROM builds WHERE repo_id IS NULL GROUP BY repo HAVING count(*) > ?",
                    (keep,),
                )
            ]
            doomed: list[int] = []
            for where, value in scopes:
                if len(doomed) >= limit:
                    break
                doomed += [
                    r[0]
                    for r in tx.all(
                        f"SELECT id FROM builds WHERE {where} AND status IN ({final})"
                        f" AND id < (SELECT min(id) FROM (SELECT id FROM builds WHERE {where}"
                        "  ORDER BY id DESC LIMIT ?) newest)"
                        " ORDER BY id LIMIT ?",
                        (value, value, keep, limit - len(doomed)),
                    )
                ]
            if not doomed:
                return 0
            marks = ", ".join("?" for _ in doomed)
            return tx.run(f"DELETE FROM builds WHERE id IN ({marks})", doomed)

    def runners(self) -> list[str]:
        """The runner nodes that builds are running on."""
        with self._core.read() as q:
            rows = q.all(
                "SELECT DISTINCT runner FROM builds WHERE status = 'running' AND runner IS NOT NULL"
            )
        return [r[0] for r in rows]
