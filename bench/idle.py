"""The suite at rest: portmapper, am, af, aw and ab started on free loopback ports
(with the sshd af feeds), left to settle, then the CPU each daemon uses per second
of wall clock over a quiet window, from /proc/PID/stat (utime + stime, all threads).

Nothing happens during the window: what a daemon burns there is the price of its
timers and polls. Goal: at most 1 ms/s per daemon (an idle Erlang node with
distribution on: under 0.5 ms/s). Wake-ups per second (context switches of all its
threads, from /proc/PID/task/*/status) say which daemon still polls.

The test harness runs heartbeats and af's retries faster than shipped (tests
want quick failover); the daemons here run at the shipped defaults, as under
`make run`, unless --test-settings.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

from applikant.config import AfSection
from applikant.node.settings import DistSettings
from harness.builds import BuildSite

from . import common

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14, 15 of proc(5)


def switches(pid: int) -> dict[str, int]:
    """Context switches of each of the process's threads (by thread id): one per
    wake-up, roughly."""
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                counts[tid] = sum(
                    int(line.split()[1])
                    for line in f
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))
                )
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return counts


def switched(before: dict[str, int], after: dict[str, int]) -> int:
    """The switches between two counts, thread by thread: a thread that ended
    meanwhile (trio's idle worker threads end after 10 s) takes its count with
    it, so process totals could go down; its last switches are not counted."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


def shipped_defaults(config: Path) -> None:
    """Put the keys the harness speeds up back to their shipped defaults."""
    defaults = {
        "tick_time": DistSettings.tick_time,
        "am_retry": AfSection.model_fields["am_retry"].default,
    }
    text = config.read_text()
    for key, value in defaults.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {float(value)}", text, flags=re.M)
        assert n == 1, f"{key} not found once in {config}"
    config.write_text(text)


def measure(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    before = {name: (cpu_seconds(pid), switches(pid)) for name, pid in pids.items()}
    start = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - start
    out = {}
    for name, pid in pids.items():
        cpu0, sw0 = before[name]
        out[name] = {
            "ms_per_s": round((cpu_seconds(pid) - cpu0) * 1000 / wall, 2),
            "wakeups_per_s": round(switched(sw0, switches(pid)) / wall, 1),
        }
    return out


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the quiet window")
    p.add_argument("--settle", type=float, default=5.0, help="wait this long after start-up")
    p.add_argument(
        "--test-settings", action="store_true", help="keep the harness's faster ticks and retries"
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="applikant-bench-idle-") as tmp:
        site = BuildSite(Path(tmp))
        if not args.test_settings:
            shipped_defaults(site.cluster.config)
        try:
            site.start()
            aw = site.start_aw()
            assert site.cluster.portmapper and site.am_proc and site.af_proc and site.ab_proc
            pids = {
                "portmapper": site.cluster.portmapper.popen.pid,
                "am": site.am_proc.popen.pid,
                "af": site.af_proc.popen.pid,
                "aw": aw.popen.pid,
                "ab": site.ab_proc.popen.pid,
            }
            time.sleep(args.settle)
            per = measure(pids, args.seconds)
        finally:
            site.stop()
    total = round(sum(d["ms_per_s"] for d in per.values()), 2)
    result = {
        "seconds": args.seconds,
        "settings": "test" if args.test_settings else "shipped",
        "idle_ms_per_s_total": total,
        "per_daemon": {name: d["ms_per_s"] for name, d in per.items()},
        "wakeups_per_s": {name: d["wakeups_per_s"] for name, d in per.items()},
    }
    rows = [
        (name, f"{d['ms_per_s']:6.2f} ms/s   {d['wakeups_per_s']:7.1f} wake-ups/s")
        for name, d in per.items()
    ]
    rows.append(("total", f"{total:6.2f} ms/s   (goal <= 1 ms/s per daemon)"))
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
