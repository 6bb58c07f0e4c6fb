"""A fault campaign against a whole git host: is anything acknowledged ever lost?

Pushes over SSH (each to a new branch) run while the campaign strikes:

- am_kill: am SIGKILLed (at random, while it decides a push, while it records
  one) and started again;
- af_kill: af SIGKILLed the same ways and started again;
- am_stop: am SIGSTOPped for --stop seconds, then continued;
- portmapper_restart: the portmapper SIGKILLed and started again;
- disk_full: am's database, af's spool and the repositories (each on its own
  small tmpfs) filled, one at a time, with pushes going on, then freed;
- concurrent: --concurrent pushes at once, am killed among them.

Then it waits until af holds nothing back and counts, for every push: an
acknowledged one (git exit 0) must be in the repository and recorded by am
exactly once (else `lost` or `duplicated`); a refused one must have changed
nothing (else `refused_changed`). Recovery: seconds from the end of a fault
(restart, SIGCONT, space freed) to the first push acknowledged after it.
Goal: lost 0 and duplicated 0 over at least 100 acknowledged pushes.

disk_full needs root (to mount the tmpfs); without it that scenario is skipped.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from harness.faults import HookGate, Ledger, Tmpfs, Watch, tmpfs_unavailable
from harness.gitenv import GitSite, User
from harness.wait import wait_until

from . import common

COUNTS = ("acknowledged", "lost", "duplicated", "refused", "refused_changed")


class Campaign:
    def __init__(self, tmp: Path, disks: dict[str, Tmpfs] | None, stop_s: float) -> None:
        self.tmp = tmp
        self.disks = disks or {}
        self.stop_s = stop_s
        data = {name: disk.path for name, disk in self.disks.items()}
        if "repos" in data:
            data["keys"] = data["repos"] / "ssh"
        self.site = GitSite(tmp / "site", data=data, disk_reserve_mb=0)
        self.user: User | None = None
        self.base_work: Path | None = None
        self.ledgers: dict[str, list[Ledger]] = {}
        self.recovery: dict[str, list[float]] = {}
        self.rng = random.Random(12)

    # ---- set-up ---------------------------------------------------------------------

    def setup(self) -> None:
        self.user = self.site.add_user("alice")

    def ledger(self, scenario: str, label: str = "") -> Ledger:
        """A working copy of the scenario's repository (made on first use) and its ledger."""
        assert self.user is not None
        repo = f"alice/{scenario.replace('_', '-')}"
        first = self.ledgers.setdefault(scenario, [])
        work = self.tmp / "work" / f"{scenario}-{len(first)}"
        if not first:
            self.site.create_repo(repo)
            self.site.clone(self.user, repo, work)
            self.site.commit(work, "base")
            self.site.push(self.user, work)
        else:
            shutil.copytree(first[0].work, work)
        ledger = Ledger(self.site, repo, work, self.user, label or f"w{len(first)}")
        first.append(ledger)
        return ledger

    # ---- helpers --------------------------------------------------------------------

    def recover(self, scenario: str, ledger: Ledger, since: float, timeout: float = 90) -> None:
        """Push until one is acknowledged; note how long after ``since`` that was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ledger.push().acknowledged:
                self.recovery.setdefault(scenario, []).append(round(time.monotonic() - since, 2))
                return
            time.sleep(0.1)
        self.recovery.setdefault(scenario, []).append(float("inf"))

    @contextmanager
    def stream(self, ledger: Ledger) -> Iterator[None]:
        """Pushes one after another in a thread for the life of the block."""
        done = threading.Event()

        def run() -> None:
            while not done.is_set():
                ledger.push()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(180)

    def restart_am(self) -> float:
        self.site.kill_am()
        self.site.start_am()
        return time.monotonic()

    def restart_af(self) -> float:
        self.site.stop_af(signal.SIGKILL)
        self.site.start_af()
        return time.monotonic()

    def strike(self, ledger: Ledger, phase: str, kill: Callable[[], float]) -> float:
        """One push struck at ``phase`` (deciding, recording) by ``kill``; when the
        killed daemon was started again."""
        am = self.site.am_proc
        assert am is not None
        if phase == "deciding":
            gate = HookGate.of(self.site, ledger.repo)
            gate.hold()
            push = ledger.prepare()
            proc = ledger.spawn(push)
            try:
                gate.wait_arrived()
                am.signal(signal.SIGSTOP)
            finally:
                gate.open()
            time.sleep(0.5)
            seen = None
        else:
            watch = Watch.intents(self.site.spool_dir)
            push = ledger.prepare()
            proc = ledger.spawn(push)
            try:
                seen = watch.wait(30)
            finally:
                watch.close()
        if seen:
            am.signal(signal.SIGSTOP)
            if phase == "recording":
                deadline = time.monotonic() + 10
                while self.site.head(ledger.repo, push.ref) != push.new:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.005)
            time.sleep(0.5)
        restarted = kill()
        if self.site.am_proc is am:
            am.signal(signal.SIGCONT)
        ledger.collect(push, proc)
        return restarted

    # ---- scenarios ------------------------------------------------------------------

    def daemon_kill(self, scenario: str, kill: Callable[[], float], rounds: int) -> None:
        ledger, side = self.ledger(scenario, "s"), self.ledger(scenario, "t")
        for i in range(rounds):
            phase = ("random", "deciding", "recording")[i % 3]
            if phase == "random":
                with self.stream(side):
                    time.sleep(self.rng.uniform(0.5, 2.0))
                    restarted = kill()
            else:
                restarted = self.strike(ledger, phase, kill)
            self.site.wait_synced(30)
            self.recover(scenario, ledger, restarted)

    def am_kill(self) -> None:
        self.daemon_kill("am_kill", self.restart_am, 6)

    def af_kill(self) -> None:
        self.daemon_kill("af_kill", self.restart_af, 6)

    def am_stop(self) -> None:
        ledger, side = self.ledger("am_stop", "s"), self.ledger("am_stop", "t")
        am = self.site.am_proc
        assert am is not None
        for _ in range(2):
            with self.stream(side):
                time.sleep(1.0)
                am.signal(signal.SIGSTOP)
                time.sleep(self.stop_s)
                am.signal(signal.SIGCONT)
                continued = time.monotonic()
                self.recover("am_stop", ledger, continued)

    def portmapper_restart(self) -> None:
        ledger, side = (
            self.ledger("portmapper_restart", "s"),
            self.ledger("portmapper_restart", "t"),
        )
        cluster = self.site.cluster
        for _ in range(3):
            with self.stream(side):
                time.sleep(1.0)
                assert cluster.portmapper is not None
                cluster.portmapper.signal(signal.SIGKILL)
                cluster.portmapper.popen.wait(10)
                cluster.portmapper.stop()
                cluster.start_portmapper()
                restarted = time.monotonic()
                self.recover("portmapper_restart", ledger, restarted)

    def disk_full(self) -> None:
        ledger = self.ledger("disk_full", "s")
        am = self.site.am_proc
        assert am is not None
        for name in ("db", "spool", "repos"):
            disk = self.disks[name]
            for _ in range(3):
                ledger.push()
            disk.fill(leave=0)
            for _ in range(4):
                ledger.push()
            disk.release()
            self.recover("disk_full", ledger, time.monotonic())
        # am away when a push is recorded, and the spool full: the intent keeps it
        watch = Watch.intents(self.site.spool_dir)
        push = ledger.prepare()
        proc = ledger.spawn(push)
        try:
            seen = watch.wait(30)
        finally:
            watch.close()
        if seen:
            am.signal(signal.SIGSTOP)
            self.disks["spool"].fill()
        restarted = self.restart_am()
        ledger.collect(push, proc)
        self.disks["spool"].release()
        self.recover("disk_full", ledger, restarted)

    def concurrent(self, n: int) -> None:
        ledgers = [self.ledger("concurrent", f"c{i}-") for i in range(n)]
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(ledger.push) for ledger in ledgers]
            time.sleep(0.5)
            restarted = self.restart_am()
            for future in futures:
                future.result()
            self.recover("concurrent", ledgers[0], restarted)
            futures = [pool.submit(ledger.push) for ledger in ledgers]  # all at once, am up
            for future in futures:
                future.result()

    # ---- the verdict ----------------------------------------------------------------

    def settle(self, scenario: str) -> dict[str, Any]:
        ledgers = self.ledgers.get(scenario, [])
        self.site.wait_synced(60)
        if ledgers:
            wait_until(
                lambda: ledgers[0].waiting() == 0, 120, "af to deliver every push", every=0.2
            )
        totals: dict[str, Any] = dict.fromkeys(COUNTS, 0)
        problems: list[str] = []
        for ledger in ledgers:
            counts = ledger.count()
            for key in COUNTS:
                totals[key] += counts[key]
            problems += counts["problems"]
        times = self.recovery.get(scenario, [])
        totals["recovery_s"] = times
        totals["recovery_max_s"] = max(times) if times else None
        totals["problems"] = problems[:20]
        return totals


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--stop", type=float, default=10.0, help="seconds am stays SIGSTOPped")
    p.add_argument("--concurrent", type=int, default=50, help="pushes at once")
    p.add_argument(
        "--only", default="", help="comma-separated scenarios to run (default: all of them)"
    )
    p.add_argument("--keep", default="", help="work in this directory and keep it (logs)")
    args = p.parse_args()
    wanted = [s for s in args.only.split(",") if s] or [
        "am_kill",
        "af_kill",
        "am_stop",
        "portmapper_restart",
        "disk_full",
        "concurrent",
    ]
    started = time.monotonic()
    no_tmpfs = tmpfs_unavailable()
    scenarios: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        if args.keep:
            tmp = args.keep
            os.makedirs(tmp, exist_ok=True)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="applikant-bench-faults-"))
        disks = None
        if not no_tmpfs:
            disks = {
                name: stack.enter_context(Tmpfs(Path(tmp) / f"fs-{name}", size))
                for name, size in (("db", 64), ("spool", 16), ("repos", 128))
            }
        campaign = Campaign(Path(tmp), disks, args.stop)
        with campaign.site:
            campaign.setup()
            for name in wanted:
                if name == "disk_full" and no_tmpfs:
                    scenarios[name] = {"skipped": no_tmpfs}
                    continue
                t0 = time.monotonic()
                if name == "concurrent":
                    campaign.concurrent(args.concurrent)
                else:
                    getattr(campaign, name)()
                scenarios[name] = campaign.settle(name)
                scenarios[name]["seconds"] = round(time.monotonic() - t0, 1)
    result: dict[str, Any] = {key: 0 for key in COUNTS}
    for counts in scenarios.values():
        for key in COUNTS:
            result[key] += counts.get(key, 0)
    result["scenarios"] = scenarios
    result["seconds"] = round(time.monotonic() - started, 1)
    rows = []
    for name, counts in scenarios.items():
        if "skipped" in counts:
            rows.append((name, f"skipped: {counts['skipped']}"))
            continue
        rows.append(
            (
                name,
                "  ".join(f"{key} {counts[key]}" for key in COUNTS)
                + f"  recovery max {counts['recovery_max_s']} s  ({counts['seconds']} s)",
            )
        )
    rows.append(("total", "  ".join(f"{key} {result[key]}" for key in COUNTS)))
    common.report(rows, result, args.json)


if __name__ == "__main__":
    os.environ.pop("GIT_DIR", None)
    main()
