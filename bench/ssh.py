"""Git over SSH through one sshd: Applikant (forced command `as`, hooks `ah`, af,
am) against plain git over SSH (a key with no forced command, the same content,
no hooks), runs interleaved:

- ls-remote: `git ls-remote` of a small repo;
- push: a one-commit push to a branch;
- clone: a bare clone of a generated repository of ~3,000 commits (~30 MB packed);
- conc10: 10 concurrent one-commit pushes to 10 branches, wall time for all 10.

Medians, and the ratios Applikant / plain. Targets: ls-remote <= 1.15x,
push <= 1.2x, clone <= 1.05x, conc10 <= 1.4x.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from applikant.ops.sshd import make_client_key
from harness.gitenv import GitSite, git_env

from . import common

TARGETS = {"ls_remote": 1.15, "push": 1.2, "clone": 1.05, "conc10": 1.4}


def _git(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: bytes | None = None,
) -> None:
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
    def __init__(self, tmp: Path, runs: int, clone_runs: int, conc_runs: int) -> None:
        self.tmp = tmp
        self.runs, self.clone_runs, self.conc_runs = runs, clone_runs, conc_runs
        self.plain_keys = tmp / "plain_keys"
        self.plain_root = tmp / "plain"
        self.plain_root.mkdir()
        self.site = GitSite(tmp / "site", extra_keys_files=(self.plain_keys,))
        self.n = 0

    def setup(self) -> None:
        site = self.site
        self.user = site.add_user("bench")
        key, pub = make_client_key(self.tmp, name="id_plain")
        self.plain_key = key
        self.plain_keys.write_text(pub + "\n")
        self.plain_keys.chmod(0o600)
        self.ssh = {
            "app": site.sshd.ssh_command(self.user.key),
            "plain": site.sshd.ssh_command(key),
        }
        self.env = {side: git_env(site.home, GIT_SSH_COMMAND=cmd) for side, cmd in self.ssh.items()}
        for name in ("small", "big", "push"):
            site.create_repo(f"bench/{name}")
            _git("init", "-q", "--bare", "-b", "main", str(self.plain_root / f"{name}.git"))
        # content: small and push get one commit, big gets the generated history
        seed = self.tmp / "seed"
        _git("init", "-q", "-b", "main", str(seed), env=git_env(site.home))
        (seed / "README").write_text("bench\n")
        _git("add", "README", cwd=seed, env=git_env(site.home))
        _git("commit", "-q", "-m", "seed", cwd=seed, env=git_env(site.home))
        for name in ("small", "push"):
            for side in ("app", "plain"):
                _git("push", "-q", self.url(side, name), "main", cwd=seed, env=self.env[side])
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

    # ---- measurements -------------------------------------------------------

    def ls_remote(self, side: str) -> float:
        return _timed(lambda: _git("ls-remote", self.url(side, "small"), env=self.env[side]))

    def push(self, side: str) -> float:
        w = self.work[side][0]
        self.commit(w)
        return _timed(
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

    def clone(self, side: str) -> float:
        dest = self.tmp / f"clone-{side}-{self.n}"
        self.n += 1
        t = _timed(
            lambda: _git(
                "clone", "-q", "--bare", self.url(side, "big"), str(dest), env=self.env[side]
            )
        )
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        return t

    def conc10(self, side: str) -> float:
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

        return _timed(all10)


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def interleaved(fn: Callable[[str], float], runs: int, warmup: int = 1) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"app": [], "plain": []}
    for i in range(warmup + runs):
        order = ("app", "plain") if i % 2 == 0 else ("plain", "app")
        for side in order:
            t = fn(side)
            if i >= warmup:
                out[side].append(t)
    return out


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=15, help="runs of ls-remote and push (each side)")
    p.add_argument("--clone-runs", type=int, default=5)
    p.add_argument("--conc-runs", type=int, default=7)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="applikant-bench-ssh-") as tmp:
        bench = Bench(Path(tmp), args.runs, args.clone_runs, args.conc_runs)
        with bench.site:
            bench.setup()
            results = {
                "ls_remote": interleaved(bench.ls_remote, args.runs),
                "push": interleaved(bench.push, args.runs),
                "clone": interleaved(bench.clone, args.clone_runs),
                "conc10": interleaved(bench.conc10, args.conc_runs),
            }
    result: dict[str, object] = {
        "runs": args.runs,
        "clone_runs": args.clone_runs,
        "conc_runs": args.conc_runs,
        "big_repo_mb": round(bench.big_mb, 1),
    }
    rows = [("big repo", f"3000 commits, {bench.big_mb:.1f} MB packed")]
    for name, sides in results.items():
        app, plain = common.median(sides["app"]), common.median(sides["plain"])
        ratio = app / plain
        result[f"{name}_app_ms"] = round(app, 1)
        result[f"{name}_plain_ms"] = round(plain, 1)
        result[f"{name}_ratio"] = round(ratio, 3)
        rows.append(
            (
                name,
                f"applikant {app:7.1f} ms   plain {plain:7.1f} ms   "
                f"ratio {ratio:.2f}x (target <= {TARGETS[name]}x)",
            )
        )
    common.report(rows, result, args.json)


if __name__ == "__main__":
    os.environ.pop("GIT_DIR", None)
    main()
