"""The JSON bodies of webhook deliveries, shaped as Gitea and GitHub shape
theirs, so that receivers written for either read them (`event` is ours).

- `push`: one payload per updated ref: `ref`, `before`, `after`, `created`,
  `deleted`, `compare_url`, `commits[]` (the newest 20 the git host
  described, oldest first: `id`, `message`, `timestamp`, `url`,
  `author`/`committer` {`name`, `email`, `username`}, `added`, `removed`,
  `modified`), `total_commits`, `head_commit`, `repository`, `pusher`,
  `sender`, and ours: `push_id` (the push's event id).
- `repo_created` / `repo_deleted`: `action` (created, deleted),
  `repository`, `sender` (Gitea's repository event).
- `build_finished`: `action` (completed), `build` {`id`, `number`, `url`,
  `result`, `reason`, `exit_code`, `ref`, `commit`, times, `pusher`},
  `repository`, `sender`.
- `ping` (a new hook, or its test): `hook`, `zen`, `repository` when the hook
  belongs to one, `sender`.

`repository`: `id`, `name`, `full_name`, `owner`, `description`, `private`,
`fork`, `html_url`, `clone_url`, `ssh_url`, `default_branch`, `created_at`.
A person (`owner`, `pusher`, `sender`): `id` (a number), `login` and
`username`, `name`, `full_name`, `email` (empty: emails are shown to site
admins only), `html_url`. The admin command line and am itself are people
with id 0 and their actor as login (`cli:root`, `system`). A commit author's
`username` is the login of the account with that email, if one has it.
URLs are under `[aw] public_url` (applikant.links).
"""

from __future__ import annotations

from typing import Any

from applikant.links import Links
from applikant.manager.store.core import Query, Row
from applikant.manager.store.rows import USER_SELECT, parse_id

__all__ = ["build_payload", "person", "ping_payload", "push_payloads", "repo_payload", "repository"]

_ZERO = frozenset({"0" * 40, "0" * 64})


def person(q: Query, links: Links, actor: str) -> dict[str, Any]:
    """A person as Gitea's `User` (and GitHub's sender) shows one."""
    number = parse_id(actor, "user")
    row = None if number is None else q.one(USER_SELECT + " WHERE u.id = ?", (number,))
    if row is None:
        return _person(0, actor, "", "")
    return _person(int(row["id"]), row["login"], row["display_name"], links.owner(row["login"]))


def _person(number: int, login: str, full_name: str, url: str) -> dict[str, Any]:
    return {
        "id": number,
        "login": login,
        "username": login,
        "name": login,
        "full_name": full_name,
        "email": "",
        "html_url": url,
    }


def repository(q: Query, links: Links, repo: Row) -> dict[str, Any]:
    """A repository as Gitea's `Repository` shows one."""
    full = f"{repo['owner']}/{repo['name']}"
    owner = q.one("SELECT id, name FROM owners WHERE id = ?", (repo["owner_id"],))
    display = ""
    if owner is not None and repo["owner_kind"] == "user":
        row = q.one("SELECT display_name FROM users WHERE id = ?", (owner["id"],))
        display = row["display_name"] if row is not None else ""
    return {
        "id": int(repo["id"]),
        "name": repo["name"],
        "full_name": full,
        "owner": _person(int(repo["owner_id"]), repo["owner"], display, links.owner(repo["owner"])),
        "description": repo["description"],
        "private": not repo["is_public"],
        "fork": False,
        "html_url": links.repo(full),
        "clone_url": links.http_clone(full),
        "ssh_url": links.ssh_clone(full),
        "default_branch": repo["default_branch"],
        "created_at": repo["created_at"],
    }


def gone_repository(event: dict[str, Any]) -> dict[str, Any]:
    """What a deleted repository's event still says of it."""
    full = str(event.get("repo") or "")
    number = parse_id(str(event.get("id") or ""), "repo")
    return {"id": number or 0, "full_name": full, "name": full.partition("/")[2]}


