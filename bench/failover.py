"""How long pushes stall when the active am dies, and whether any is lost.

Everything on loopback: a PostgreSQL server (harness/postgres.py), two am
sharing it (`am@localhost` active, `am2@localhost` standby), af with a real
sshd, a git client pushing one new commit after another over SSH. After
`--before` acknowledged pushes the active am is SIGKILLed; the pushes go on
(a refused one is retried, as a person would) until `--after` more were
acknowledged through the standby. Then the audit log is read from the
database itself.

    python -m bench.failover [--json] [--before 5] [--after 10] [--lease-timeout 2]

JSON keys: `store` ("postgresql"), `failover_s` (from the last push that was
refused or took longer than usual, to the first accepted one after it; a
stall that started before the kill counts from the kill), `acknowledged`
(pushes git reported done), `lost` (acknowledged, but not in the audit log),
`duplicated` (recorded more than once), `refused` (pushes refused meanwhile,
retried). Goal: failover under 5 s, nothing lost, nothing duplicated.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from harness import postgres
from harness.gitenv import GitSite
from harness.wait import wait_until

from . import common

STANDBY = "am2"


def _audit_commits(server: postgres.PgServer, database: str, repo: str) -> Counter[str]:
    """How often each commit was recorded as pushed (read from the database)."""
    rows = server.sql(
        f"SELECT details FROM audit_log WHERE action = 'push' AND repo = '{repo}'", database
    )
    seen: Counter[str] = Counter()
    for (details,) in rows:
        for ref in json.loads(str(details))["refs"]:
            seen[ref["new"]] += 1
    return seen


def run(before: int, after: int, lease_timeout: float) -> dict[str, object]:
    server = postgres.PgServer.start_new()
    tmp = Path(tempfile.mkdtemp(prefix="applikant-bench-failover-"))
    try:
        url = server.create_database("failover")
        am_toml = (
            f'\n[am]\ndb = "{url}"\nstandby = ["{STANDBY}@localhost"]\n'
            f"lease_timeout = {lease_timeout}\n"
        )
        with GitSite(tmp, af_toml=am_toml) as site:
            second = site.cluster.config.with_name("am2.toml")
            second.write_text(
                site.cluster.config.read_text().replace("[am]\n", f'[am]\nnode = "{STANDBY}"\n')
            )
            site.env = {**site.env, "APPLIKANT_CONFIG": str(second)}
            standby = site._daemon(
                "am2", [sys.executable, "-m", "applikant.cli.main", "start", "am"]
            )
            site.env["APPLIKANT_CONFIG"] = str(site.cluster.config)
            alice = site.add_user("alice")
            site.create_repo("alice/stream")
            work = tmp / "work"
            site.clone(alice, "alice/stream", work)

            acknowledged: list[str] = []
            refused = 0
            durations: list[float] = []
            kill_at: float | None = None
            stall_start: float | None = None
            failover = 0.0
            commit = site.commit(work, "push 0")
            while len(acknowledged) < before + after:
                if kill_at is None and len(acknowledged) == before:
                    assert site.am_proc is not None
                    site.am_proc.signal(signal.SIGKILL)
                    kill_at = time.monotonic()
                    stall_start = kill_at
                started = time.monotonic()
                r = site.push(alice, work, check=False)
                ended = time.monotonic()
                usual = common.median(durations) * 3 if durations else 5.0
                if r.returncode != 0:
                    refused += 1
                    if stall_start is None:
                        stall_start = started
                    time.sleep(0.1)
                    continue
                if ended - started > usual and stall_start is None:
                    stall_start = started
                if stall_start is not None and kill_at is not None:
                    failover = max(failover, ended - stall_start)
                    stall_start = None
                durations.append(ended - started)
                acknowledged.append(commit)
                commit = site.commit(work, f"push {len(acknowledged)}")

            def recorded() -> Counter[str] | None:
                seen = _audit_commits(server, "failover", "alice/stream")
                return seen if all(c in seen for c in acknowledged) else None

            try:
                seen = wait_until(recorded, 30, "every acknowledged push recorded")
            except AssertionError:
                seen = _audit_commits(server, "failover", "alice/stream")
            standby.stop()
        lost = [c for c in acknowledged if c not in seen]
        duplicated = [c for c, n in seen.items() if n > 1]
        return {
            "store": "postgresql",
            "failover_s": round(failover, 3),
            "acknowledged": len(acknowledged),
            "lost": len(lost),
            "duplicated": len(duplicated),
            "refused": refused,
            "lease_timeout_s": lease_timeout,
        }
    finally:
        server.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--before", type=int, default=5, help="acknowledged pushes before the kill")
    p.add_argument("--after", type=int, default=10, help="acknowledged pushes after it")
    p.add_argument("--lease-timeout", type=float, default=2.0, help="[am] lease_timeout")
    args = p.parse_args()
    reason = postgres.unavailable()
    if reason is not None:
        sys.exit(f"bench.failover needs PostgreSQL: {reason}")
    result = run(args.before, args.after, args.lease_timeout)
    common.report(
        [
            ("store", str(result["store"])),
            ("failover (last stalled push to first accepted)", f"{result['failover_s']:.2f} s"),
            ("pushes acknowledged", str(result["acknowledged"])),
            ("lost", str(result["lost"])),
            ("recorded twice", str(result["duplicated"])),
            ("refused meanwhile (retried)", str(result["refused"])),
        ],
        result,
        args.json,
    )


if __name__ == "__main__":
    main()
