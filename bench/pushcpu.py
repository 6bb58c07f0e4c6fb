"""CPU per one-commit push of the daemons, af and am, through a real site (sshd,
`as`, the hooks, af, am), as a service account logs in (harness/account.py).

Each daemon's CPU is read from /proc/<pid>/stat (utime + stime, its own
threads; cutime + cstime, the children it reaped: af's git processes) before
and after a batch of pushes, divided by the pushes. Several batches; medians.
Clock ticks are 10 ms: batches of 60+ pushes keep the error under 0.2 ms.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from harness.account import ServiceAccount
from harness.gitenv import GitSite, git_env

from . import common

_TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> tuple[float, float]:
    """(own CPU, reaped children's CPU) of `pid` in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) * _TICK_MS, (cutime + cstime) * _TICK_MS


def _git(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL
    )


def batch(site: GitSite, work: Path, env: dict[str, str], pushes: int) -> dict[str, float]:
    """`pushes` one-commit pushes; CPU ms per push of af and am."""
    assert site.af_proc is not None and site.am_proc is not None
    pids = {"af": site.af_proc.pid, "am": site.am_proc.pid}
    local = git_env(site.home)
    before = {name: cpu_ms(pid) for name, pid in pids.items()}
    for i in range(pushes):
        (work / "file").write_text(f"{time.monotonic_ns()} {i}\n")
        _git("add", "file", cwd=work, env=local)
        _git("commit", "-q", "-m", str(i), cwd=work, env=local)
        _git("push", "-q", "--force", "origin", "HEAD:refs/heads/one", cwd=work, env=env)
    time.sleep(0.5)  # what af does after answering (the intent dropped) is counted too
    out = {}
    for name, pid in pids.items():
        own, kids = cpu_ms(pid)
        out[f"{name}_ms"] = (own - before[name][0]) / pushes
        out[f"{name}_children_ms"] = (kids - before[name][1]) / pushes
    return out


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--pushes", type=int, default=60, help="pushes per batch")
    p.add_argument("--batches", type=int, default=3)
    args = p.parse_args()
    with ServiceAccount("akpush") as account:
        with GitSite(account.base / "site", account=account) as site:
            user = site.add_user("bench")
            site.create_repo("bench/push")
            work = account.base / "work"
            env = git_env(site.home, GIT_SSH_COMMAND=site.sshd.ssh_command(user.key))
            _git("clone", "-q", site.url("bench/push"), str(work), cwd=account.base, env=env)
            batch(site, work, env, 5)  # warm up: imports, caches, the first link
            runs = [batch(site, work, env, args.pushes) for _ in range(args.batches)]
    result: dict[str, object] = {"pushes": args.pushes, "batches": args.batches}
    rows = []
    for key in ("af_ms", "af_children_ms", "am_ms", "am_children_ms"):
        values = [r[key] for r in runs]
        result[key] = round(common.median(values), 2)
        rows.append((key, " ".join(f"{v:6.2f}" for v in values) + f"   median {result[key]}"))
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
