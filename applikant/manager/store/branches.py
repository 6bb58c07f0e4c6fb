"""Protected branches, and the per-ref decision that pre-receive and update hooks ask for.

The rules, checked in this order for each pushed ref:
1. Any ref update needs write access to the repository (check_access).
2. A branch (`refs/heads/X`) matching a protection pattern (fnmatch-style on X,
   where `*` also matches `/`) can never be deleted nor moved by a
   non-fast-forward (force) push, not even by admins: protection exists to stop
   accidents, and an admin who really means it unprotects the branch first.
   When the caller did not determine whether an update is a fast-forward
   (`is_fast_forward` None), a protected branch is refused rather than risked.
3. A matching pattern with `admins_only` lets only users with admin access to the
   repository push to that branch (create or update).
4. Tags (`refs/tags/X`): writers may create them; moving or deleting an existing
   tag needs admin access to the repository, because people and builds rely on
   tags never changing.
5. Any other ref (unprotected branches, `refs/notes/...`): write access suffices,
   force-pushes and deletions included.

Whether an update is a fast-forward is found out by running git (elsewhere);
it is passed in, never guessed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from pydantic import ValidationError

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.names import (
    check_branch_pattern,
    check_object_id,
    check_refname,
    is_zero_id,
)
from applikant.manager.store.access import Resolved, decide, resolve
from applikant.manager.store.core import Part, Row
from applikant.manager.store.rows import repo_row
from applikant.schema.hooks import RefUpdate
from applikant.schema.repos import AccessDecision, ProtectedBranch

PROTECTED_SQL = (
    "SELECT pattern, admins_only FROM protected_branches WHERE repo_id = ? ORDER BY pattern"
)
_RULES_SQL = (
    "SELECT pattern, admins_only, created_at FROM protected_branches"
    " WHERE repo_id = ? AND pattern = ?"
)


def _deny(reason: str, level: Any) -> AccessDecision:
    return AccessDecision(allowed=False, reason=reason, level=level)


def as_ref_update(value: RefUpdate | Mapping[str, Any]) -> RefUpdate:
    if isinstance(value, RefUpdate):
        update = value
    else:
        try:
            update = RefUpdate.model_validate(value)
        except ValidationError as exc:
            raise BadRequest(f"malformed ref update: {exc.errors()[0]['msg']}") from None
    check_refname(update.refname)
    check_object_id(update.old, "old object id")
    check_object_id(update.new, "new object id")
    if is_zero_id(update.old) and is_zero_id(update.new):
        raise BadRequest(f"update of {update.refname} has neither an old nor a new object id")
    return update


def decide_one(
    r: Resolved, allowed: AccessDecision, rules: Sequence[Row], update: RefUpdate
) -> AccessDecision:
    """Apply the branch and tag rules (see the module docstring) to one ref update."""
    level = allowed.level
    is_admin = r.level >= 3
    creating, deleting = is_zero_id(update.old), is_zero_id(update.new)
    ref = update.refname
    if ref.startswith("refs/heads/"):
        branch = ref[len("refs/heads/") :]
        matching = [rule for rule in rules if fnmatchcase(branch, rule["pattern"])]
        if matching:
            pattern = matching[0]["pattern"]
            if deleting:
                return _deny(
                    f"branch {branch} is protected ({pattern!r}): it cannot be deleted", level
                )
            if not creating and update.is_fast_forward is False:
                return _deny(
                    f"branch {branch} is protected ({pattern!r}): "
                    "force-push (non-fast-forward update) refused",
                    level,
                )
            if not creating and update.is_fast_forward is None:
                return _deny(
                    f"branch {branch} is protected ({pattern!r}) and the update "
                    "was not checked for fast-forward; refused",
                    level,
                )
            if not is_admin and any(rule["admins_only"] for rule in matching):
                return _deny(
                    f"branch {branch} is protected ({pattern!r}): only repository "
                    f"admins may push to it, {r.who} has {level} access",
                    level,
                )
    elif ref.startswith("refs/tags/") and not creating and not is_admin:
        tag = ref[len("refs/tags/") :]
        what = "deleted" if deleting else "moved"
        return _deny(
            f"tag {tag} already exists and can only be {what} by a repository admin", level
        )
    return allowed


def _rule(full: str, row: Row) -> ProtectedBranch:
    return ProtectedBranch(
        repo=full,
        pattern=row["pattern"],
        admins_only=bool(row["admins_only"]),
        created_at=row["created_at"],
    )


class Branches(Part):
    """`store.branches`: protected branches, and the decision on each pushed ref."""

    def protect(
        self,
        repo: str,
        pattern: str,
        *,
        actor: str,
        node: str | None = None,
        admins_only: bool = False,
    ) -> ProtectedBranch:
        """Protect branches matching `pattern` on `repo`; an existing rule is updated."""
        pattern = check_branch_pattern(pattern)
        if not isinstance(admins_only, bool):
            raise BadRequest("admins_only must be true or false")
        with self._core.write(actor, node) as tx:
            rrow = repo_row(tx, repo)
            full = f"{rrow['owner']}/{rrow['name']}"
            tx.upsert(
                "protected_branches",
                ("repo_id", "pattern"),
                {
                    "repo_id": rrow["id"],
                    "pattern": pattern,
                    "admins_only": int(admins_only),
                    "created_at": tx.now,
                },
                ("admins_only",),
            )
            row = tx.one(_RULES_SQL, (rrow["id"], pattern))
            assert row is not None
            tx.audit("branch.protect", full, pattern=pattern, admins_only=admins_only)
            tx.event("branch.protected", repo=full, pattern=pattern, admins_only=admins_only)
            return _rule(full, row)

    def unprotect(self, repo: str, pattern: str, *, actor: str, node: str | None = None) -> None:
        """Remove the protection rule with exactly this pattern. Raises NotFound if none."""
        pattern = check_branch_pattern(pattern)
        with self._core.write(actor, node) as tx:
            rrow = repo_row(tx, repo)
            full = f"{rrow['owner']}/{rrow['name']}"
            removed = tx.run(
                "DELETE FROM protected_branches WHERE repo_id = ? AND pattern = ?",
                (rrow["id"], pattern),
            )
            if removed == 0:
                raise NotFound(f"{full} has no protection rule {pattern!r}")
            tx.audit("branch.unprotect", full, pattern=pattern)
            tx.event("branch.unprotected", repo=full, pattern=pattern)

    def rules(self, repo: str) -> list[ProtectedBranch]:
        """The protection rules of `repo`, by pattern."""
        with self._core.read() as q:
            rrow = repo_row(q, repo)
            rows = q.all(
                "SELECT pattern, admins_only, created_at FROM protected_branches"
                " WHERE repo_id = ? ORDER BY pattern",
                (rrow["id"],),
            )
        full = f"{rrow['owner']}/{rrow['name']}"
        return [_rule(full, row) for row in rows]

    def decide(
        self,
        user: str | None,
        repo: str,
        updates: Sequence[RefUpdate | Mapping[str, Any]],
    ) -> list[AccessDecision]:
        """One decision per ref of a push, in order (see the module docstring).

        The user's access and the repository's rules are looked up once for the
        whole push. Raises BadRequest for a malformed ref name or object id.
        """
        checked = [as_ref_update(update) for update in updates]
        with self._core.read() as q:
            resolved = resolve(q, user, repo)
            allowed = decide(resolved, "write")
            if not allowed.allowed:
                return [allowed for _ in checked]
            rules = q.all(PROTECTED_SQL, (resolved.repo_id,))
        return [decide_one(resolved, allowed, rules, update) for update in checked]

    def decide_ref(
        self,
        user: str | None,
        repo: str,
        refname: str,
        old: str,
        new: str,
        is_fast_forward: bool | None = None,
    ) -> AccessDecision:
        """The decision for one ref (the `update` hook's question)."""
        update = {"refname": refname, "old": old, "new": new, "is_fast_forward": is_fast_forward}
        return self.decide(user, repo, [update])[0]


__all__ = ["Branches", "as_ref_update", "decide_one"]
