"""aw over HTTP: git clone through aw's smart HTTP against the local limit, and
requests/second for the repository list page and `GET /api/repos`.

- clone: a bare clone of a generated repository of ~3,000 commits over aw
  (anonymous, public repository) against `git clone --no-local` of the same bare
  repository on disk, runs interleaved; medians and the ratio (target <= 1.2x).
- repo_list / api_repos: with 1,000 repositories, `GET /repos` as a logged-in
  site admin (the page shows 100 per page) and `GET /api/repos` with an API token
  (the first page, 50, as JSON), from `--clients` concurrent HTTP/1.1 keep-alive clients
  for `--seconds` each.

    .venv/bin/python -m bench.http [--json] [--runs 3] [--repos 1000]
"""

from __future__ import annotations

import statistics
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

TARGET_CLONE = 1.2


def _git(*args: str, env: dict[str, str], input: bytes | None = None) -> None:
    proc = subprocess.run(
        ["git", *args],
        env=env,
        input=input,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if proc.returncode:
        raise RuntimeError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace')}")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def rps(base: str, path: str, clients: int, seconds: float, **client_kwargs) -> float:
    """Requests/second for GET `path` from `clients` threads with keep-alive clients."""
    count, took = requests(base, path, clients, seconds, **client_kwargs)
    return count / took


def requests(
    base: str, path: str, clients: int, seconds: float, **client_kwargs
) -> tuple[int, float]:
    """(requests answered, seconds taken) for GET `path` from `clients` threads
    with keep-alive clients, for about `seconds`."""
    counts = [0] * clients
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=base, timeout=30, **client_kwargs) as c:
            while True:  # at least one request each, however late the thread starts
                r = c.get(path)
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code}")
                    return
                counts[i] += 1
                if time.perf_counter() >= stop:
                    return

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return sum(counts), time.perf_counter() - start


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="clone runs per side")
    p.add_argument("--repos", type=int, default=1000)
    p.add_argument("--commits", type=int, default=3000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="applikant-bench-http-") as tmp:
        tmpd = Path(tmp)
        with WebSite(tmpd / "site") as site:
            env = git_env(site.home)
            # The big repository: generated once, the same bare repo on both sides.
            site.create_repo(f"{ADMIN_LOGIN}/big", is_public=True)
            big = site.repo_root / ADMIN_LOGIN / "big.git"
            _git(
                "--git-dir",
                str(big),
                "fast-import",
                "--quiet",
                env=env,
                input=fast_import_stream(args.commits, 10_000, 60),
            )
            _git("--git-dir", str(big), "repack", "-adq", env=env)
            pack_mb = sum(f.stat().st_size for f in (big / "objects" / "pack").glob("*.pack")) / 1e6
            url = f"{site.base}/{ADMIN_LOGIN}/big.git"
            times: dict[str, list[float]] = {"aw": [], "local": []}
            for i in range(args.runs + 1):  # the first round warms the page cache
                for side in ("aw", "local"):
                    dest = tmpd / f"clone-{side}-{i}"
                    src = url if side == "aw" else str(big)
                    extra = [] if side == "aw" else ["--no-local"]
                    t = _timed(
                        lambda extra=extra, src=src, dest=dest: _git(
                            "clone", "-q", "--bare", *extra, src, str(dest), env=env
                        )
                    )
                    subprocess.run(["rm", "-rf", str(dest)], check=True)
                    if i:
                        times[side].append(t)
            aw_clone = statistics.median(times["aw"])
            local_clone = statistics.median(times["local"])

            # 1,000 repositories (am records them; af makes them on disk).
            existing = len(site.call_am("am_repo_db", "list_repos", {"limit": 1000})["items"])
            for i in range(existing, args.repos):
                site.call_am(
                    "am_repo_db",
                    "create_repo",
                    {
                        "path": f"{ADMIN_LOGIN}/repo{i:04d}",
                        "description": f"repository {i}",
                        "is_public": i % 2 == 0,
                    },
                )
            total = existing + max(0, args.repos - existing)
            token = site.token_for(site.admin_id)
            admin = site.admin_client()
            cookies = dict(admin.cookies)
            first = httpx.get(
                f"{site.base}/api/repos", headers={"authorization": f"Bearer {token}"}
            )
            assert first.status_code == 200 and first.json(), first.text
            api = rps(
                site.base,
                "/api/repos",
                args.clients,
                args.seconds,
                headers={"authorization": f"Bearer {token}"},
            )
            page = rps(site.base, "/repos", args.clients, args.seconds, cookies=cookies)
    ratio = aw_clone / local_clone
    result = {
        "clone_ratio": round(ratio, 3),
        "clone_aw_s": round(aw_clone, 3),
        "clone_local_s": round(local_clone, 3),
        "clone_pack_mb": round(pack_mb, 1),
        "commits": args.commits,
        "repos": total,
        "api_repos_rps": round(api, 1),
        "repo_list_rps": round(page, 1),
        "clients": args.clients,
        "clone_target": TARGET_CLONE,
        "clone_within_target": ratio <= TARGET_CLONE,
    }
    rows = [
        (
            "clone over aw (median)",
            f"{aw_clone:.3f} s  ({pack_mb:.1f} MB pack, {args.commits} commits)",
        ),
        ("clone --no-local (median)", f"{local_clone:.3f} s"),
        ("clone ratio", f"{ratio:.2f}x  (target <= {TARGET_CLONE}x)"),
        (f"GET /api/repos ({total} repos)", f"{api:.1f} req/s  ({args.clients} clients)"),
        (f"GET /repos page ({total} repos)", f"{page:.1f} req/s  ({args.clients} clients)"),
    ]
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
