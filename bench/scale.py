"""Cost that does not grow with the site: the same requests on a site of 1,000
and of 100,000 users and repositories, and what a new SSH key costs among
100,000.

For each size, a whole suite as production runs it (portmapper, am, af, aw and
sshd as a service account made for the run, harness/account.py) is started,
then filled straight into am's store (harness/bulk.py: users with a key each,
repositories, groups, and a group granted read on 10,000 repositories, or on
all of a smaller site). The repositories exist in am only: af hears of none of
them, so it makes none on disk (100,000 bare repositories are gigabytes and
minutes to make, and nothing here reads them). af then reads every key again
(as after a restart) and rewrites authorized_keys.

Both sites run at once and are measured in turns (the machine's load drifts;
each round measures both sides), as `reader`, a user in that group (who can
read 10,000 repositories on the big site), with 8 keep-alive HTTP clients in
bursts of `--burst` seconds, `--rounds` per list and size:
`GET /repos` (the page, 100 newest), `GET /api/repos?limit=50`, `GET /users`
(100 by login), `GET /` (the dashboard); and `ssh ... info` one at a time
(the first 100 repositories and "more") through a second sshd that asks
`applikant-keys-for` (AuthorizedKeysCommand: a key costs the same among
100,000), and, for the record, through af's authorized_keys, where the
reader's key is the oldest and so the last line sshd reads. Then, on the big
site: how long a key added in am takes to work over SSH (from the call to the
end of the first login that succeeds, through each sshd), and keys-for's own
time (p50, a process per run as sshd starts it). The ceiling, a trivial
Starlette app on Hypercorn's trio worker (bench/ceiling.py), is measured in
the same turns as `GET /api/repos`. Beside each rate, the server's CPU per
request (the daemons' cgroup, harness/cpu.py), which the machine's load
does not change.

Goals: each rate at 100,000 at least 0.8 of the rate at 1,000; GET /api/repos
at 100,000 at least 0.4 of the ceiling; a new key working within 1 s;
keys-for under 30 ms (p50).

    .venv/bin/python -m bench.scale [--json] [--rounds 5] [--burst 1] [--sizes 1000,100000]
        [--only dashboard,info]   # those lists only, no keys: faster, to work on one
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

from applikant import procs
from bench.http import requests
from harness.account import ServiceAccount
from harness.bulk import fill
from harness.cpu import ServerCpu
from harness.gitenv import User
from harness.sshd import SshServer
from harness.wait import wait_until
from harness.web import WebSite

from . import common

SIZES = (1_000, 100_000)
READABLE = 10_000
CLIENTS = 8
LISTS = {
    "repos_page": "/repos",
    "api_repos": "/api/repos?limit=50",
    "users_page": "/users",
    "dashboard": "/",
}
GOALS = {"ratio": 0.8, "api_vs_ceiling": 0.4, "new_key_s": 1.0, "keys_for_p50_ms": 30.0}
READER_PASSWORD = "reader-password-1"


class Site:
    """One size: the suite, filled, and the measurements on it."""

    def __init__(self, account: ServiceAccount, n: int) -> None:
        self.n = n
        self.account = account
        self.web = WebSite(account.base / f"site-{n}", account=account)

    def start(self) -> None:
        web = self.web
        web.start()
        self.reader = web.add_user("reader")
        web.call_am(
            "am_user_db", "set_password", {"user": self.reader.id, "password": READER_PASSWORD}
        )
        t = time.perf_counter()
        shape = fill(str(web.tmp / "am.sqlite3"), self.n, readable=READABLE, prefix="s")
        self.fill_s = time.perf_counter() - t
        web.call_am("am_user_db", "add_member", {"group": shape.readers, "user": self.reader.id})
        self.readable = shape.readable
        # af reads every key again (a user enabled again makes it; so does a restart).
        t = time.perf_counter()
        web.call_am("am_user_db", "disable_user", {"user": "su1"})
        web.call_am("am_user_db", "enable_user", {"user": "su1"})
        wait_until(
            lambda: web.keys_file.read_text().count("\n") > self.n,
            timeout=300,
            what=f"af to write {self.n} keys",
        )
        self.keys_reload_s = time.perf_counter() - t
        self.cmd = self.command_sshd()
        self.cmd.start()

    def stop(self) -> None:
        if getattr(self, "cmd", None) is not None:
            self.cmd.stop()
        self.web.stop()

    # ---- HTTP -------------------------------------------------------------------

    def clients(self) -> dict[str, dict[str, Any]]:
        """How each list is asked for: the reader's API token or session."""
        web = self.web
        token = web.token_for(self.reader.id)
        session = dict(web.login("reader", READER_PASSWORD).cookies)
        return {
            name: {"headers": {"authorization": f"Bearer {token}"}}
            if path.startswith("/api/")
            else {"cookies": session}
            for name, path in LISTS.items()
        }

    # ---- SSH --------------------------------------------------------------------

    def info_s(self, sshd: SshServer | None = None) -> float:
        """Seconds of one `ssh ... info` of the reader (checked: 100 shown, "more"),
        through the sshd asking keys-for (a key costs the same among 100,000), or
        through `sshd`."""
        t = time.perf_counter()
        r = (sshd or self.cmd).run(self.reader.key, "info")
        took = time.perf_counter() - t
        assert r.returncode == 0, r.stderr
        shown = sum(1 for line in r.stdout.splitlines() if line.startswith(" R"))
        assert shown == min(100, self.readable), r.stdout[-300:]
        return took

    def new_key_s(self, sshd: SshServer, label: str, runs: int = 3) -> float:
        """Median seconds from am's add_key call to a first SSH login with the key."""
        web = self.web
        times = []
        for i in range(runs):
            user = web.add_user(f"new{label}{i}", with_key=False)
            t = time.perf_counter()
            web.add_key(user, wait=False)

            def works(user: User = user) -> bool:
                return sshd.run(user.key, "info").returncode == 0

            wait_until(works, timeout=60, every=0.01, what=f"{user.login}'s new key to work")
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    def command_sshd(self) -> SshServer:
        """A second sshd on the same site asking keys-for (AuthorizedKeysCommand)."""
        web, account = self.web, self.account
        empty = web.tmp / "sshd-cmd-keys"
        empty.write_text("")
        account.own(empty)
        wrapper = web._safe_keys_for(account.program("applikant-keys-for"))
        return SshServer(
            web.tmp / "cmd",
            user=account.name,
            authorized_keys=empty,
            extra_config=(
                f"AuthorizedKeysCommand {wrapper} --config {web.cluster.config} %u %f\n"
                f"AuthorizedKeysCommandUser {account.name}\n"
            ),
        )

    def keys_for_p50_ms(self, runs: int) -> float:
        """keys-for as sshd runs it: a process, as the account, for one bulk key."""
        fingerprint = self.web.call_am("am_user_db", "get_key", {"key": "key-100"})["fingerprint"]
        argv = [
            self.account.program("applikant-keys-for"),
            "--config",
            str(self.web.cluster.config),
            self.account.name,
            fingerprint,
        ]
        times = []
        for _ in range(runs + 3):
            t = time.perf_counter()
            done = self.account.run(argv)
            times.append((time.perf_counter() - t) * 1000)
            assert done.returncode == 0 and "command=" in done.stdout, done.stderr
        return statistics.median(times[3:])


