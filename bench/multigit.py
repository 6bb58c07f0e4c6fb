"""Two git hosts, one repository store: races, visibility, throughput.

Hosts made of network namespaces (harness/netns.py, as tests/multihost): am on
`manager`, af and sshd on `git1` and `git2`, aw on `web`, git clients on
`client`; git1, git2 and web share one directory as their repo root (the stand-in
for an NFS mount; one machine, so no network file system latency is measured).

- same_branch_winners: --rounds rounds of two pushes to one branch at once, one
  through each git host; how many were accepted in each round (must be 1).
- visible_after_ms: a push through git1 returns; then `git ls-remote` through git2
  until it shows the new commit; median over --rounds (ls_remote_ms, an
  ls-remote through git2 on its own, is included in it).
- pushes_per_s_two_hosts / _one_host: two clients push --pushes commits each to
  a branch of their own, at the same time, through alternating git hosts / all
  through git1: accepted pushes per second of wall time.
- diverged_repos: repositories whose refs differ as seen through git1, git2 and
  aw at the end (must be 0); events_not_once: accepted pushes not recorded exactly
  once by am (must be 0).

Needs root (network namespaces); starts and removes everything it uses.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.deployment import Deployment, User
from harness.netns import Network, unavailable
from harness.wait import wait_until

from . import common

RACE, MANY = "bench/race", "bench/many"
GIT_HOSTS = ("git1", "git2")


def _refs(d: Deployment, via: str, user: User, repo: str) -> dict[str, str]:
    url = d.http_url("web", repo, user) if via == "web" else d.ssh_url(via, repo)
    out = d.git("client", None if via == "web" else user, "ls-remote", url).stdout
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}


def _clone(d: Deployment, user: User, via: str, repo: str, work: Path) -> None:
    d.git("client", user, "clone", "-q", d.ssh_url(via, repo), str(work))


def _chain(d: Deployment, work: Path, n: int, tag: str) -> list[str]:
    return [d.commit("client", work, f"{tag} {i}") for i in range(n)]


def race_rounds(d: Deployment, user: User, rounds: int, base: Path) -> list[int]:
    works = {via: base / f"race-{via}" for via in GIT_HOSTS}
    for via, work in works.items():
        _clone(d, user, via, RACE, work)
    winners = []
    for i in range(rounds):
        for via, work in works.items():
            d.commit("client", work, f"round {i} via {via}")
        results = d.push_together("client", user, works)
        winners.append(sum(r.returncode == 0 for r in results.values()))
        for work in works.values():
            d.git("client", user, "fetch", "-q", "origin", cwd=work)
            d.git("client", None, "reset", "-q", "--hard", "origin/main", cwd=work)
    return winners


def visibility(d: Deployment, user: User, rounds: int, base: Path) -> tuple[float, float]:
    work = base / "visible"
    _clone(d, user, "git1", RACE, work)
    d.git("client", user, "pull", "-q", "origin", "main", cwd=work)
    seen, alone = [], []
    for i in range(rounds):
        commit = d.commit("client", work, f"visible {i}")
        d.git("client", user, "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)
        t0 = time.monotonic()
        while _refs(d, "git2", user, RACE).get("refs/heads/main") != commit:
            pass
        seen.append((time.monotonic() - t0) * 1000)
        t0 = time.monotonic()
        _refs(d, "git2", user, RACE)
        alone.append((time.monotonic() - t0) * 1000)
    return common.median(seen), common.median(alone)


def throughput(
    d: Deployment, user: User, pushes: int, hosts: tuple[str, ...], base: Path, tag: str
) -> tuple[float, int]:
    """Two clients at once, each pushing `pushes` commits to its own branch,
    push i through hosts[i % len(hosts)]; (accepted pushes per second, accepted)."""
    works = {w: base / f"{tag}-{w}" for w in ("a", "b")}
    chains = {}
    for w, work in works.items():
        _clone(d, user, "git1", MANY, work)
        chains[w] = _chain(d, work, pushes, f"{tag} {w}")
    accepted = [0]
    lock = threading.Lock()

    def client(w: str) -> None:
        for i, sha in enumerate(chains[w]):
            via = hosts[i % len(hosts)]
            r = d.git(
                "client",
                user,
                "push",
                "-q",
                d.ssh_url(via, MANY),
                f"{sha}:refs/heads/{tag}-{w}",
                cwd=works[w],
                check=False,
            )
            with lock:
                accepted[0] += r.returncode == 0

    threads = [threading.Thread(target=client, args=(w,)) for w in works]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return accepted[0] / (time.monotonic() - t0), accepted[0]


def run(base: Path, rounds: int, pushes: int) -> tuple[dict[str, object], list[tuple[str, str]]]:
    with Network(["manager", "git1", "git2", "web", "client"], base) as net:
        d = Deployment(net, base, None, tick_time=2.0)
        d.start_manager("manager")
        for via in GIT_HOSTS:
            d.start_git(via)
        d.start_web("web")
        user = d.add_user("bench", "bench-password-0123")
        wait_until(lambda: all(d.key_installed(via, user) for via in GIT_HOSTS), what="keys")
        for repo in (RACE, MANY):
            d.cli_ok("manager", "repo", "create", repo)
            wait_until((d.store / f"{repo}.git" / "HEAD").exists, what=repo)
        winners = race_rounds(d, user, rounds, base)
        visible_ms, ls_remote_ms = visibility(d, user, rounds, base)
        two, two_accepted = throughput(d, user, pushes, GIT_HOSTS, base, "two")
        one, one_accepted = throughput(d, user, pushes, ("git1",), base, "one")
        diverged = 0
        for repo in (RACE, MANY):
            views = [_refs(d, via, user, repo) for via in (*GIT_HOSTS, "web")]
            diverged += any(v != views[0] for v in views)
        accepted = sum(winners) + rounds + two_accepted + one_accepted
        recorded = [e for repo in (RACE, MANY) for e in d.pushes(repo)]
        unique = len({e["event_id"] for e in recorded})
        events_not_once = abs(accepted - unique) + (len(recorded) - unique)
        fsck = [
            subprocess.run(
                ["git", "--git-dir", str(d.store / f"{repo}.git"), "fsck", "--strict"],
                capture_output=True,
            ).returncode
            for repo in (RACE, MANY)
        ]
    result: dict[str, object] = {
        "diverged_repos": diverged,
        "same_branch_winners": winners,
        "visible_after_ms": round(visible_ms, 1),
        "ls_remote_ms": round(ls_remote_ms, 1),
        "pushes_per_s_two_hosts": round(two, 2),
        "pushes_per_s_one_host": round(one, 2),
        "events_not_once": events_not_once,
        "fsck_failures": sum(code != 0 for code in fsck),
        "rounds": rounds,
        "pushes_per_client": pushes,
    }
    rows = [
        ("diverged repos (git1, git2, aw)", str(diverged)),
        ("same-branch races, winners per round", " ".join(map(str, winners))),
        (
            "push via git1 -> fetchable via git2",
            f"{visible_ms:.0f} ms (one ls-remote alone: {ls_remote_ms:.0f} ms)",
        ),
        ("pushes/s, two clients, alternating hosts", f"{two:.2f}"),
        ("pushes/s, two clients, one host", f"{one:.2f}"),
        ("pushes not recorded exactly once", str(events_not_once)),
        ("repos failing git fsck", str(result["fsck_failures"])),
    ]
    return result, rows


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--rounds", type=int, default=10, help="races, and visibility samples")
    p.add_argument("--pushes", type=int, default=12, help="pushes per client per throughput run")
    args = p.parse_args()
    reason = unavailable()
    if reason is not None:
        sys.exit(f"bench.multigit needs network namespaces: {reason}")
    # No "_" in the path: af puts it into sshd's forced commands (tests/multihost/deployment.py).
    base = Path(tempfile.gettempdir()) / f"applikant-bench-multigit-{secrets.token_hex(4)}"
    base.mkdir(mode=0o700)
    try:
        result, rows = run(base, args.rounds, args.pushes)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
