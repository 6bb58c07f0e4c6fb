"""One request and response schema per operation, shared by am and aw.

Each module holds one of am's global services: the pydantic model of every
method's arguments, the models of its answers, the table of both
(`AM_USER_DB`, `AM_SESSIONS`, `AM_REPO_DB`, `AM_HOOK_API`, `AM_BUILDS`,
`AM_WEBHOOKS`, `AM_OBSERVER`, each `{method: Op(request, answer)}`), and the bodies of aw's
REST API for the same operations:

- `users`: am_user_db (users, SSH keys, API tokens, groups)
- `sessions`: am_sessions (web sessions), and the REST bodies that ask for the
  current password
- `repos`: am_repo_db (repositories, permissions, protected branches, access
  decisions, the audit log)
- `hooks`: am_hook_api; `builds`: am_builds; `webhooks`: am_webhooks;
  `observer`: am_observer
- `base`: the model bases, `parse` (args -> request, errors in words), `Op`

am validates every call with these (applikant.manager.services) and returns
the result models; aw validates its REST bodies with the same models and
documents its API from them (applikant.web.openapi). Neither side defines a
schema of its own.
"""

from .base import SYSTEM, AccessLevel, Body, Mutation, Op, Read, Req, Result, parse

__all__ = ["SYSTEM", "AccessLevel", "Body", "Mutation", "Op", "Read", "Req", "Result", "parse"]
