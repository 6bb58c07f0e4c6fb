"""A throwaway PostgreSQL server for tests and benchmarks: `initdb` into a
temporary directory, run as an unprivileged user (`nobody` when we are root:
the server refuses to run as root), listening on a free loopback port, with
trust authentication for the one role `applikant` (its superuser). Nothing of
the machine's own PostgreSQL installation is used but its binaries.

    server = PgServer.start()               # or PgServer(dir, host, port).start()
    url = server.create_database()          # a fresh, empty database: its URL
    ...
    server.stop()                           # pg_ctl stop -m fast, directory removed

`unavailable()` says why no server can be started here (None when one can):
the binaries are missing (`apt-get install postgresql`, which `make test`
does as root).

Durability settings are relaxed (fsync off) for speed: what is tested is the
store's behaviour, not the disk's.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from applikant import procs

ROLE = "applikant"
#: Who runs the server when we are root.
UNPRIVILEGED = "nobody"
_counter = itertools.count(1)


def bindir() -> Path | None:
    """The newest installed server's bin directory (Debian's layout), or what is on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    return None


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    if bindir() is None:
        how = "make test installs it as root" if os.geteuid() != 0 else "apt-get install postgresql"
        return f"the PostgreSQL server is not installed ({how})"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed in this Python (make venv)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(UNPRIVILEGED)
        except KeyError:
            return f"there is no user {UNPRIVILEGED} to run PostgreSQL as"
    return None


def _as_user() -> list[str]:
    """The prefix that runs a server command as the unprivileged user."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", UNPRIVILEGED, "--"]


class PgServer:
    """One server; see the module docstring."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.host = host
        self.port = port or procs.free_port()
        self.bin = bindir()
        if self.bin is None:
            raise RuntimeError(unavailable() or "no PostgreSQL")
        self._template: str | None = None

    @classmethod
    def start_new(cls, host: str = "127.0.0.1", port: int | None = None) -> PgServer:
        """A server in a new temporary directory (readable by the server's user)."""
        return cls(new_directory(), host, port).start()

    # ---- the server -------------------------------------------------------------

    def initdb(self) -> None:
        """Make the cluster (once): UTF-8, C collation, trust for the one role."""
        if (self.data / "PG_VERSION").exists():
            return
        self._run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                ROLE,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        # The server listens on one test address only (loopback, or a test
        # namespace's): every client there may connect, as initdb's -A says.
        with open(self.data / "pg_hba.conf", "a", encoding="utf-8") as f:
            f.write("host all all 0.0.0.0/0 trust\n")

    def server_args(self) -> list[str]:
        """`postgres` settings: this address and port, the socket in our directory."""
        return [
            "-c",
            f"listen_addresses={self.host}",
            "-p",
            str(self.port),
            "-c",
            f"unix_socket_directories={self.dir}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]

    def argv(self) -> list[str]:
        """The server in the foreground (for a process someone else tracks)."""
        return [*_as_user(), str(self.bin / "postgres"), "-D", str(self.data), *self.server_args()]

    def start(self) -> PgServer:
        """initdb, then pg_ctl start (waiting until it accepts connections)."""
        self.initdb()
        options = " ".join(self.server_args())
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ]
        )
        return self

    def stop(self, remove: bool = True) -> None:
        """pg_ctl stop -m fast; the directory removed."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [
                    *_as_user(),
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                timeout=60,
            )
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    def _run(self, argv: list[str]) -> None:
        r = subprocess.run([*_as_user(), *argv], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({r.returncode}): {r.stderr.strip()[-2000:]}\n"
                f"{self.log_text()[-2000:]}"
            )

    # ---- databases ----------------------------------------------------------------

    def url(self, database: str = "postgres", host: str | None = None) -> str:
        return f"postgresql://{ROLE}@{host or self.host}:{self.port}/{database}"

    def local_url(self, database: str = "postgres") -> str:
        """The URL through the server's Unix socket (in our directory): it works
        from any network namespace of this machine."""
        return f"postgresql://{ROLE}@/{database}?host={self.dir}&port={self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the server takes sessions: a server started in the foreground
        listens before it has finished starting up (it answers "the database
        system is starting up" meanwhile)."""
        import psycopg

        from harness.wait import wait_until

        def ready() -> bool:
            try:
                psycopg.connect(self.local_url(), autocommit=True, connect_timeout=5).close()
            except psycopg.OperationalError:
                return False
            return True

        wait_until(ready, timeout=timeout, what="PostgreSQL to take sessions")

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """One statement in its own session (CREATE DATABASE cannot be in a transaction)."""
        import psycopg

        with psycopg.connect(self.local_url(database), autocommit=True) as conn:
            cur = conn.execute(statement)
            return list(cur.fetchall()) if cur.description else []

    def create_database(self, name: str | None = None, *, migrated: bool = False) -> str:
        """A new database (from a template that is already migrated to am's
        current schema when `migrated`): its URL."""
        name = name or f"t{os.getpid()}_{next(_counter)}"
        template = self.migrated_template() if migrated else "template0"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def drop_database(self, url_or_name: str) -> None:
        name = url_or_name.rsplit("/", 1)[-1]
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def migrated_template(self) -> str:
        """A database with am's schema, made once: copying it is quicker than migrating."""
        if self._template is None:
            from applikant.manager.store import Store

            name = f"applikant_template_{os.getpid()}"
            self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
            Store(self.local_url(name)).close()
            self._template = name
        return self._template


def new_directory() -> Path:
    """A temporary directory the unprivileged user can work in (root's pytest
    directories are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="applikant-pg-"))
    os.chmod(directory, 0o755)
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED)
        os.chown(directory, user.pw_uid, user.pw_gid)
    return directory
