"""aw's code pages against the git command that computes the same data.

On a generated repository of about 3,000 commits (320 source files in 40
directories; src/core.py, 600 lines, changed by every fifth commit; a branch
`feature` of 40 commits from near the tip), each page is fetched by a logged-in
user (private repository, so the permission check is part of it) and timed
against its git command run directly on the bare repository:

    tree     GET /o/r                         git ls-tree -l main
    blob     GET /o/r/blob?path=src/core.py   git cat-file -p main:src/core.py
    commit   GET /o/r/commit/SHA              git show SHA
    blame    GET /o/r/blame?path=src/core.py  git blame main -- src/core.py
    history  GET /o/r/commits?path=...        git log -n51 main -- src/core.py (one page)
    compare  GET /o/r/compare/main...feature  git diff main...feature
    archive  GET /o/r/archive/main.tar.gz     git archive --format=tar.gz main

Runs are interleaved (page, git, page, git...) after one cold request, whose
time is reported too. `ratios` is page median / git median (warm pages); the
goal is <= 1.5 for each.

Both sides are timed through the standard library: git through `subprocess`, a
page through `http.client` on one kept-alive connection with the session cookie
(status checked, body read whole). `--client httpx` times the pages through
httpx instead, whose own Python work (request and response models, URL and
cookie merging, its pool) adds about 0.6 ms to every page: a third of
`git ls-tree`, and neither aw's work nor the network's.

What a warm page reuses (nothing that could go stale):
- what was computed from immutable object ids, in bounded LRUs: trees, logs and
  the last commit of each entry at a commit id, objects by `<commit id>:<path>`,
  highlighted lines and Markdown by blob id, diffs, blame;
- the refs, until a file under refs/ or packed-refs changes (a push shows at once);
- one long-lived `git cat-file --batch-command` per repository (closed when idle).
What it never reuses: the session and the access decision (am answers both on
every request, in one round trip), build states. So a warm page runs no git
process, and its time is that round trip, the HTTP exchange and the HTML.
`floor_ms` is that fixed part alone: GET /o/r/tags (an authenticated page with
no git work), warm. `cold_ms` is the first request of each page: its own results
are not cached yet, though the refs, the cat-file process and Pygments' lexers
may be warm from the pages before it.

    .venv/bin/python -m bench.browse [--json] [--runs 15] [--commits 3000] [--client httpx]
"""

from __future__ import annotations

import http.client
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from harness.gitenv import git_env
from harness.web import WebSite, csrf_of

from . import common

GOAL = 1.5
OWNER, PASSWORD = "bencher", "bencher-pass-1"
REPO = f"{OWNER}/code"
DIRS, FILES_PER_DIR, LINES = 40, 8, 200
CORE_LINES = 600
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "value",
    "result",
    "count",
    "index",
    "item",
    "name",
    "total",
    "state",
]


def _line(rnd: random.Random, n: int) -> str:
    a, b = rnd.choice(WORDS), rnd.choice(WORDS)
    return f"    {a}_{n} = compute({b}, {rnd.randint(0, 999)})  # {a} {b}\n"


def _source(rnd: random.Random, lines: int) -> list[str]:
    return ['"""Generated module."""\n', "\n", "def main():\n"] + [
        _line(rnd, i) for i in range(lines - 3)
    ]


def generate(commits: int, feature: int = 40, seed: int = 14) -> bytes:
    """A fast-import stream for the repository described in the module docstring."""
    rnd = random.Random(seed)
    files = {
        f"pkg{d:02d}/mod{f}.py": _source(rnd, LINES)
        for d in range(DIRS)
        for f in range(FILES_PER_DIR)
    }
    files["src/core.py"] = _source(rnd, CORE_LINES)
    files["README.md"] = ["# Generated\n", "\n", "A repository for bench.browse.\n"]
    names = sorted(n for n in files if n.endswith(".py"))
    out = bytearray()
    mark = 0

    def commit(branch: str, i: int, changed: dict[str, list[str]], parent: int | None) -> None:
        nonlocal mark
        mark += 1
        msg = f"Change {i}: {', '.join(sorted(changed))}\n".encode()
        out.extend(f"commit refs/heads/{branch}\nmark :{mark}\n".encode())
        out.extend(f"committer Bench <b@example.org> {1_700_000_000 + i * 600} +0000\n".encode())
        out.extend(b"data %d\n%s" % (len(msg), msg))
        if parent is not None:
            out.extend(f"from :{parent}\n".encode())
        for name, lines in sorted(changed.items()):
            data = "".join(lines).encode()
            out.extend(f"M 100644 inline {name}\n".encode() + b"data %d\n%s\n" % (len(data), data))

    def mutate(name: str, count: int) -> dict[str, list[str]]:
        lines = files[name]
        for _ in range(count):
            at = rnd.randrange(3, len(lines))
            lines[at] = _line(rnd, at)
        return {name: list(lines)}

    commit("main", 0, dict(files), None)
    branch_point = 0
    for i in range(1, commits):
        changed = mutate(rnd.choice(names), rnd.randint(1, 6))
        if i % 5 == 0:
            changed.update(mutate("src/core.py", rnd.randint(1, 8)))
        commit("main", i, changed, None)
        if i == commits - 60:
            branch_point = mark
    saved = {n: list(v) for n, v in files.items()}
    parent: int | None = branch_point
    for j in range(feature):
        changed = mutate(rnd.choice(names), rnd.randint(1, 6))
        commit("feature", commits + j, changed, parent)
        parent = None
    files.update(saved)
    return bytes(out)


