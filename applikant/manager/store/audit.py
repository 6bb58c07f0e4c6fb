"""The audit log: who did what, when, from which node. Append-only.

Admin changes are audited by the methods that make them, in the same
transaction. This module adds the entries no admin change produces (pushes,
denied attempts: the hook and service layers report them), the queries, and the
dashboard counters. Every entry is written by one INSERT (core.Tx.audit_entry),
inside the transaction of what it records. There is deliberately no method that
changes or removes an entry, and triggers in the schema refuse UPDATE and
DELETE on the table.

Action names are dotted (`user.add`, `push`, `push.denied`); a filter on `push`
matches `push` and `push.denied`, not `pushy`.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from applikant.manager.errors import BadRequest, ServiceError
from applikant.manager.names import check_text
from applikant.manager.store import listing
from applikant.manager.store.branches import as_ref_update
from applikant.manager.store.core import Part, Query, Row, format_time
from applikant.manager.store.paging import Page, check_limit, cut, decode
from applikant.manager.store.rows import logins_of, parse_id, repo_row, user_row
from applikant.schema.base import acts_as_system
from applikant.schema.hooks import RefUpdate
from applikant.schema.repos import AuditEntry, Counts

_ACTION_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")
DETAILS_MAX = 1 << 20
LIMIT_MAX = 10_000
COUNT_CAP = 1000  # a non-admin's figures are counted up to this ("1,000+")
_ENTRY_SQL = "SELECT * FROM audit_log WHERE id = ?"
# How many repositories `{ids}` (a statement) gives, and how many pushes to them
# (up to a limit), read once (a WITH used twice is made once, in SQLite and in
# PostgreSQL); the pushes are found repository by repository (audit_by_repo_action).
READABLE_COUNTS_SQL = (
    "WITH readable AS ({ids}) SELECT (SELECT count(*) FROM readable),"
    " (SELECT count(*) FROM (SELECT 1 FROM audit_log WHERE action = 'push' AND repo IN"
    " (SELECT o.name || '/' || r.name FROM repos r JOIN owners o ON o.id = r.owner_id"
    " WHERE r.id IN (SELECT id FROM readable)) LIMIT ?) AS c)"
)
_NO_ID = 1 << 62  # above every id: the first page starts below it
AUDIT_PAGE_SQL = "SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?"
# The next action name after one, within a dotted family: one index seek each.
NEXT_ACTION_SQL = "SELECT min(action) FROM audit_log WHERE action > ? AND action < ?"


def _check_action(action: object) -> str:
    if not isinstance(action, str) or len(action) > 64 or not _ACTION_RE.match(action):
        raise BadRequest(f"audit action {str(action)[:64]!r} must be dotted lowercase words")
    return action


def _time_bound(value: datetime | str | None, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{what} {value[:40]!r} is not an ISO 8601 time") from None
    else:
        moment = value
    if moment.tzinfo is None:
        raise BadRequest(f"{what} must carry a time zone (use UTC, e.g. ...Z)")
    return format_time(moment)


_EVENT_ID_RE = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,63}\Z")


def _check_event_id(value: object) -> str:
    if not isinstance(value, str) or not _EVENT_ID_RE.match(value):
        raise BadRequest("event_id must be 1 to 64 letters, digits, dashes (a UUID)")
    return value


def _actions_under(q: Query, action: str) -> list[str | None]:
    """`action` and the dotted sub-actions the log holds (`push`, `push.denied`),
    found by hopping through the index by action (a loose index scan)."""
    found: list[str | None] = [action]
    after, end = action + ".", action + "/"
    while True:
        name = q.scalar(NEXT_ACTION_SQL, (after, end))
        if name is None:
            return found
        found.append(name)
        after = name


def _newest(ranges: Sequence[Sequence[Row]], limit: int) -> list[Row]:
    """The first `limit` rows of several newest-first ranges, newest first."""
    if len(ranges) == 1:
        return list(ranges[0][:limit])
    return list(heapq.merge(*ranges, key=lambda row: row["id"], reverse=True))[:limit]


def entry_from_row(row: Row, logins: Mapping[str, str] | None = None) -> AuditEntry:
    keys = row.keys()
    return AuditEntry(
        id=row["id"],
        time=row["time"],
        actor=row["actor"],
        node=row["node"],
        action=row["action"],
        repo=row["repo"],
        details=json.loads(row["details"]),
        event_id=row["event_id"] if "event_id" in keys else None,
        actor_login=(logins or {}).get(row["actor"]),
    )


def _entries(q: Query, rows: Sequence[Row]) -> list[AuditEntry]:
    """The entries of `rows`, their user actors named by login (one lookup)."""
    logins = logins_of(q, (r["actor"] for r in rows))
    return [entry_from_row(row, logins) for row in rows]


def _actor_filter(q: Query, actor: str) -> str:
    """The stored form of an `--actor` filter: a login is its account's id."""
    if acts_as_system(actor) or actor == "anonymous" or parse_id(actor, "user") is not None:
        return actor
    try:
        return f"user-{user_row(q, actor)['id']}"
    except ServiceError:
        raise BadRequest(f"no user {actor[:64]!r} to filter by") from None


