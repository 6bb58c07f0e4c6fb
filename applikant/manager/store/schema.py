"""am's schema: one history of migrations that both backends run.

`MIGRATIONS[i]` takes the schema from version i to i+1. Migrations are only
ever appended: a released one is never edited. Each is run by the backend in one
transaction together with its version bump (SQLite: `PRAGMA user_version`;
PostgreSQL: the `applikant_schema` table), so a crash leaves a whole version.

A migration is one of:
- a string of portable DDL: what SQLite and PostgreSQL both accept once the
  PostgreSQL backend has mapped SQLite's type words (store/postgres.py,
  `translate`): `INTEGER PRIMARY KEY` (a row id the database assigns),
  `INTEGER`, `REAL`, `TEXT`, `TEXT ... COLLATE NOCASE` (compared and unique
  case-insensitively, for ASCII names), `WITHOUT ROWID` (a hint PostgreSQL
  drops), partial indexes, `ALTER TABLE ... ADD COLUMN`. Nothing else of one
  dialect: no `rowid`, no triggers, no PRAGMA;
- a `Step`: portable DDL plus statements each dialect spells its own way (a
  trigger, a backfill that reads SQLite's rowid), run after the portable part;
- a callable `step(conn)` for a data migration in Python, given the backend's
  connection (statements with the backend's own placeholders).

Shape of the data (version 1):
- `owners` is the one namespace of logins and group names (both own repositories),
  unique case-insensitively. A user's or group's id is its owner id, so grants can
  name either through one foreign key.
- `repo_perms` holds explicit grants (1 read, 2 write, 3 admin) to owners.
- `audit_log` refuses UPDATE and DELETE (and, in PostgreSQL, TRUNCATE) through
  triggers: append-only.

Version 2 adds `audit_log.event_id` (unique when set) for idempotent pushes.
Version 3 adds `api_tokens`: personal API tokens, kept as SHA-256 hashes only.
Version 4 adds `builds` (the build queue and its history) and `build_logs`.
Version 5 adds `webhooks`, `webhook_deliveries` and `webhook_attempts`.
Version 6 adds `webhook_deliveries.seq`: the order deliveries were made in
(it was SQLite's rowid, which PostgreSQL has no equivalent of).
Version 7 adds `audit_log.lease`: the lease epoch of the am that wrote the
entry (PostgreSQL with a standby am; NULL otherwise), so that fencing can be
checked in the database itself.
Version 8 adds `sessions`: web sessions, kept as SHA-256 hashes of their secrets.
Version 9 numbers builds per repository (`builds.number`, `repos.builds_made`),
and indexes what the commit pages, the badges and the pruning look up.
Version 10 adds the indexes the paged lists read in order (store/paging.py).

Every lookup on the hot path (check_access, key by fingerprint) has an index;
tests check the query plans.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from applikant.manager.errors import SchemaTooNew

__all__ = ["MIGRATIONS", "Migration", "Step", "reached"]


def reached(version: int, target: int) -> bool:
    """Whether a database at schema `version` needs no step to reach `target`.
    SchemaTooNew when it is newer: this am refuses to guess at a schema it has
    never seen (both backends open a database through this)."""
    if version > target:
        raise SchemaTooNew(
            f"the database is at schema version {version}, but this am knows only "
            f"up to {target}; upgrade applikant or restore a matching backup"
        )
    return version == target


@dataclass(frozen=True)
class Step:
    """A migration with dialect parts: `sql` (portable) runs first, then the
    statements of the backend's own dialect (`sqlite` or `postgresql`)."""

    sql: str
    sqlite: str = ""
    postgresql: str = ""

    def dialect(self, name: str) -> str:
        return str(getattr(self, name))


Migration = str | Step | Callable[[Any], None]

_V1_TABLES = """
CREATE TABLE owners (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL COLLATE NOCASE UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'group'))
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY REFERENCES owners(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at TEXT NOT NULL
);

CREATE TABLE groups (
    id INTEGER PRIMARY KEY REFERENCES owners(id) ON DELETE CASCADE,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_by_user ON group_members(user_id, group_id);

CREATE TABLE ssh_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    key_type TEXT NOT NULL,
    bits INTEGER NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX ssh_keys_by_user ON ssh_keys(user_id);

CREATE TABLE repos (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES owners(id),
    name TEXT NOT NULL COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    is_public INTEGER NOT NULL DEFAULT 0 CHECK (is_public IN (0, 1)),
    default_branch TEXT NOT NULL DEFAULT 'main',
    created_at TEXT NOT NULL,
    UNIQUE (owner_id, name)
);

CREATE TABLE repo_perms (
    repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    grantee_id INTEGER NOT NULL REFERENCES owners(id) ON DELETE CASCADE,
    level INTEGER NOT NULL CHECK (level IN (1, 2, 3)),
    PRIMARY KEY (repo_id, grantee_id)
) WITHOUT ROWID;
CREATE INDEX repo_perms_by_grantee ON repo_perms(grantee_id, repo_id);

CREATE TABLE protected_branches (
    id INTEGER PRIMARY KEY,
    repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    admins_only INTEGER NOT NULL DEFAULT 0 CHECK (admins_only IN (0, 1)),
    created_at TEXT NOT NULL,
    UNIQUE (repo_id, pattern)
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    node TEXT,
    action TEXT NOT NULL,
    repo TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_time ON audit_log(time);
CREATE INDEX audit_by_actor ON audit_log(actor, id);
CREATE INDEX audit_by_action ON audit_log(action, id);
CREATE INDEX audit_by_repo ON audit_log(repo, id);
"""

# The audit log is append-only: each database refuses changes its own way.
_V1 = Step(
    _V1_TABLES,
    sqlite="""
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
""",
    postgresql="""
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
""",
)

