"""am, the manager: the cluster's single source of truth.

- `store` (no network): `Store`, one database in parts that share one
  connection and one transaction (`store.users`, `store.keys`, `store.repos`,
  `store.access`, `store.branches`, `store.audit`, `store.webhooks`,
  `store.builds`...), over a core (`store.core`: lock, transactions, audit
  entries, change events) and a backend (`store.sqlite`: schema migrations and
  what SQLite spells its own way). Validation helpers: `names`, `sshkeys`,
  `passwords`; errors: `errors`.
- `runtime`: the running manager: the store opened three ways (a writer in a
  worker thread, a reader on the event loop, a bulk reader for listings) and
  who may do what.
- `services`: the global services (am_user_db, am_repo_db, am_hook_api,
  am_builds, am_webhooks, am_observer), one module each, started and
  registered by `services.start`; their arguments and answers are
  applikant.schema.
- `notify` (change events to subscribers), `observer` (what am knows of the
  cluster's nodes), `daemon` (`applikant start am`).
"""
