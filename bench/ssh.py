"""Git over SSH through one sshd: Applikant (forced command `as`, hooks, af,
am) against plain git over SSH (a key with no forced command, the same content,
no hooks), runs interleaved:

- ls-remote: `git ls-remote` of a small repo;
- push: a one-commit push to a branch;
- clone: a bare clone of a generated repository of ~3,000 commits (~30 MB packed);
- conc10: 10 concurrent one-commit pushes to 10 branches, wall time for all 10.

As production runs it (harness/account.py): clients log in as a service account
made for the run (a plain /bin/sh, an empty home; never root, whose shell
start-up here costs ~100 ms of CPU per session), and am and af run as it.
Besides the wall times, the server's CPU per operation: sshd, every process of
every session (forced command, git, hooks) and the daemons are in one cgroup
(harness/cpu.py), read before and after each operation once what it started
has ended.

Medians, the wall ratios Applikant / plain, and the server CPU Applikant adds.
Goals: wall ratios ls-remote <= 1.10, push <= 1.15, clone <= 1.03, conc10 <=
1.20; server CPU over plain git <= 20 ms for ls-remote, <= 35 ms for a push.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from applikant.ops.sshd import make_client_key
from harness.account import ServiceAccount
from harness.cpu import ServerCpu
from harness.gitenv import GitSite, git_env

from . import common

TARGETS = {"ls_remote": 1.10, "push": 1.15, "clone": 1.03, "conc10": 1.20}
CPU_TARGETS = {"ls_remote": 20.0, "push": 35.0}  # server CPU ms over plain git
SAFE_ANYWHERE = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory"}
SAFE_ANYWHERE["GIT_CONFIG_VALUE_0"] = "*"


def _git(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> None:
    # This process may work on the service account's repositories (setup).
    env = {**(env or os.environ), **SAFE_ANYWHERE}
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        input=input,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if proc.returncode:
        raise RuntimeError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace')}")


def fast_import_stream(commits: int, blob_size: int, files: int, seed: int = 4) -> bytes:
    """A `git fast-import` stream: `commits` commits on main, each rewriting one of
    `files` files with `blob_size` random (incompressible) bytes."""
    rnd = random.Random(seed)
    out = bytearray()
    for i in range(commits):
        data = rnd.randbytes(blob_size)
        msg = f"commit {i}\n".encode()
        out += b"commit refs/heads/main\n"
        out += f"committer Bench <b@example.org> {1700000000 + i} +0000\n".encode()
        out += b"data %d\n%s" % (len(msg), msg)
        out += f"M 644 inline data/f{i % files}.bin\n".encode()
        out += b"data %d\n%s\n" % (len(data), data)
    return bytes(out)


class Bench:
    def __init__(self, tmp: Path, account: ServiceAccount | None) -> None:
        self.tmp = tmp
        self.account = account
        self.plain_keys = tmp / "plain_keys"
        self.plain_root = tmp / "plain"
        self.plain_root.mkdir()
        self.site = GitSite(tmp / "site", extra_keys_files=(self.plain_keys,), account=account)
        self.n = 0
        self.cpu: ServerCpu | None = None

    def setup(self) -> None:
        site = self.site
        self.user = site.add_user("bench")
        key, pub = make_client_key(self.tmp, name="id_plain")
        self.plain_key = key
        self.plain_keys.write_text(pub + "\n")
        self.plain_keys.chmod(0o600)
        if self.account is not None:
            self.account.own(self.plain_keys)
        self.ssh = {
            "app": site.sshd.ssh_command(self.user.key),
            "plain": site.sshd.ssh_command(key),
        }
        self.env = {side: git_env(site.home, GIT_SSH_COMMAND=cmd) for side, cmd in self.ssh.items()}
        for name in ("small", "big", "push"):
            site.create_repo(f"bench/{name}")
            _git("init", "-q", "--bare", "-b", "main", str(self.plain_root / f"{name}.git"))
        # big gets the generated history, made here, then small and push one commit
        big_plain = self.plain_root / "big.git"
        stream = fast_import_stream(3000, 10_000, 60)
        _git("--git-dir", str(big_plain), "fast-import", "--quiet", input=stream)
        _git("--git-dir", str(big_plain), "repack", "-adq")
        big_app = self.site.repo_root / "bench" / "big.git"
        # the same objects, packed the same way; fetch runs no receive hooks
        _git(
            "--git-dir",
            str(big_app),
            "fetch",
            "-q",
            str(big_plain),
            "refs/heads/*:refs/heads/*",
            env=git_env(site.home),
        )
        _git("--git-dir", str(big_app), "repack", "-adq")
        self.big_mb = (
            sum(p.stat().st_size for p in (big_plain / "objects" / "pack").glob("*.pack")) / 1e6
        )
        if self.account is not None:  # the plain side's repos are the account's too
            self.account.own(self.plain_root)
            self.account.own(big_app)
        seed = self.tmp / "seed"
        _git("init", "-q", "-b", "main", str(seed), env=git_env(site.home))
        (seed / "README").write_text("bench\n")
        _git("add", "README", cwd=seed, env=git_env(site.home))
        _git("commit", "-q", "-m", "seed", cwd=seed, env=git_env(site.home))
        for name in ("small", "push"):
            for side in ("app", "plain"):
                _git("push", "-q", self.url(side, name), "main", cwd=seed, env=self.env[side])
        # working copies for the push measurements
        self.work: dict[str, list[Path]] = {"app": [], "plain": []}
        for side in ("app", "plain"):
            for i in range(10):
                w = self.tmp / f"w-{side}-{i}"
                _git("clone", "-q", self.url(side, "push"), str(w), env=self.env[side])
                self.work[side].append(w)

    def url(self, side: str, name: str) -> str:
        if side == "app":
            return self.site.url(f"bench/{name}")
        return self.site.sshd.url(str(self.plain_root / f"{name}.git"))

    def commit(self, work: Path) -> None:
        self.n += 1
        (work / "file").write_text(f"{self.n}\n")
        env = git_env(self.site.home)
        _git("add", "file", cwd=work, env=env)
        _git("commit", "-q", "-m", str(self.n), cwd=work, env=env)

    # ---- measurements: (wall ms, server CPU ms) ---------------------------------

    def start_counting(self) -> ServerCpu:
        site = self.site
        pids = [site.sshd.pid, *(p.pid for p in site.cluster.procs if p.alive())]
        self.cpu = ServerCpu([pid for pid in pids if pid is not None])
        return self.cpu

    def timed(self, fn: Callable[[], None]) -> tuple[float, float]:
        assert self.cpu is not None
        return self.cpu.measure(fn)

    def ls_remote(self, side: str) -> tuple[float, float]:
        return self.timed(lambda: _git("ls-remote", self.url(side, "small"), env=self.env[side]))

    def push(self, side: str) -> tuple[float, float]:
        w = self.work[side][0]
        self.commit(w)
        return self.timed(
            lambda: _git(
                "push",
                "-q",
                self.url(side, "push"),
                "HEAD:refs/heads/one",
                "--force",
                cwd=w,
                env=self.env[side],
            )
        )

    def clone(self, side: str) -> tuple[float, float]:
        dest = self.tmp / f"clone-{side}-{self.n}"
        self.n += 1
        t = self.timed(
            lambda: _git(
                "clone", "-q", "--bare", self.url(side, "big"), str(dest), env=self.env[side]
            )
        )
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        return t

    def conc10(self, side: str) -> tuple[float, float]:
        works = self.work[side]
        for w in works:
            self.commit(w)

        def push(i: int) -> None:
            _git(
                "push",
                "-q",
                "--force",
                self.url(side, "push"),
                f"HEAD:refs/heads/b{i}",
                cwd=works[i],
                env=self.env[side],
            )

        def all10() -> None:
            with ThreadPoolExecutor(10) as pool:
                list(pool.map(push, range(10)))

        return self.timed(all10)


Runs = dict[str, list[tuple[float, float]]]


def interleaved(fn: Callable[[str], tuple[float, float]], runs: int, warmup: int = 1) -> Runs:
    out: Runs = {"app": [], "plain": []}
    for i in range(warmup + runs):
        order = ("app", "plain") if i % 2 == 0 else ("plain", "app")
        for side in order:
            t = fn(side)
            if i >= warmup:
                out[side].append(t)
    return out


def main() -> None:
    p = common.parser(__doc__ or "")
    # Single runs swing by 10-20 % on a shared machine: enough of them that the
    # median holds still (15, 5 and 7 until stop 22).
    p.add_argument("--runs", type=int, default=31, help="runs of ls-remote and push (each side)")
    p.add_argument("--clone-runs", type=int, default=7)
    p.add_argument("--conc-runs", type=int, default=15)
    p.add_argument(
        "--as-me",
        action="store_true",
        help="log in as the user running the bench instead of a service account (not root's "
        "start-up files: they flatter the ratios)",
    )
    args = p.parse_args()
    account = None if args.as_me else ServiceAccount("akssh")
    try:
        if account is not None:
            account.create()
            tmp = account.base
        else:
            tmp = Path(tempfile.mkdtemp(prefix="applikant-bench-ssh-"))
        bench = Bench(tmp, account)
        with bench.site:
            bench.setup()
            with bench.start_counting() as cpu:
                results = {
                    "ls_remote": interleaved(bench.ls_remote, args.runs),
                    "push": interleaved(bench.push, args.runs),
                    "clone": interleaved(bench.clone, args.clone_runs),
                    "conc10": interleaved(bench.conc10, args.conc_runs),
                }
            how = cpu.how
    finally:
        if account is not None:
            account.close()
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    user = account.name if account else pwd.getpwuid(os.geteuid()).pw_name
    result: dict[str, object] = {
        "runs": args.runs,
        "clone_runs": args.clone_runs,
        "conc_runs": args.conc_runs,
        "big_repo_mb": round(bench.big_mb, 1),
        "service_user": user,
        "cpu_counted_by": how,
    }
    rows = [
        ("big repo", f"3000 commits, {bench.big_mb:.1f} MB packed"),
        ("logged in as", f"{user} (server CPU counted by {how})"),
    ]
    for name, sides in results.items():
        app = common.median([w for w, _ in sides["app"]])
        plain = common.median([w for w, _ in sides["plain"]])
        app_cpu = common.median([c for _, c in sides["app"]])
        plain_cpu = common.median([c for _, c in sides["plain"]])
        ratio = app / plain
        result[f"{name}_app_ms"] = round(app, 1)
        result[f"{name}_plain_ms"] = round(plain, 1)
        result[f"{name}_ratio"] = round(ratio, 3)
        result[f"{name}_app_server_cpu_ms"] = round(app_cpu, 1)
        result[f"{name}_plain_server_cpu_ms"] = round(plain_cpu, 1)
        result[f"{name}_server_cpu_ms_over_plain"] = round(app_cpu - plain_cpu, 1)
        goal = f", goal <= {CPU_TARGETS[name]:.0f}" if name in CPU_TARGETS else ""
        rows.append(
            (
                name,
                f"applikant {app:7.1f} ms   plain {plain:7.1f} ms   "
                f"ratio {ratio:.2f}x (goal <= {TARGETS[name]}x)   server CPU "
                f"{app_cpu:6.1f} vs {plain_cpu:6.1f} ms (+{app_cpu - plain_cpu:.1f}{goal})",
            )
        )
    common.report(rows, result, args.json)


if __name__ == "__main__":
    os.environ.pop("GIT_DIR", None)
    main()
