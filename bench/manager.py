"""am's hot paths from another node, as the store grows: check_access calls/s and
p50/p99 latency with 10, 1,000 and 100,000 users + keys + repos, and pre-receive
decisions/s for a push of 1 and of 100 refs; and how long `list_repos` takes
(one page of 100, as a site admin would list them, and what one user can read).

For each size: a fresh SQLite file (or, with `--store postgresql`, a fresh
database on a PostgreSQL server started here, harness/postgres.py) is filled,
in one transaction (with the store's own schema and migrations; far faster
than 300,000 acknowledged writes through am), then a portmapper and am start
as real processes, and a client node process (`--client`) measures: sequential
calls for latency, 16 concurrent callers for throughput, durable writes (a
push's post-receive record), pushes to a repository with a protected `main`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from typing import Any

from applikant import envconfig, procs
from applikant.node import blocking
from applikant.node.errors import DistError
from harness.wait import wait_until

from . import common

SIZES = (10, 1_000, 100_000)
SECONDS = 2.0  # per throughput measurement
LATENCY_CALLS = 3000
NOW = "2024-01-01T00:00:00.000000Z"
ZERO = "0" * 40


# ---- filling the store --------------------------------------------------------


def _key_line(rng: random.Random) -> tuple[str, str]:
    def ssh_string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    fp = "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}", fp


def rows(n: int) -> list[tuple[str, tuple[str, ...], Any]]:
    """n users (u1..), each with a key and a repo (uI/repo, protected main); groups of
    ten users (gJ) with read on their members' repos; each repo grants the next user
    write. As (table, columns, rows) for either backend."""
    rng = random.Random(n)
    groups = max(1, n // 10)
    keys = (_key_line(rng) for _ in range(n))
    return [
        ("owners", ("id", "name", "kind"), ((i, f"u{i}", "user") for i in range(1, n + 1))),
        (
            "users",
            ("id", "display_name", "email", "created_at"),
            ((i, f"User {i}", f"u{i}@example.org", NOW) for i in range(1, n + 1)),
        ),
        (
            "owners",
            ("id", "name", "kind"),
            ((n + j, f"g{j}", "group") for j in range(1, groups + 1)),
        ),
        (
            "groups",
            ("id", "description", "created_at"),
            ((n + j, "", NOW) for j in range(1, groups + 1)),
        ),
        (
            "group_members",
            ("group_id", "user_id"),
            ((n + 1 + (i - 1) // 10, i) for i in range(1, n + 1)),
        ),
        (
            "ssh_keys",
            ("user_id", "title", "key_type", "bits", "fingerprint", "public_key", "created_at"),
            ((i, "k", "ssh-ed25519", 256, fp, line, NOW) for i, (line, fp) in enumerate(keys, 1)),
        ),
        (
            "repos",
            ("id", "owner_id", "name", "description", "is_public", "default_branch", "created_at"),
            ((i, i, "repo", "", int(i % 7 == 0), "main", NOW) for i in range(1, n + 1)),
        ),
        (
            "repo_perms",
            ("repo_id", "grantee_id", "level"),
            ((i, i % n + 1, 2) for i in range(1, n + 1) if i % n + 1 != i),
        ),
        (
            "repo_perms",
            ("repo_id", "grantee_id", "level"),
            ((i, n + 1 + (i - 1) // 10, 1) for i in range(1, n + 1)),
        ),
        (
            "protected_branches",
            ("repo_id", "pattern", "admins_only", "created_at"),
            ((i, "main", 0, NOW) for i in range(1, n + 1)),
        ),
    ]


def fill(path: str, n: int) -> None:
    """The store at `path` (a SQLite file or a PostgreSQL URL) with `rows(n)`, in one
    transaction, after the store's own migrations made the schema."""
    from applikant.manager.store import Store
    from applikant.manager.store.engines import is_url

    Store(path).close()  # the schema, by the store's own migrations
    if is_url(path):
        _fill_postgres(path, n)
        return
    from applikant.manager.store.sqlite import connect

    conn = connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for table, columns, values in rows(n):
        marks = ", ".join("?" for _ in columns)
        conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _fill_postgres(url: str, n: int) -> None:
    """COPY, then the identity sequences moved past the ids given, and statistics."""
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, columns, values in rows(n):
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        for table in ("owners", "repos"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def queries(n: int, count: int = 1000) -> list[dict[str, Any]]:
    """A mix like real traffic: owners, grantees, group readers, strangers."""
    rng = random.Random(7)
    out = []
    for _ in range(count):
        i = rng.randint(1, n)
        kind = rng.random()
        if kind < 0.4:
            user, access = i, "write"  # owner
        elif kind < 0.6:
            user, access = i % n + 1, "write"  # direct grant
        elif kind < 0.8:
            user, access = (i - 1) // 10 * 10 + 1, "read"  # via group
        else:
            user, access = rng.randint(1, n), "read"  # mostly denied
        out.append({"user": f"user-{user}", "repo": f"u{i}/repo", "access": access})
    return out


# ---- the client node (its own process) ------------------------------------------


async def _rate(
    node: Any, method: str, args_list: list[Any], callers: int, service: str = "am_repo_db"
) -> float:
    import trio

    count = 0
    deadline = trio.current_time() + SECONDS

    async def caller(offset: int) -> None:
        nonlocal count
        i = offset
        while trio.current_time() < deadline:
            await node.call(service, method, args_list[i % len(args_list)])
            i += 1
            count += 1

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for c in range(callers):
            nursery.start_soon(caller, c * 97)
    return count / (time.perf_counter() - start)


def _push(n: int, refs: int, user: int) -> dict[str, Any]:
    rng = random.Random(refs)
    updates = [{"ref": "refs/heads/main", "old": "1" * 40, "new": "2" * 40, "ff": True}]
    for k in range(refs - 1):
        updates.append(
            {
                "ref": f"refs/heads/topic/{k}",
                "old": ZERO,
                "new": rng.randbytes(20).hex(),
                "ff": None,
            }
        )
    return {
        "hook": "pre-receive",
        "repo": f"u{user}/repo",
        "user": f"user-{user}",
        "node": "af@bench",
        "refs": updates,
    }


async def _writes(node: Any, n: int) -> dict[str, float]:
    """Durable writes/s: post-receive records of a 1-ref push (an audit entry
    each, committed before the answer), from 1 caller and from 16."""
    import itertools
    import uuid

    import trio

    counter = itertools.count()

    def record() -> dict[str, Any]:
        k = next(counter)
        user = k % n + 1
        return {
            "hook": "post-receive",
            "repo": f"u{user}/repo",
            "user": f"user-{user}",
            "node": "af@bench",
            "event_id": str(uuid.uuid4()),
            "refs": [{"ref": "refs/heads/main", "old": "1" * 40, "new": "2" * 40, "ff": True}],
        }

    async def rate(callers: int) -> float:
        count = 0
        deadline = trio.current_time() + SECONDS

        async def caller() -> None:
            nonlocal count
            while trio.current_time() < deadline:
                answer = await node.call("am_hook_api", "handle_hook", record())
                assert answer["ok"], answer
                count += 1

        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(callers):
                nursery.start_soon(caller)
        return count / (time.perf_counter() - start)

    return {"writes_per_s": await rate(1), "writes_per_s_16": await rate(16)}


async def _listing(node: Any, n: int) -> dict[str, float]:
    """Median milliseconds of one `list_repos` call (a page of 100): the site's,
    and one user's view."""
    calls = max(3, min(50, 20_000 // n))
    out = {}
    for key, args in (("list_repos_ms", {}), ("list_repos_user_ms", {"actor": "user-1"})):
        times = []
        for _ in range(calls + 1):
            t0 = time.perf_counter()
            repos = await node.call("am_repo_db", "list_repos", args)
            times.append(time.perf_counter() - t0)
        assert repos["items"] and "full_name" in repos["items"][0]
        out[key] = common.median(times[1:]) * 1e3
    return out


async def client(name: str, n: int) -> None:
    import trio

    from applikant.node.node import open_node

    raw = envconfig.load_raw()
    async with open_node(name, envconfig.cookie(raw), envconfig.dist_settings(raw)) as node:
        await node.connect(envconfig.am_node(raw))
        await node.sync()
        qs = queries(n)
        for q in qs[:500]:  # warm up: links, caches, code paths
            await node.call("am_repo_db", "check_access", q)
        latencies = []
        for i in range(LATENCY_CALLS):
            t0 = time.perf_counter()
            answer = await node.call("am_repo_db", "check_access", qs[i % len(qs)])
            latencies.append(time.perf_counter() - t0)
        assert isinstance(answer, dict) and "allowed" in answer
        allowed = 0
        for q in qs[:200]:
            allowed += (await node.call("am_repo_db", "check_access", q))["allowed"]
        result = {
            "p50_us": common.percentile(latencies, 0.5) * 1e6,
            "p99_us": common.percentile(latencies, 0.99) * 1e6,
            "seq_calls_per_s": await _rate(node, "check_access", qs, 1),
            "calls_per_s": await _rate(node, "check_access", qs, 16),
            "allowed_share": allowed / 200,
        }
        result.update(await _listing(node, n))
        result.update(await _writes(node, n))
        for refs in (1, 100):
            pushes = [_push(n, refs, random.Random(k).randint(1, n)) for k in range(50)]
            first = await node.call("am_hook_api", "handle_hook", pushes[0])
            assert first["ok"], first
            per_s = await _rate(node, "handle_hook", pushes, 1, service="am_hook_api")
            result[f"pushes_per_s_{refs}"] = per_s
            result[f"decisions_per_s_{refs}"] = per_s * refs
        print(json.dumps(result), flush=True)
        await trio.lowlevel.checkpoint()


# ---- one size, end to end --------------------------------------------------------


def _wait_for_am(env: dict[str, str], am: procs.Proc, timeout: float = 60.0) -> None:
    raw = envconfig.load_raw(env["APPLIKANT_CONFIG"])
    cookie, settings = envconfig.cookie(raw), envconfig.dist_settings(raw)

    def up() -> bool:
        try:
            blocking.call(
                "am@localhost", cookie, "am_repo_db", "counts", {}, settings=settings, timeout=5.0
            )
            return True
        except DistError:
            if not am.alive():
                raise RuntimeError(f"am exited:\n{am.log_text()[-2000:]}") from None
            return False

    try:
        wait_until(up, timeout, "am to answer", every=0.05)
    except AssertionError as exc:
        raise RuntimeError(f"{exc}\n{am.log_text()[-2000:]}") from None


def run_size(n: int, server: Any = None) -> dict[str, float]:
    """One size on SQLite, or on a fresh database of `server` (a PgServer)."""
    url = server.create_database(f"bench_{n}") if server is not None else None
    extra = f'[am]\ndb = "{url}"\n' if url else ""
    with common.cluster_dir(extra) as (d, env, pm_port):
        t0 = time.perf_counter()
        fill(url or str(d / "am.sqlite3"), n)
        fill_s = time.perf_counter() - t0
        with common.portmapper(d, env, pm_port):
            am = procs.Proc(
                procs.python_module("applikant.cli.main", "start", "am"),
                env=env,
                log_path=str(d / "am.log"),
            )
            with am:
                _wait_for_am(env, am)
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.manager",
                        "--client",
                        "client@localhost",
                        "--size",
                        str(n),
                    ],
                    env={**os.environ, **env},
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0:
                    raise RuntimeError(f"the client failed:\n{out.stderr[-3000:]}")
    if url is not None:
        server.drop_database(url)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["fill_s"] = fill_s
    return result


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="am's store: a SQLite file, or a PostgreSQL server started here",
    )
    p.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SIZES),
        help="store sizes to measure, comma-separated",
    )
    args = p.parse_args()
    if args.client:
        import trio

        trio.run(client, args.client, args.size)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    by_size = {}
    server = None
    if args.store == "postgresql":
        from harness import postgres

        reason = postgres.unavailable()
        if reason is not None:
            sys.exit(f"bench.manager --store postgresql: {reason}")
        server = postgres.PgServer.start_new()
    try:
        for n in sizes:
            by_size[n] = run_size(n, server)
    finally:
        if server is not None:
            server.stop()
    result: dict[str, Any] = {"store": args.store}
    rows = []
    for n, r in by_size.items():
        for key in (
            "p50_us",
            "p99_us",
            "seq_calls_per_s",
            "calls_per_s",
            "pushes_per_s_1",
            "decisions_per_s_1",
            "pushes_per_s_100",
            "decisions_per_s_100",
            "fill_s",
            "list_repos_ms",
            "list_repos_user_ms",
            "writes_per_s",
            "writes_per_s_16",
        ):
            result[
                f"check_access_{key}_{n}"
                if key in ("p50_us", "p99_us", "seq_calls_per_s", "calls_per_s")
                else f"{key}_{n}"
            ] = round(r[key], 1)
        rows.append(
            (
                f"{n:>7,} users/keys/repos: check_access p50 / p99",
                f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f} us",
            )
        )
        rows.append(
            (
                f"{n:>7,} users/keys/repos: check_access calls/s (1 / 16 callers)",
                f"{r['seq_calls_per_s']:,.0f} / {r['calls_per_s']:,.0f}",
            )
        )
        rows.append(
            (
                f"{n:>7,} users/keys/repos: pre-receive decisions/s (1 ref / 100 refs)",
                f"{r['decisions_per_s_1']:,.0f} / {r['decisions_per_s_100']:,.0f}"
                f"  ({r['pushes_per_s_1']:,.0f} / {r['pushes_per_s_100']:,.0f} pushes/s)",
            )
        )
        rows.append(
            (
                f"{n:>7,} users/keys/repos: durable writes/s (1 / 16 callers)",
                f"{r['writes_per_s']:,.0f} / {r['writes_per_s_16']:,.0f}",
            )
        )
        rows.append(
            (
                f"{n:>7,} users/keys/repos: list_repos page of 100 (all / one user's)",
                f"{r['list_repos_ms']:,.2f} / {r['list_repos_user_ms']:,.2f} ms",
            )
        )
    largest, smallest = max(sizes), min(sizes)
    result["check_access_calls_per_s"] = round(by_size[largest]["calls_per_s"], 1)
    result["pre_receive_decisions_per_s_1"] = round(by_size[largest]["decisions_per_s_1"], 1)
    result["pre_receive_decisions_per_s_100"] = round(by_size[largest]["decisions_per_s_100"], 1)
    ratio = by_size[largest]["p50_us"] / by_size[smallest]["p50_us"]
    result[f"check_access_p50_ratio_{largest}_to_{smallest}"] = round(ratio, 3)
    rows.append(
        (f"check_access p50 at {largest:,} / at {smallest:,}", f"{ratio:.2f}  (target <= 1.5)")
    )
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