# Version 2: a push delivered twice (a spooled post-receive event whose answer was
# lost) is recorded once: the hook's event id is unique among audit entries.
_V2 = """
ALTER TABLE audit_log ADD COLUMN event_id TEXT;
CREATE UNIQUE INDEX audit_by_event ON audit_log(event_id) WHERE event_id IS NOT NULL;
"""

# Version 3: personal API tokens (aw's REST API and HTTP clone). Only the SHA-256
# of a token is kept; a lookup by that hash (its unique index) finds the token.
_V3 = """
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT
);
CREATE INDEX api_tokens_by_user ON api_tokens(user_id, id);
"""

# Version 4: the build queue (store/builds.py). A build's number is its id (`#42`);
# (event_id, ref) makes enqueueing a push's builds idempotent; log lines are
# stored as they come, numbered per build from 1.
_V4 = """
CREATE TABLE builds (
    id INTEGER PRIMARY KEY,
    repo_id INTEGER REFERENCES repos(id) ON DELETE SET NULL,
    repo TEXT NOT NULL,
    ref TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
        ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed-out')),
    queued_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    log_size INTEGER NOT NULL DEFAULT 0,
    log_truncated INTEGER NOT NULL DEFAULT 0 CHECK (log_truncated IN (0, 1)),
    log_lines INTEGER NOT NULL DEFAULT 0,
    pusher TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    runner TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    event_id TEXT,
    UNIQUE (event_id, ref)
);
CREATE INDEX builds_by_status ON builds(status, id);
CREATE INDEX builds_by_repo ON builds(repo_id, id);

CREATE TABLE build_logs (
    build_id INTEGER NOT NULL REFERENCES builds(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
) WITHOUT ROWID;
"""

# Version 5: webhooks (store/webhooks.py). A hook with no repo_id is site-wide;
# a delivery keeps its JSON body (every attempt signs the same bytes) and is due
# at next_attempt_at while pending; each attempt is kept in its log.
_V5 = """
CREATE TABLE webhooks (
    id INTEGER PRIMARY KEY,
    repo_id INTEGER REFERENCES repos(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX webhooks_by_repo ON webhooks(repo_id, id);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    hook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    redelivery_of TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries(hook_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    duration REAL NOT NULL,
    outcome TEXT NOT NULL,
    status_code INTEGER,
    location TEXT,
    response TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
"""

# Version 6: deliveries made in one transaction share created_at; `seq` keeps the
# order they were made in (store/webhooks.py numbers them max + 1 under the write
# lock). Existing SQLite rows take their rowid, which was that order.
_V6 = Step(
    """
ALTER TABLE webhook_deliveries ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX webhook_deliveries_by_seq ON webhook_deliveries(seq);
""",
    sqlite="UPDATE webhook_deliveries SET seq = rowid;",
)

# Version 7: the lease epoch an entry was written under (see the module docstring).
_V7 = """
ALTER TABLE audit_log ADD COLUMN lease INTEGER;
"""

# Version 8: web sessions (store/sessions.py), so that every aw agrees on them and
# they can be ended. Only the SHA-256 of a session's secret is kept; times are
# core.format_time text, so expiry compares as text.
_V8 = """
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    authenticated_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    idle_timeout INTEGER NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_by_user ON sessions(user_id, id);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
"""

# Version 9: builds are numbered per repository (`alice/app #12`), existing ones
# in the order they were queued; `repos.builds_made` is the last number given,
# so pruning old builds never hands a number out twice. Builds of a deleted
# repository (repo_id NULL) keep their numbers, counted by the name they had.
# Indexes: a commit's builds (commit pages), a branch's latest (badges), and
# deliveries by age (pruning).
_V9 = """
ALTER TABLE builds ADD COLUMN number INTEGER NOT NULL DEFAULT 0;
UPDATE builds SET number = (SELECT count(*) FROM builds b2
    WHERE b2.repo_id = builds.repo_id AND b2.id <= builds.id) WHERE repo_id IS NOT NULL;
UPDATE builds SET number = (SELECT count(*) FROM builds b2
    WHERE b2.repo_id IS NULL AND b2.repo = builds.repo AND b2.id <= builds.id)
    WHERE repo_id IS NULL;
CREATE UNIQUE INDEX builds_by_repo_number ON builds(repo_id, number);
CREATE INDEX builds_by_commit ON builds(repo_id, commit_id, id);
CREATE INDEX builds_by_ref ON builds(repo_id, ref, id);
ALTER TABLE repos ADD COLUMN builds_made INTEGER NOT NULL DEFAULT 0;
UPDATE repos SET builds_made = (SELECT COALESCE(MAX(b.number), 0) FROM builds b
    WHERE b.repo_id = repos.id);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries(created_at);
"""

# Version 10: the indexes of the paged lists (paging.py, listing.py), each read as
# one range in the list's order: repositories by id among one owner's and among
# the public ones (the arms of "what a user may read"), users and groups by name,
# a hook's deliveries by (time, seq), which replaces the index by hook and time,
# and audit entries by repository and action (the audit filtered by both, and a
# user's pushes counted repository by repository rather than among all pushes).
_V10 = """
CREATE INDEX IF NOT EXISTS repos_by_owner ON repos(owner_id, id);
CREATE INDEX IF NOT EXISTS repos_public ON repos(is_public, id);
CREATE INDEX IF NOT EXISTS owners_by_kind ON owners(kind, name);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_hook_seq
    ON webhook_deliveries(hook_id, created_at, seq);
DROP INDEX IF EXISTS webhook_deliveries_by_hook;
CREATE INDEX IF NOT EXISTS audit_by_repo_action ON audit_log(repo, action, id);
"""

MIGRATIONS: list[Migration] = [_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10]