def interleaved(burst: Any, rounds: int, sides: list[Any]) -> dict[Any, list[Any]]:
    """`burst(side)` for each side in turn, `rounds` times (the order turned round
    every other round): the machine's load drifts, and both sides see the same."""
    out: dict[Any, list[Any]] = {side: [] for side in sides}
    for i in range(rounds):
        for side in sides if i % 2 == 0 else reversed(sides):
            out[side].append(burst(side))
    return out


def server_cpu(site: Site) -> ServerCpu:
    """A counter of the CPU of the site's daemons (am, af, aw, the portmapper)."""
    return ServerCpu([p.pid for p in site.web.cluster.procs if p.alive()], name="scale")


def ratio(a: list[float], b: list[float]) -> float:
    """The median of the per-round ratios a/b (rounds measured side by side)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def main() -> None:
    p = common.parser(__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--burst", type=float, default=1.0, help="seconds per HTTP rate burst")
    p.add_argument("--rounds", type=int, default=5, help="bursts per list and size")
    p.add_argument("--info-runs", type=int, default=15)
    p.add_argument("--keys-for-runs", type=int, default=30)
    p.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    p.add_argument(
        "--only",
        default="",
        help=f"comma-separated lists to measure ({', '.join([*LISTS, 'info'])}),"
        " without the keys' figures",
    )
    args = p.parse_args()
    small, big = (int(s) for s in args.sizes.split(","))
    only = [name for name in args.only.split(",") if name]
    unknown = set(only) - {*LISTS, "info"}
    if unknown:
        p.error(f"--only: no list named {', '.join(sorted(unknown))}")
    lists = {name: path for name, path in LISTS.items() if not only or name in only}
    rates: dict[str, dict[int, list[float]]] = {}
    cpu: dict[str, dict[int, list[float]]] = {}
    extra: dict[str, Any] = {}
    with ServiceAccount("akscale") as account:
        sites = {n: Site(account, n) for n in (small, big)}
        port = procs.free_port()
        try:
            for site in sites.values():
                site.start()
                extra[f"fill_s_{site.n}"] = round(site.fill_s, 1)
                extra[f"keys_reload_s_{site.n}"] = round(site.keys_reload_s, 1)
            ceiling = procs.Proc([sys.executable, "-m", "bench.ceiling", "--port", str(port)])
            procs.wait_port("127.0.0.1", port, proc=ceiling.popen)
            base = {n: s.web.base for n, s in sites.items()}
            base[0] = f"http://127.0.0.1:{port}"
            how = {n: s.clients() for n, s in sites.items()}
            counters = {n: server_cpu(s) for n, s in sites.items()}
            counters[0] = ServerCpu([ceiling.pid], name="ceiling")
            for name, path in lists.items():
                sides = [small, big, 0] if name == "api_repos" else [small, big]

                def burst(n: int, path: str = path, name: str = name) -> tuple[float, float]:
                    """(requests/s, server CPU ms per request) of one burst."""
                    before = counters[n].usage_ms()
                    if n == 0:
                        count, took = requests(base[0], "/", CLIENTS, args.burst)
                    else:
                        count, took = requests(base[n], path, CLIENTS, args.burst, **how[n][name])
                    return count / took, (counters[n].usage_ms() - before) / count

                for n in sides:
                    burst(n)  # warm up
                both = interleaved(burst, args.rounds, sides)
                rates[name] = {n: [r for r, _ in v] for n, v in both.items()}
                cpu[name] = {n: [c for _, c in v] for n, v in both.items()}
            for counter in counters.values():
                counter.close()
            ceiling.stop()
            if not only or "info" in only:
                times = interleaved(lambda n: sites[n].info_s(), args.info_runs + 2, [small, big])
                rates["info"] = {n: [1 / t for t in ts[2:]] for n, ts in times.items()}
            if only:
                return report_only(rates, cpu, small, big, args.json)
            # The reader's key is older than every key of the fill: in af's
            # authorized_keys (newest first) it is the last line sshd reaches.
            for n, site in sites.items():
                extra[f"file_login_oldest_key_s_{n}"] = statistics.median(
                    site.info_s(site.web.sshd) for _ in range(3)
                )
            site = sites[big]
            extra["new_key_file_s"] = site.new_key_s(site.web.sshd, "f")
            extra["new_key_command_s"] = site.new_key_s(site.cmd, "c")
            extra["keys_for_p50_ms"] = site.keys_for_p50_ms(args.keys_for_runs)
            extra["python_pass_p50_ms"] = python_pass_ms(account, args.keys_for_runs)
        finally:
            for site in sites.values():
                site.stop()
    ratios = {name: ratio(r[big], r[small]) for name, r in rates.items()}
    # The same question asked of the server's CPU, which the machine's load
    # does not change: CPU per request at 1,000 / at 100,000.
    cpu_ratios = {name: ratio(c[small], c[big]) for name, c in cpu.items()}
    cpu_ms = {
        str(n): {name: round(statistics.median(c[n]), 3) for name, c in cpu.items()}
        for n in (small, big)
    }
    cpu_ms["ceiling"] = {"api_repos": round(statistics.median(cpu["api_repos"][0]), 3)}
    median = {name: {n: statistics.median(v) for n, v in r.items()} for name, r in rates.items()}
    top = median["api_repos"][0]
    new_key = max(extra["new_key_file_s"], extra["new_key_command_s"])
    result: dict[str, Any] = {
        "sizes": [small, big],
        "rates": {
            str(n): {name: round(m[n], 1) for name, m in median.items()} for n in (small, big)
        },
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "server_cpu_ms_per_request": cpu_ms,
        "cpu_ratios": {k: round(v, 3) for k, v in cpu_ratios.items()},
        "load_average": os.getloadavg()[0],
        "ceiling_rps": round(top, 1),
        "api_vs_ceiling": round(ratio(rates["api_repos"][big], rates["api_repos"][0]), 3),
        "new_key_s": round(new_key, 3),
        "readable": min(READABLE, big),
        "clients": CLIENTS,
        "goals": GOALS,
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()},
    }
    rows = []
    for name in ratios:
        unit = "runs/s" if name == "info" else "req/s"
        by_cpu = (
            f"   server CPU {cpu_ms[str(small)][name]:.2f} / {cpu_ms[str(big)][name]:.2f} ms"
            f" (ratio {cpu_ratios[name]:.2f})"
            if name in cpu
            else ""
        )
        rows.append(
            (
                name,
                f"{median[name][small]:8.1f} {unit} at {small:,}   {median[name][big]:8.1f} at "
                f"{big:,}   ratio {ratios[name]:.2f} (goal >= {GOALS['ratio']}){by_cpu}",
            )
        )
    rows += [
        (
            "ceiling",
            f"{top:8.1f} req/s (trivial Starlette on Hypercorn trio, {CLIENTS} clients),"
            f" server CPU {cpu_ms['ceiling']['api_repos']:.2f} ms",
        ),
        ("api_vs_ceiling", f"{result['api_vs_ceiling']:.2f} (goal >= {GOALS['api_vs_ceiling']})"),
        (
            "new key works",
            f"file {extra['new_key_file_s']:.3f} s, keys-for {extra['new_key_command_s']:.3f} s"
            f" among {big:,} keys, one login included (goal <= {GOALS['new_key_s']} s)",
        ),
        (
            "file mode, oldest key",
            f"a login takes {extra[f'file_login_oldest_key_s_{small}']:.2f} s among {small:,} keys,"
            f" {extra[f'file_login_oldest_key_s_{big}']:.2f} s among {big:,}"
            " (sshd reads authorized_keys line by line; command mode does not)",
        ),
        (
            "keys-for p50",
            f"{extra['keys_for_p50_ms']:.1f} ms (goal < {GOALS['keys_for_p50_ms']:.0f} ms;"
            f" python -c pass {extra['python_pass_p50_ms']:.1f} ms)",
        ),
    ]
    common.report(rows, result, args.json)


def report_only(
    rates: dict[str, dict[int, list[float]]],
    cpu: dict[str, dict[int, list[float]]],
    small: int,
    big: int,
    as_json: bool,
) -> None:
    """The ratios of the lists `--only` named (no keys' figures, no ceiling)."""
    ratios = {name: ratio(r[big], r[small]) for name, r in rates.items()}
    cpu_ms = {
        str(n): {name: round(statistics.median(c[n]), 3) for name, c in cpu.items()}
        for n in (small, big)
    }
    rows = [
        (
            name,
            f"ratio {value:.2f} (goal >= {GOALS['ratio']})"
            + (
                f", server CPU {cpu_ms[str(small)][name]:.2f} / {cpu_ms[str(big)][name]:.2f} ms"
                if name in cpu
                else ""
            ),
        )
        for name, value in ratios.items()
    ]
    result = {
        "sizes": [small, big],
        "only": sorted(ratios),
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "cpu_ratios": {k: round(ratio(c[small], c[big]), 3) for k, c in cpu.items()},
        "server_cpu_ms_per_request": cpu_ms,
        "load_average": os.getloadavg()[0],
    }
    common.report(rows, result, as_json)


def python_pass_ms(account: ServiceAccount, runs: int) -> float:
    """The floor keys-for stands on: the account's Python doing nothing, p50."""
    times = []
    for _ in range(runs + 3):
        t = time.perf_counter()
        account.run([account.python, "-c", "pass"], check=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times[3:])


if __name__ == "__main__":
    main()