def _usernames(q: Query, emails: set[str]) -> dict[str, str]:
    """Logins of the accounts with these emails (lower-cased), in one query."""
    wanted = sorted(e.lower() for e in emails if e)[:100]
    if not wanted:
        return {}
    marks = ", ".join("?" for _ in wanted)
    rows = q.all(
        USER_SELECT + f" WHERE lower(u.email) IN ({marks}) ORDER BY u.id DESC", tuple(wanted)
    )
    return {row["email"].lower(): row["login"] for row in rows}


def _commit(links: Links, full: str, c: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    def who(p: dict[str, Any]) -> dict[str, str]:
        email = str(p.get("email", ""))
        return {
            "name": str(p.get("name", "")),
            "email": email,
            "username": names.get(email.lower(), ""),
        }

    return {
        "id": c["id"],
        "message": c["message"],
        "timestamp": c["timestamp"],
        "url": links.commit(full, c["id"]),
        "author": who(c.get("author") or {}),
        "committer": who(c.get("committer") or {}),
        "added": list(c.get("added") or []),
        "removed": list(c.get("removed") or []),
        "modified": list(c.get("modified") or []),
    }


def push_payloads(
    q: Query, links: Links, event: dict[str, Any], repo: dict[str, Any], sender: dict[str, Any]
) -> list[dict[str, Any]]:
    """One push payload per ref of a `repo.pushed` event."""
    full = repo["full_name"]
    refs = [r for r in event.get("refs", []) if isinstance(r, dict)]
    emails = {
        str((c.get(side) or {}).get("email", ""))
        for r in refs
        for c in r.get("commits") or []
        for side in ("author", "committer")
    }
    names = _usernames(q, emails)
    out = []
    for r in refs:
        before, after = str(r.get("old")), str(r.get("new"))
        commits = [_commit(links, full, c, names) for c in r.get("commits") or []]
        head = r.get("head_commit")
        head_commit = commits[-1] if commits else None
        if head_commit is None and isinstance(head, dict):
            head_commit = _commit(links, full, head, names)
        if before in _ZERO:
            compare = links.commit(full, after) if after not in _ZERO else ""
        else:
            compare = "" if after in _ZERO else links.compare(full, before, after)
        payload: dict[str, Any] = {
            "event": "push",
            "ref": r.get("ref"),
            "before": before,
            "after": after,
            "created": before in _ZERO,
            "deleted": after in _ZERO,
            "compare_url": compare,
            "commits": commits,
            "total_commits": int(r.get("total_commits") or len(commits)),
            "head_commit": head_commit,
            "repository": repo,
            "pusher": sender,
            "sender": sender,
        }
        if event.get("event_id"):
            payload["push_id"] = event["event_id"]
        out.append(payload)
    return out


def repo_payload(action: str, repo: dict[str, Any], sender: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": f"repo_{action}",
        "action": action,
        "repository": repo,
        "sender": sender,
    }


def build_payload(
    q: Query, links: Links, event: dict[str, Any], repo: dict[str, Any], sender: dict[str, Any]
) -> dict[str, Any]:
    """A finished build: its result, why, and where to read its log."""
    number = parse_id(str(event.get("build") or ""), "build") or 0
    row = q.one("SELECT * FROM builds WHERE id = ?", (number,))
    full = repo.get("full_name") or str(event.get("repo") or "")
    build: dict[str, Any] = {
        "id": event.get("build"),
        "number": event.get("number"),
        "url": links.build(full, int(event.get("number") or 0)),
        "result": event.get("status"),
        "status": event.get("status"),
        "ref": event.get("ref"),
        "commit": event.get("commit"),
        "attempt": event.get("attempt"),
    }
    if row is not None:
        pusher = None if row["pusher"] is None else person(q, links, row["pusher"])
        build.update(
            reason=row["reason"],
            exit_code=row["exit_code"],
            queued_at=row["queued_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            pusher=pusher,
        )
    return {
        "event": "build_finished",
        "action": "completed",
        "build": build,
        "repository": repo,
        "sender": sender,
    }


def ping_payload(
    hook: dict[str, Any], repo: dict[str, Any] | None, sender: dict[str, Any], now: str
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event": "ping",
        "created_at": now,
        "hook_id": hook["id"],
        "hook": hook,
        "zen": "Keep it logically awesome.",
        "sender": sender,
    }
    if repo is not None:
        payload["repository"] = repo
    return payload
