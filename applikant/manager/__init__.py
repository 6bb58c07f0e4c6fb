"""am, the manager: the cluster's single source of truth.

The pure part (no network) is `store.Store`, a synchronous SQLite store built
from one module per job: `schema` (migrations), `names` and `sshkeys`
(validation), `passwords`, `models` (the service boundary), and the store's parts
`users`, `keys`, `groups`, `repos`, `access`, `branches`, `audit` over `base`.
"""
