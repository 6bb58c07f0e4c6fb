"""Webhooks in am's store: hooks, their deliveries and every attempt, and the
durable queue the delivery worker (applikant.webhooks.deliver_pending) reads.

- A hook belongs to one repository, or to the site (`repo` None: every
  repository). Its secret is made here when none is given and is returned once,
  by `add`; listings never show it. Hooks go when their repository goes.
- A delivery is made *inside the transaction of the change it reports*: when
  a push (`repo.pushed`), a new or deleted repository, or a finished build
  (`build.finished`) commits, so do its deliveries, one per active hook that
  wants the event. A push is thus acknowledged without waiting for any
  receiver, and nothing is lost when am dies: the worker finds the pending
  deliveries after a restart. A push recorded twice (same event id) makes no
  second delivery, since the second record_push changes nothing. (The core
  runs the delivery-making hook before every commit: `Core.before_commit`.)
- The body (JSON text) is fixed when the delivery is made: every attempt, and a
  redelivery (a new delivery, new id, same body), sends and signs the same bytes.
  Bodies are shaped like Gitea's and GitHub's (hookpayloads.py); a push makes
  one delivery per updated ref.
- A hook can be changed (URL, secret, events, active) and tested (a `ping`
  delivery, due now). Deliveries that are over are pruned after some days
  (`prune_deliveries`; am runs it in the background); pending ones never are.
- Attempts are kept with their outcome, status code, Location of a redirect,
  the first bytes of the answer, the error in words and the duration.

Event names are the library's: push, repo_created, repo_deleted,
build_finished, ping (dotted forms such as `repo.created` are accepted).
Hook ids are `hook-7`; delivery ids are UUIDs (the X-Applikant-Delivery header).
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

from applikant.links import Links
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import hookpayloads as payloads
from applikant.manager.store.core import Core, Part, Query, Row, Tx, format_time
from applikant.manager.store.paging import Page, check_limit, cut, decode
from applikant.manager.store.rows import REPO_SELECT, parse_id, repo_row
from applikant.schema.webhooks import Delivery, NewWebhook, Webhook
from applikant.webhooks import (
    Attempt,
    InvalidHookURL,
    Outcome,
    PendingDelivery,
    encode_body,
    new_secret,
    validate_url,
)

__all__ = ["HOOK_EVENTS", "Webhooks", "normalize_events"]

#: What a hook may subscribe to (ping is sent to every new hook, unasked).
HOOK_EVENTS = ("push", "repo_created", "repo_deleted", "build_finished")
HOOKS_PER_SCOPE_MAX = 50
SECRET_MAX = 256
DELIVERIES_LIST_MAX = 500

# The store's change events that make deliveries, and the hook event each is.
_TRIGGERS = {
    "repo.pushed": "push",
    "repo.created": "repo_created",
    "repo.deleted": "repo_deleted",
    "build.finished": "build_finished",
}
_HOOK_ID = re.compile(r"hook-([1-9][0-9]{0,17})\Z")
# What a repeated attempt number overwrites (an attempt recorded twice).
_ATTEMPT_RESULT = (
    "started_at",
    "duration",
    "outcome",
    "status_code",
    "location",
    "response",
    "error",
)


def normalize_events(events: object) -> list[str]:
    """The hook events named in `events` (dotted or underscored), deduplicated,
    in HOOK_EVENTS order; BadRequest for anything else."""
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, list) or not events:
        raise BadRequest(f"a hook needs at least one event: {', '.join(HOOK_EVENTS)}")
    wanted = set()
    for name in events:
        if not isinstance(name, str):
            raise BadRequest("events must be strings")
        canon = name.strip().replace(".", "_").replace("-", "_")
        if canon not in HOOK_EVENTS:
            raise BadRequest(f"unknown event {name[:40]!r}; events are {', '.join(HOOK_EVENTS)}")
        wanted.add(canon)
    return [e for e in HOOK_EVENTS if e in wanted]


def _checked_url(url: object) -> str:
    try:
        return validate_url(url if isinstance(url, str) else "")
    except InvalidHookURL as exc:
        raise BadRequest(f"invalid hook URL: {exc}") from None


def _checked_secret(secret: object) -> str:
    if not isinstance(secret, str) or len(secret) > SECRET_MAX or not secret.isprintable():
        raise BadRequest(f"the secret must be printable text of at most {SECRET_MAX} characters")
    return secret


def _hook_number(ref: object) -> int:
    match = _HOOK_ID.match(ref) if isinstance(ref, str) else None
    if match is None:
        raise BadRequest(f"{str(ref)[:80]!r} is not a hook id (hook-7)")
    return int(match.group(1))


def _delivery_id(ref: object) -> str:
    try:
        return str(uuid.UUID(str(ref)))
    except ValueError:
        raise BadRequest(f"{str(ref)[:80]!r} is not a delivery id (a UUID)") from None


# The order deliveries were made in, within one transaction (one created_at),
# is their `seq` (schema version 6), here and in `deliveries`.
_HOOK_SELECT = (
    "SELECT h.*, o.name AS owner, r.name AS repo_name,"
    " (SELECT d.status FROM webhook_deliveries d WHERE d.hook_id = h.id"
    "  ORDER BY d.created_at DESC, d.seq DESC LIMIT 1) AS last_status"
    " FROM webhooks h LEFT JOIN repos r ON r.id = h.repo_id"
    " LEFT JOIN owners o ON o.id = r.owner_id"
)
# seq: see _HOOK_SELECT. The cursor is the last row's (created_at, seq).
DELIVERIES_PAGE_SQL = (
    "SELECT * FROM webhook_deliveries WHERE hook_id = ?"
    " AND (created_at, seq) < (?, ?) ORDER BY created_at DESC, seq DESC LIMIT ?"
)


def _hook_from_row(row: Row) -> Webhook:
    return Webhook(
        id=f"hook-{row['id']}",
        repo=None if row["repo_id"] is None else f"{row['owner']}/{row['repo_name']}",
        url=row["url"],
        events=json.loads(row["events"]),
        active=bool(row["active"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        last_status=row["last_status"],
    )


def _attempt_from_row(row: Row) -> Attempt:
    return Attempt(
        number=row["number"],
        started_at=row["started_at"],
        duration=row["duration"],
        outcome=Outcome(row["outcome"]),
        status_code=row["status_code"],
        location=row["location"],
        response=row["response"],
        error=row["error"],
    )


def _hook_row(q: Query, ref: object) -> Row:
    row = q.one(_HOOK_SELECT + " WHERE h.id = ?", (_hook_number(ref),))
    if row is None:
        raise NotFound(f"no hook {ref}")
    return row


class Webhooks(Part):
    """`store.webhooks`: hooks, and the deliveries made with the changes they report."""

    def __init__(self, core: Core) -> None:
        super().__init__(core)
        self.queued_deliveries = 0  # made by this store so far (for the worker's wake)
        # Where aw is reached, for the URLs in payloads (am sets it from the config).
        self.links = Links("http://127.0.0.1:8008")
        # Inside every transaction, before its commit: the deliveries for the
        # events it queued commit with the change, or neither does.
        core.before_commit(self._deliveries_for)

    # ---- deliveries made with the change they report ------------------------------

    def _deliveries_for(self, tx: Tx) -> None:
        if any(event.get("kind") in _TRIGGERS for event in tx.events):
            self.queued_deliveries += self._enqueue(tx)

    def _enqueue(self, tx: Tx) -> int:
        made = 0
        for event in list(tx.events):
            hook_event = _TRIGGERS.get(event.get("kind", ""))
            if hook_event is None:
                continue
            repo = self._event_repo(tx, event)
            bodies = [encode_body(p) for p in self._payloads(tx, hook_event, event, repo)]
            hooks = tx.all(
                "SELECT id, events FROM webhooks WHERE active = 1"
                " AND (repo_id IS NULL OR repo_id = ?) ORDER BY id",
                (repo["id"] if repo is not None else None,),
            )
            for hook in hooks:
                if hook_event in json.loads(hook["events"]):
                    for body in bodies:
                        self._insert_delivery(tx, hook["id"], hook_event, body)
                        made += 1
        return made

    def _event_repo(self, q: Query, event: dict[str, Any]) -> Row | None:
        number = parse_id(str(event.get("id") or event.get("repo_id") or ""), "repo")
        if number is not None:
            row = q.one(REPO_SELECT + " WHERE r.id = ?", (number,))
            if row is not None:
                return row
        repo = event.get("repo")
        if isinstance(repo, str) and "/" in repo:
            owner, _, name = repo.removesuffix(".git").partition("/")
            return q.one(REPO_SELECT + " WHERE o.name = ? AND r.name = ?", (owner, name))
        return None

    def _payloads(
        self, tx: Tx, hook_event: str, event: dict[str, Any], repo: Row | None
    ) -> list[dict[str, Any]]:
        links = self.links
        if repo is not None:
            repository = payloads.repository(tx, links, repo)
        else:  # a deleted repository: what the event still says of it
            repository = payloads.gone_repository(event)
        sender = payloads.person(tx, links, str(event.get("actor") or tx.actor))
        if hook_event == "push":
            made = payloads.push_payloads(tx, links, event, repository, sender)
        elif hook_event == "build_finished":
            made = [payloads.build_payload(tx, links, event, repository, sender)]
        else:
            made = [payloads.repo_payload(hook_event.removeprefix("repo_"), repository, sender)]
        for payload in made:
            payload["created_at"] = tx.now
        return made

    def _insert_delivery(
        self, tx: Tx, hook_id: int, event: str, body: str, redelivery_of: str | None = None
    ) -> str:
        delivery_id = str(uuid.uuid4())
        # seq: one more than the last, which the write lock makes unique.
        tx.run(
            "INSERT INTO webhook_deliveries (id, hook_id, event, body, status, attempts,"
            " next_attempt_at, created_at, redelivery_of, seq) VALUES (?, ?, ?, ?, 'pending',"
            " 0, ?, ?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM webhook_deliveries))",
            (delivery_id, hook_id, event, body, tx.now, tx.now, redelivery_of),
        )
        return delivery_id

    # ---- hooks ------------------------------------------------------------------------

    def add(
        self,
        repo: str | None,
        url: str,
        events: object,
        *,
        secret: str | None = None,
        active: bool = True,
        ping: bool = True,
        actor: str,
        node: str | None = None,
    ) -> NewWebhook:
        """A new hook on `repo` (None: site-wide); the answer carries its secret.

        Raises BadRequest for a URL that is not http(s) (the message says why),
        unknown events or a bad secret, NotFound for an unknown repository,
        Conflict beyond HOOKS_PER_SCOPE_MAX hooks. With `ping`, a `ping`
        delivery is queued at once so the receiver can be checked.
        """
        url = _checked_url(url)
        names = normalize_events(events)
        secret = _checked_secret(new_secret() if secret is None or secret == "" else secret)
        if not isinstance(active, bool):
            raise BadRequest("active must be true or false")
        with self._core.write(actor, node) as tx:
            if repo is None:
                repo_id = None
                count = tx.scalar("SELECT count(*) FROM webhooks WHERE repo_id IS NULL")
            else:
                repo_id = repo_row(tx, repo)["id"]
                count = tx.scalar("SELECT count(*) FROM webhooks WHERE repo_id = ?", (repo_id,))
            if count >= HOOKS_PER_SCOPE_MAX:
                raise Conflict(f"there are {count} hooks here already; remove some first")
            number = tx.insert(
                "INSERT INTO webhooks (repo_id, url, secret, events, active, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (repo_id, url, secret, json.dumps(names), int(active), tx.now, tx.actor),
            )
            hook = _hook_from_row(_hook_row(tx, f"hook-{number}"))
            tx.audit("hook.add", hook.repo, hook=hook.id, url=url, events=names)
            if ping and active:
                self._ping(tx, hook)
        return NewWebhook(**hook.model_dump(), secret=secret)

    def _ping(self, tx: Tx, hook: Webhook) -> str:
        """Queue a `ping` delivery to `hook`, due now; its id."""
        repo = None
        if hook.repo is not None:
            repo = payloads.repository(tx, self.links, repo_row(tx, hook.repo))
        sender = payloads.person(tx, self.links, tx.actor)
        described = {"id": hook.id, "repo": hook.repo, "events": hook.events, "url": hook.url}
        body = encode_body(payloads.ping_payload(described, repo, sender, tx.now))
        self.queued_deliveries += 1
        return self._insert_delivery(tx, _hook_number(hook.id), "ping", body)

    def update(
        self,
        ref: str,
        *,
        url: str | None = None,
        secret: str | None = None,
        events: object = None,
        active: bool | None = None,
        actor: str,
        node: str | None = None,
    ) -> Webhook:
        """Change a hook's URL, secret, events or active flag (None leaves one
        as it is); the hook. Deliveries already made keep their body and go to
        the hook's URL and secret as they are at each attempt. BadRequest for
        a bad value, NotFound for an unknown hook; audited with what changed
        (never the secret itself)."""
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = _checked_url(url)
        if secret is not None:
            changes["secret"] = _checked_secret(secret)
        if events is not None:
            changes["events"] = json.dumps(normalize_events(events))
        if active is not None:
            if not isinstance(active, bool):
                raise BadRequest("active must be true or false")
            changes["active"] = int(active)
        with self._core.write(actor, node) as tx:
            row = _hook_row(tx, ref)
            for column, value in changes.items():
                tx.run(f"UPDATE webhooks SET {column} = ? WHERE id = ?", (value, row["id"]))
            hook = _hook_from_row(_hook_row(tx, ref))
            told = {k: v for k, v in changes.items() if k != "secret"}
            if "events" in told:
                told["events"] = hook.events
            if "active" in told:
                told["active"] = hook.active
            tx.audit(
                "hook.update", hook.repo, hook=hook.id, secret_changed="secret" in changes, **told
            )
            return hook

    def test(self, ref: str, *, actor: str, node: str | None = None) -> Delivery:
        """A test delivery (`ping`) to the hook, due now, whether it is active
        or not; the delivery. NotFound for an unknown hook."""
        with self._core.write(actor, node) as tx:
            hook = _hook_from_row(_hook_row(tx, ref))
            delivery_id = self._ping(tx, hook)
            tx.audit("hook.test", hook.repo, hook=hook.id, delivery=delivery_id)
            made = tx.one("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,))
            assert made is not None
            return self._delivery(tx, made)

    def hooks(self, repo: str | None) -> list[Webhook]:
        """The hooks of `repo`, or the site-wide ones (None), oldest first."""
        with self._core.read() as q:
            if repo is None:
                rows = q.all(_HOOK_SELECT + " WHERE h.repo_id IS NULL ORDER BY h.id")
            else:
                repo_id = repo_row(q, repo)["id"]
                rows = q.all(_HOOK_SELECT + " WHERE h.repo_id = ? ORDER BY h.id", (repo_id,))
            return [_hook_from_row(row) for row in rows]

    def get(self, ref: str) -> Webhook:
        with self._core.read() as q:
            return _hook_from_row(_hook_row(q, ref))

    def remove(self, ref: str, *, actor: str, node: str | None = None) -> Webhook:
        """Delete a hook with its deliveries and their log; return what was removed."""
        with self._core.write(actor, node) as tx:
            hook = _hook_from_row(_hook_row(tx, ref))
            tx.run("DELETE FROM webhooks WHERE id = ?", (_hook_number(ref),))
            tx.audit("hook.remove", hook.repo, hook=hook.id, url=hook.url)
            return hook

    # ---- the delivery log --------------------------------------------------------------

    def _delivery(self, q: Query, row: Row) -> Delivery:
        attempts = q.all(
            "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY number", (row["id"],)
        )
        return Delivery(
            id=row["id"],
            hook=f"hook-{row['hook_id']}",
            event=row["event"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            created_at=row["created_at"],
            redelivery_of=row["redelivery_of"],
            body=row["body"],
            log=[_attempt_from_row(a) for a in attempts],
        )

    def delivery_page(
        self, hook: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Delivery]:
        """One page of a hook's deliveries, newest first, each with its attempts
        (one range of the index by hook and time)."""
        check_limit(limit, DELIVERIES_LIST_MAX)
        key = decode("deliveries", cursor, str, int)
        after = key if key is not None else ("~", 1 << 62)  # "~" sorts after every time
        with self._core.read() as q:
            number = _hook_row(q, hook)["id"]
            rows = q.all(DELIVERIES_PAGE_SQL, (number, *after, limit + 1))
            page = cut(
                rows, limit, "deliveries", lambda r: (r["created_at"], r["seq"]), key is None
            )
            return page.map(lambda row: self._delivery(q, row))

    def deliveries(self, hook: str, limit: int = 50) -> list[Delivery]:
        """A hook's newest deliveries, each with its attempts."""
        return self.delivery_page(hook, limit=limit).items

    def delivery(self, ref: str) -> Delivery:
        with self._core.read() as q:
            row = q.one("SELECT * FROM webhook_deliveries WHERE id = ?", (_delivery_id(ref),))
            if row is None:
                raise NotFound(f"no delivery {ref}")
            return self._delivery(q, row)

    def redeliver(self, ref: str, *, actor: str, node: str | None = None) -> Delivery:
        """A new delivery of the same body to the same hook (its current URL and
        secret), due now. Raises NotFound for an unknown delivery."""
        with self._core.write(actor, node) as tx:
            row = tx.one("SELECT * FROM webhook_deliveries WHERE id = ?", (_delivery_id(ref),))
            if row is None:
                raise NotFound(f"no delivery {ref}")
            hook = _hook_from_row(_hook_row(tx, f"hook-{row['hook_id']}"))
            new_id = self._insert_delivery(
                tx, row["hook_id"], row["event"], row["body"], redelivery_of=row["id"]
            )
            tx.audit(
                "hook.redeliver", hook.repo, hook=hook.id, delivery=row["id"], new_delivery=new_id
            )
            self.queued_deliveries += 1
            made = tx.one("SELECT * FROM webhook_deliveries WHERE id = ?", (new_id,))
            assert made is not None
            return self._delivery(tx, made)

    # ---- the queue (applikant.webhooks.DeliveryQueue, synchronously) --------------------

    def due(self, now: datetime, limit: int) -> list[PendingDelivery]:
        """Pending deliveries due at `now`, the longest waiting first."""
        with self._core.read() as q:
            rows = q.all(
                "SELECT d.id, d.hook_id, d.event, d.body, d.attempts, h.url, h.secret"
                " FROM webhook_deliveries d JOIN webhooks h ON h.id = d.hook_id"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
                " ORDER BY d.next_attempt_at LIMIT ?",
                (format_time(now), limit),
            )
        return [
            PendingDelivery(
                id=r["id"],
                hook_id=f"hook-{r['hook_id']}",
                url=r["url"],
                secret=r["secret"],
                event=r["event"],
                body=r["body"],
                attempts=r["attempts"],
            )
            for r in rows
        ]

    def next_due(self) -> datetime | None:
        """When the next pending delivery falls due (None: nothing pending)."""
        with self._core.read() as q:
            due = q.scalar(
                "SELECT min(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'"
            )
        return None if due is None else datetime.fromisoformat(due.replace("Z", "+00:00"))

    def record_attempt(
        self,
        delivery_id: str,
        attempt: Attempt,
        next_attempt_at: datetime | None,
        *,
        actor: str = "system",
        node: str | None = None,
    ) -> None:
        """Keep an attempt; finish the delivery when `next_attempt_at` is None.
        A delivery removed meanwhile (its hook deleted) is ignored. Not audited:
        the delivery log is the record."""
        with self._core.write(actor, node) as tx:
            row = tx.one("SELECT attempts FROM webhook_deliveries WHERE id = ?", (delivery_id,))
            if row is None:
                return
            number = row["attempts"] + 1
            tx.upsert(
                "webhook_attempts",
                ("delivery_id", "number"),
                {
                    "delivery_id": delivery_id,
                    "number": number,
                    "started_at": format_time(attempt.started_at),
                    "duration": attempt.duration,
                    "outcome": attempt.outcome.value,
                    "status_code": attempt.status_code,
                    "location": attempt.location,
                    "response": attempt.response,
                    "error": attempt.error,
                },
                _ATTEMPT_RESULT,
            )
            if next_attempt_at is None:
                status, due = ("delivered" if attempt.ok else "failed"), None
            else:
                status, due = "pending", format_time(next_attempt_at)
            tx.run(
                "UPDATE webhook_deliveries SET attempts = ?, status = ?,"
                " next_attempt_at = ? WHERE id = ?",
                (number, status, due, delivery_id),
            )

    # ---- retention ---------------------------------------------------------------------

    def prune_deliveries(
        self, before: datetime, *, limit: int = 1000, actor: str = "system"
    ) -> int:
        """Delete deliveries made before `before` that are over (delivered or
        failed), with their attempts: at most `limit` in this one transaction;
        how many were deleted (call again while it is `limit`). Pending
        deliveries are never deleted. Not audited: housekeeping."""
        with self._core.write(actor) as tx:
            doomed = [
                r[0]
                for r in tx.all(
                    "SELECT id FROM webhook_deliveries WHERE created_at < ?"
                    " AND status <> 'pending' ORDER BY created_at LIMIT ?",
                    (format_time(before), limit),
                )
            ]
            if not doomed:
                return 0
            marks = ", ".join("?" for _ in doomed)
            return tx.run(f"DELETE FROM webhook_deliveries WHERE id IN ({marks})", doomed)
