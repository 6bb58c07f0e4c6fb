"""am, the manager: the cluster's single source of truth.

The pure part (no network) is `store.Store`, a synchronous SQLite store built
from one module per job: `schema` (migrations), `names` and `sshkeys`
(validation), `passwords`, `models` (the service boundary), and the store's parts
`users`, `keys`, `tokens`, `groups`, `repos`, `access`, `branches`, `audit` over `base`.

The daemon (`daemon.setup`, run by `applikant start am`) serves it over the node
layer: `runtime` (the store opened for writing in a worker thread and read-only
on the event loop, authorization), `requests` (argument models), the services
`users_service` (am_user_db), `repos_service` (am_repo_db), `hooks`
(am_hook_api) and the observer (`observer`, am_observer), and `notify` (change
events to subscribers).
"""