def _git(path: Path, *args: str, env: dict[str, str], input: bytes | None = None) -> bytes:
    proc = subprocess.run(
        ["git", f"--git-dir={path}", *args],
        env=env,
        input=input,
        capture_output=True,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if proc.returncode:
        raise RuntimeError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


class _Pages:
    """GETs pages as the logged-in httpx `client`, through `kind`: "stdlib"
    (http.client on one kept-alive connection, with the client's cookies) or
    "httpx" (the client itself). `get` raises unless the answer is a 200 read whole."""

    def __init__(self, client: httpx.Client, kind: str) -> None:
        self.client, self.kind = client, kind
        url = urlsplit(str(client.base_url))
        self.conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=60)
        self.headers = {"cookie": "; ".join(f"{k}={v}" for k, v in client.cookies.items())}

    def get(self, path: str) -> None:
        if self.kind == "httpx":
            r = self.client.get(path)
            status, body = r.status_code, r.content
        else:
            self.conn.request("GET", path, headers=self.headers)
            answer = self.conn.getresponse()
            status, body = answer.status, answer.read()
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}: {body[:200]!r}")

    def close(self) -> None:
        self.conn.close()
        self.client.close()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15, help="timed runs per page and per git command")
    p.add_argument("--commits", type=int, default=3000)
    p.add_argument(
        "--client",
        choices=("stdlib", "httpx"),
        default="stdlib",
        help="what times the pages (see the module docstring)",
    )
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="applikant-bench-browse-") as tmp:
        with WebSite(Path(tmp) / "site") as site:
            site.user_with_password(OWNER, PASSWORD)
            site.create_repo(REPO)
            bare = site.repo_root / OWNER / "code.git"
            env = git_env(site.home)
            _git(bare, "fast-import", "--quiet", env=env, input=generate(args.commits))
            _git(bare, "repack", "-adq", env=env)
            count = int(_git(bare, "rev-list", "--count", "--all", env=env))
            sha = _git(bare, "rev-parse", "main~3", env=env).decode().strip()
            cases = {
                "tree": (f"/{REPO}", ["ls-tree", "-l", "main"]),
                "blob": (f"/{REPO}/blob?path=src/core.py", ["cat-file", "-p", "main:src/core.py"]),
                "commit": (f"/{REPO}/commit/{sha}", ["show", sha]),
                "blame": (
                    f"/{REPO}/blame?path=src/core.py",
                    ["blame", "main", "--", "src/core.py"],
                ),
                "history": (
                    f"/{REPO}/commits?path=src/core.py",
                    ["log", "-n51", "main", "--", "src/core.py"],
                ),
                "compare": (f"/{REPO}/compare/main...feature", ["diff", "main...feature"]),
                "archive": (
                    f"/{REPO}/archive/main.tar.gz",
                    ["archive", "--format=tar.gz", "main"],
                ),
            }
            client = httpx.Client(base_url=site.base, timeout=60)
            page = client.get("/login")
            client.post(
                "/login",
                data={
                    "login": OWNER,
                    "password": PASSWORD,
                    "next": "/",
                    "csrf": csrf_of(page.text),
                },
            )

            pages_client = _Pages(client, args.client)
            fetch = pages_client.get
            fetch(f"/{REPO}/tags")
            floor = statistics.median(
                _timed(lambda: fetch(f"/{REPO}/tags")) for _ in range(args.runs)
            )
            results: dict[str, dict[str, float]] = {}
            for name, (path, git_args) in cases.items():
                cold = _timed(lambda path=path: fetch(path))
                pages: list[float] = []
                gits: list[float] = []
                for _ in range(args.runs):
                    pages.append(_timed(lambda path=path: fetch(path)))
                    gits.append(_timed(lambda a=git_args: _git(bare, *a, env=env)))
                results[name] = {
                    "cold_ms": cold * 1000,
                    "page_ms": statistics.median(pages) * 1000,
                    "git_ms": statistics.median(gits) * 1000,
                }
            pages_client.close()
    ratios = {name: round(r["page_ms"] / r["git_ms"], 2) for name, r in results.items()}
    rows = [("page", "page ms (cold)   git ms   ratio   git command")]
    for name, r in results.items():
        rows.append(
            (
                name,
                f"{r['page_ms']:7.1f} ({r['cold_ms']:6.1f})  {r['git_ms']:7.1f}  {ratios[name]:5.2f}x"
                f"  git {' '.join(cases[name][1])}",
            )
        )
    rows.append(
        ("floor", f"{floor * 1000:7.1f}  (GET /{REPO}/tags: session, access, HTML; no git)")
    )
    rows.append(("commits", str(count)))
    rows.append(("goal", f"each ratio <= {GOAL}"))
    result = {
        "ratios": ratios,
        "pages": {n: {k: round(v, 2) for k, v in r.items()} for n, r in results.items()},
        "floor_ms": round(floor * 1000, 2),
        "commits": count,
        "runs": args.runs,
        "client": args.client,
        "goal": GOAL,
        "within_goal": {n: v <= GOAL for n, v in ratios.items()},
    }
    common.report(rows, result, args.json)


if __name__ == "__main__":
    main()
