"""Which backend `[am] db` names: a `postgresql://` URL, or a SQLite file.

psycopg is imported only when a URL asks for it, so an am on SQLite (and every
tool that opens its file) never pays for it.
"""

from __future__ import annotations

from applikant.manager.store.backend import Backend
from applikant.manager.store.sqlite import SqliteBackend

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(path: str) -> bool:
    """Whether `path` names a PostgreSQL database rather than a SQLite file."""
    return str(path).startswith(URL_SCHEMES)


def backend_for(path: str, *, lease: int | None = None, timeout: float = 5.0) -> Backend:
    """A backend for `path`: PostgreSQL for a URL (fenced by `lease` when given,
    noticing a dead server within `timeout` s), SQLite otherwise."""
    if is_url(path):
        from applikant.manager.store.postgres import PostgresBackend

        return PostgresBackend(lease=lease, timeout=timeout)
    return SqliteBackend()


def redact(path: str) -> str:
    """`path` fit for a log line: a URL without its password."""
    import re

    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", str(path))
