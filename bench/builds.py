"""Builds: how soon a pushed build starts, and how fast the queue takes pushes.

- push_to_start: a commit with a quick build.sh is pushed over SSH; the time from
  `git push` returning to the build's start (am's started_at, same clock), p50
  over --runs pushes (target < 1 s). The build is queued by post-receive, before
  the push returns, so a start before the return counts as 0.
- pushes_per_s: --burst pushes of commits with a slow build.sh (sleep) to as
  many branches, one after the other, while ab runs the first: pushes per
  second of wall time (each push includes making its commit and an SSH
  push), every one queued.

Starts portmapper, am, af, sshd and ab on loopback (harness/builds.py)
and stops them again.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.builds import BuildSite
from harness.wait import wait_until

from . import common


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=10, help="pushes timed to their build's start")
    p.add_argument("--burst", type=int, default=20, help="pushes while builds run")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="applikant-bench-builds-") as tmp:
        with BuildSite(Path(tmp) / "site", builder_toml="timeout = 60.0\n") as site:
            user = site.add_user("bench")
            site.create_repo("bench/b")
            work = Path(tmp) / "work"
            site.clone(user, "bench/b", work)
            starts, waits = [], []  # push return -> start; queued -> start
            for i in range(args.runs):
                _, stderr = site.push_script(user, work, f"echo run {i}\n", message=f"r{i}")
                returned = time.time()
                number = site.queued_build(stderr)
                build = site.wait_build(number, "running", "succeeded", "failed")
                starts.append(max(0.0, _ts(build["started_at"]) - returned))
                waits.append(_ts(build["started_at"]) - _ts(build["queued_at"]))
                site.wait_build(number, "succeeded", "failed")
            first = None
            t0 = time.monotonic()
            numbers = []
            for i in range(args.burst):
                _, stderr = site.push_script(
                    user, work, "sleep 2\n", branch=f"burst{i}", message=f"b{i}"
                )
                numbers.append(site.queued_build(stderr))
                first = first or numbers[0]
            elapsed = time.monotonic() - t0
            page = site.call_am("am_builds", "list", {"repo": "bench/b", "limit": 1000})
            queued = len(page["items"])
            wait_until(lambda: site.build(numbers[0])["status"] != "queued", what="the first build")
            for number in numbers:  # do not wait for them all
                try:
                    site.call_am("am_builds", "cancel", {"build": str(number)})
                except Exception:
                    pass
    p50 = common.percentile(starts, 0.5)
    rate = args.burst / elapsed
    result = {
        "runs": args.runs,
        "burst": args.burst,
        "push_to_start_p50_s": round(p50, 4),
        "push_to_start_p90_s": round(common.percentile(starts, 0.9), 4),
        "queued_to_start_p50_s": round(common.percentile(waits, 0.5), 4),
        "pushes_per_s": round(rate, 2),
        "builds_queued": queued,
    }
    rows = [
        (
            "push to start",
            f"p50 {p50 * 1000:7.1f} ms   p90 "
            f"{common.percentile(starts, 0.9) * 1000:7.1f} ms (target p50 < 1 s)",
        ),
        (
            "queued to start",
            f"p50 {common.percentile(waits, 0.5) * 1000:7.1f} ms "
            "(the build starts before the push returns)",
        ),
        (
            "queue intake",
            f"{rate:.2f} pushes/s over {args.burst} pushes while builds run "
            f"({queued} builds in the queue)",
        ),
    ]
    common.report(rows, result, args.json)


if __name__ == "__main__":
    os.environ.pop("GIT_DIR", None)
    main()