class Audit(Part):
    """`store.audit`: entries no admin change makes, the queries, the figures."""

    def record(
        self,
        action: str,
        *,
        actor: str,
        node: str | None = None,
        repo: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append an entry for something that is not an admin change (`access.denied`...).

        `repo` is kept as given (a denied attempt may name a repository that does
        not exist). Raises BadRequest for a malformed action or details that are
        not JSON or larger than 1 MiB.
        """
        _check_action(action)
        if repo is not None:
            check_text(repo, "repository", 300)
        payload = dict(details or {})
        try:
            size = len(json.dumps(payload))
        except (TypeError, ValueError):
            raise BadRequest("audit details must be JSON (strings, numbers, lists, maps)") from None
        if size > DETAILS_MAX:
            raise BadRequest("audit details are larger than 1 MiB")
        with self._core.write(actor, node) as tx:
            return self._entry(tx, tx.audit_entry(action, repo, payload))

    def _entry(self, q: Query, entry_id: int) -> AuditEntry:
        row = q.one(_ENTRY_SQL, (entry_id,))
        assert row is not None
        return _entries(q, [row])[0]

    def record_push(
        self,
        repo: str,
        updates: Sequence[RefUpdate | Mapping[str, Any]],
        *,
        actor: str,
        node: str | None = None,
        event_id: str | None = None,
        pushed: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> AuditEntry:
        """Record an accepted push (post-receive): one entry with old/new ids per ref.

        Emits a `repo.pushed` event so that builds and webhooks can follow;
        `pushed` (by ref: commits, total_commits, head_commit) goes into the
        event's refs, not into the audit entry.
        With `event_id` (the hook call's UUID) the push is recorded once however
        often it is delivered: a repeat returns the first entry and emits nothing.
        Raises NotFound for an unknown repository.
        """
        refs = [
            {"ref": u.refname, "old": u.old, "new": u.new}
            for u in (as_ref_update(update) for update in updates)
        ]
        if event_id is not None:
            _check_event_id(event_id)
        with self._core.write(actor, node) as tx:
            if event_id is not None:
                seen = tx.one("SELECT * FROM audit_log WHERE event_id = ?", (event_id,))
                if seen is not None:
                    return _entries(tx, [seen])[0]
            rrow = repo_row(tx, repo)
            full = f"{rrow['owner']}/{rrow['name']}"
            entry_id = tx.audit_entry("push", full, {"refs": refs}, event_id=event_id)
            event: dict[str, Any] = {
                "repo": full,
                "id": f"repo-{rrow['id']}",
                "actor": actor,
                "refs": [{**r, **(pushed or {}).get(r["ref"], {})} for r in refs],
            }
            if event_id is not None:
                event["event_id"] = event_id
            tx.event("repo.pushed", **event)
            return self._entry(tx, entry_id)

    def page(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        repo: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[AuditEntry]:
        """One page of the entries matching every given filter, newest first.

        `action` matches itself and its dotted sub-actions; `since` is inclusive,
        `until` exclusive; `limit` is 1 to 10,000. The entries come from one
        index range per matching action (the index by action, then id), or from
        the index of the actor, the repository or the ids: never a sort of the
        whole log.
        """
        check_limit(limit, LIMIT_MAX)
        key = decode("audit", cursor, int)
        where = ["id < ?"]
        params: list[object] = [key[0] if key else _NO_ID]
        if actor is not None:
            with self._core.read() as q:
                actor = _actor_filter(q, actor)
            where.append("actor = ?")
            params.append(actor)
        if repo is not None:
            where.append("repo = ?")
            params.append(repo[:-4] if repo.endswith(".git") else repo)
        for bound, op, what in ((since, ">=", "since"), (until, "<", "until")):
            text = _time_bound(bound, what)
            if text is not None:
                where.append(f"time {op} ?")
                params.append(text)
        with self._core.read() as q:
            actions: list[str | None] = [None]
            if action is not None:
                actions = _actions_under(q, _check_action(action))
            ranges = []
            for name in actions:
                sql, args = AUDIT_PAGE_SQL, list(params)
                if name is not None:
                    sql = sql.replace("WHERE ", "WHERE action = ? AND ")
                    args.insert(0, name)
                sql = sql.replace("id < ?", " AND ".join(where))
                ranges.append(q.all(sql, (*args, limit + 1)))
            rows = _newest(ranges, limit + 1)
            page = cut(rows, limit, "audit", lambda r: (r["id"],), key is None)
            return Page(_entries(q, page.items), page.next, page.total)

    def query(self, **filters: Any) -> list[AuditEntry]:
        """The first page of `page(**filters)`: the newest matching entries."""
        return self.page(**filters).items

    def recent_pushes(self, limit: int = 10) -> list[AuditEntry]:
        """The latest accepted pushes, newest first (for the dashboard)."""
        if not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
            raise BadRequest(f"limit must be an integer from 1 to {LIMIT_MAX}")
        with self._core.read() as q:
            rows = q.all(
                "SELECT * FROM audit_log WHERE action = 'push' ORDER BY id DESC LIMIT ?", (limit,)
            )
            return _entries(q, rows)

    def counts_for(self, user: str, *, pushes: bool = True) -> Counts:
        """The dashboard's figures as `user` (not a site admin) may see them:
        enabled users and groups (which they can list anyway), the repositories
        they can read, their own keys, and the pushes to those repositories
        (unless `pushes` is false: None); no refusal counts (those are for site
        admins).

        Counted up to COUNT_CAP each, a bounded amount of work whatever the size
        of the site: a figure that reached it is named in `capped` ("1,000+").
        The pushes are those to the first repositories the user can read (a
        lower bound, named in `capped`, when there are more than COUNT_CAP).
        Each figure is one statement whose rows stay in the database.
        """
        with self._core.read() as q:
            viewer = user_row(q, user)
            keys = q.scalar("SELECT count(*) FROM ssh_keys WHERE user_id = ?", (viewer["id"],))
            found = {}
            for name, sql in (
                ("users", "SELECT 1 FROM users WHERE disabled = 0"),
                ("groups", "SELECT 1 FROM groups"),
            ):
                found[name] = q.scalar(
                    f"SELECT count(*) FROM ({sql} LIMIT ?) AS c", (COUNT_CAP + 1,)
                )
            found["repos"] = found["pushes"] = 0
            if not viewer["disabled"]:
                ids, params = listing.readable_ids(q, viewer, COUNT_CAP + 1)
                if pushes:
                    row = q.one(READABLE_COUNTS_SQL.format(ids=ids), (*params, COUNT_CAP + 1))
                    assert row is not None
                    found["repos"], found["pushes"] = row[0], row[1]
                else:
                    found["repos"] = q.scalar(f"SELECT count(*) FROM ({ids}) AS c", params)
        capped = ["pushes"] if pushes and found["repos"] > COUNT_CAP else []
        for name, value in found.items():
            if value > COUNT_CAP:
                found[name] = COUNT_CAP
                capped.append(name)
        return Counts(
            users=found["users"],
            repos=found["repos"],
            keys=keys,
            groups=found["groups"],
            pushes=found["pushes"] if pushes else None,
            push_denials=None,
            access_denials=None,
            capped=sorted(set(capped)),
        )

    def counts(self, *, pushes: bool = True) -> Counts:
        """How many users, repositories, keys and groups there are, and how many
        pushes (unless `pushes` is false: None) and refusals the audit log holds
        (the dashboard and /metrics)."""
        counted = "(SELECT count(*) FROM audit_log WHERE action = 'push')" if pushes else "NULL"
        with self._core.read() as q:
            row = q.one(
                "SELECT (SELECT count(*) FROM users) AS users,"
                " (SELECT count(*) FROM repos) AS repos,"
                " (SELECT count(*) FROM ssh_keys) AS keys,"
                " (SELECT count(*) FROM groups) AS groups,"
                f" {counted} AS pushes,"
                " (SELECT count(*) FROM audit_log WHERE action = 'push.denied') AS push_denials,"
                " (SELECT count(*) FROM audit_log WHERE action = 'access.denied') AS access_denials"
            )
        assert row is not None
        return Counts(
            users=row["users"],
            repos=row["repos"],
            keys=row["keys"],
            groups=row["groups"],
            pushes=row["pushes"],
            push_denials=row["push_denials"],
            access_denials=row["access_denials"],
        )
