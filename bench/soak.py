"""aw's memory under a long mixed load: does its RSS stay flat after warm-up?

--requests requests (100,000 by default) from --clients clients, in a fixed
mix (--mix): repository pages (home, tree, file, commit, history) and the API
(`GET /api/repos`, `GET /api/repos/OWNER/NAME`) on kept connections, and HTTP
clones, each on a connection of its own as git makes them (two requests:
`info/refs` and a `git-upload-pack` POST whose whole pack is read). aw's RSS is read from /proc every --sample
requests; the verdict is its growth from request --warmup (10,000) to the last
(goal: under 10%).

    .venv/bin/python -m bench.soak [--json] [--requests 100000] [--clients 4]
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.ssh import fast_import_stream
from harness.gitenv import git_env
from harness.web import ADMIN_LOGIN, WebSite

from . import common

GOAL = 0.10
REPO = f"{ADMIN_LOGIN}/soak"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pkt(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


class Load:
    """The request mix, by kind; each call makes one request and checks it."""

    def __init__(self, site: WebSite, token: str, head: str, path: str) -> None:
        self.site = site
        self.scratch = site.tmp
        self.auth = {"authorization": f"Bearer {token}"}
        self.head = head
        base = f"/{REPO}"
        self.pages = [
            base,
            f"{base}/tree?ref=main&path=data",
            f"{base}/blob?ref=main&path={path}",
            f"{base}/commit/{head}",
            f"{base}/commits?ref=main",
        ]
        self.api = ["/api/repos", f"/api/repos/{REPO}"]
        self.want = pkt(f"want {head} ofs-delta side-band-64k no-progress\n") + b"0000"
        self.want += pkt("done\n")

    @staticmethod
    def plan(mix: str) -> list[str]:
        """One round of the mix ``pages,api,clones,git clones,fresh clones``
        (``5,2,0,0,1``: five pages, two API calls on kept connections, one clone
        of two requests on a connection of its own, as git makes it); a *git
        clone* is made by git itself (protocol v2, three requests)."""
        counts = [int(n) for n in (mix + ",0,0").split(",")[:5]]
        kinds = ("page", "api", "clone", "git", "fresh")
        return [kind for kind, n in zip(kinds, counts, strict=True) for _ in range(n)]

    def run(self, client: httpx.Client, kind: str, i: int) -> int:
        """Make the requests of one `kind`; how many were made."""
        if kind == "page":
            r = client.get(self.pages[i % len(self.pages)])
            r.raise_for_status()
            return 1
        if kind == "api":
            r = client.get(self.api[i % len(self.api)], headers=self.auth)
            r.raise_for_status()
            return 1
        if kind == "git":
            dest = self.scratch / f"clone-{threading.get_ident()}"
            subprocess.run(
                ["git", "clone", "-q", "--bare", f"{self.site.base}/{REPO}.git", str(dest)],
                env=git_env(self.site.home),
                check=True,
                capture_output=True,
            )
            shutil.rmtree(dest)
            return 3
        if kind == "fresh":  # a clone on a connection of its own, as git makes it
            with httpx.Client(base_url=self.site.base, timeout=60, verify=False) as fresh:
                return self.run(fresh, "clone", i)
        git = f"/{REPO}.git"
        r = client.get(f"{git}/info/refs", params={"service": "git-upload-pack"})
        r.raise_for_status()
        assert self.head.encode() in r.content
        size = 0
        with client.stream(
            "POST",
            f"{git}/git-upload-pack",
            content=self.want,
            headers={"content-type": "application/x-git-upload-pack-request"},
        ) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                size += len(chunk)
        assert size > 1000, size
        return 2


def soak(
    site: WebSite, load: Load, plan: list[str], requests: int, clients: int, sample: int
) -> list[tuple[int, int]]:
    """Run the load; [(requests so far, aw's RSS in KiB)] every `sample` requests."""
    assert site.aw_proc is not None
    pid = site.aw_proc.pid
    done = [0]
    lock = threading.Lock()
    samples: list[tuple[int, int]] = [(0, rss_kib(pid))]
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        with httpx.Client(base_url=site.base, timeout=60) as client:
            for i in itertools.count(w):
                with lock:
                    if done[0] >= requests or errors:
                        return
                try:
                    made = load.run(client, plan[i % len(plan)], i // len(plan))
                except BaseException as exc:  # a failed request ends the soak, said below
                    errors.append(exc)
                    return
                with lock:
                    before = done[0]
                    done[0] += made
                    if done[0] // sample > before // sample:
                        samples.append((done[0], rss_kib(pid)))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"the soak stopped at request {done[0]}: {errors[0]!r}")
    samples.append((done[0], rss_kib(pid)))
    return samples


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--warmup", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--sample", type=int, default=5_000)
    p.add_argument("--commits", type=int, default=300, help="commits in the cloned repository")
    p.add_argument(
        "--mix",
        default="5,2,0,0,1",
        help="pages, API calls, clones on a kept connection, git clones (git itself), "
        "clones on a connection of their own (as git makes them), in each round",
    )
    p.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for aw (e.g. MALLOC_ARENA_MAX=2)"
    )
    args = p.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="applikant-bench-soak-") as tmp:
        site = WebSite(Path(tmp) / "site")
        for item in args.env:
            name, _, value = item.partition("=")
            site.env[name] = value
        with site:
            site.create_repo(REPO, is_public=True)
            git_dir = site.repo_root / f"{REPO}.git"
            subprocess.run(
                ["git", "--git-dir", str(git_dir), "fast-import", "--quiet"],
                input=fast_import_stream(args.commits, 2_000, 40),
                env=git_env(site.home),
                check=True,
            )
            head = subprocess.run(
                ["git", "--git-dir", str(git_dir), "rev-parse", "refs/heads/main"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            load = Load(site, site.token_for(site.admin_id), head, "data/f1.bin")
            plan = Load.plan(args.mix)
            samples = soak(site, load, plan, args.requests, args.clients, args.sample)
    at_warmup = next((kib for n, kib in samples if n >= args.warmup), samples[-1][1])
    final = samples[-1][1]
    growth = (final - at_warmup) / at_warmup
    seconds = time.monotonic() - started
    result = {
        "requests": samples[-1][0],
        "clients": args.clients,
        "rss_start_kib": samples[0][1],
        "rss_warmup_kib": at_warmup,
        "rss_end_kib": final,
        "growth_after_warmup": round(growth, 4),
        "goal": GOAL,
        "within_goal": growth < GOAL,
        "samples": samples,
        "env": args.env,
        "mix": args.mix,
        "seconds": round(seconds, 1),
    }
    rows = [
        ("requests", f"{samples[-1][0]} ({args.clients} clients, {seconds:.0f} s)"),
        (
            "aw RSS",
            f"start {samples[0][1] / 1024:.1f} MiB, at {args.warmup} "
            f"{at_warmup / 1024:.1f} MiB, end {final / 1024:.1f} MiB",
        ),
        ("growth after warm-up", f"{growth * 100:.1f}% (goal < {GOAL * 100:.0f}%)"),
    ]
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
