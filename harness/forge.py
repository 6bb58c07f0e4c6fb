"""A repository with every kind of change a forge must show, for aw's code pages.

    known = build_known_repo(site, tmp)     # pushed as its owner to a private repo

Commits on main (oldest first):
  1. "Initial import": README.md (a table, a task list, strikethrough, an autolink,
     fenced Python, a relative image and link), docs/logo.png, docs/guide.md,
     src/app.py, old_name.txt, gone.txt, tool.sh, data.bin, page.html, pic.svg
  2. "Change many kinds of things": new.txt added, gone.txt deleted,
     old_name.txt renamed to new_name.txt, data.bin changed (binary),
     tool.sh made executable (mode change), src/app.py changed
  3. "Add a big file": big.txt, 10,000 lines
Branch feature/x (from 2): "Feature work" changing src/app.py. Tag v1.0 at 2.
A second repository, "many", has 120 small commits for paging.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.gitenv import User
from harness.web import WebSite

__all__ = ["PNG", "Known", "build_known_repo", "build_many_repo"]

# A real 2x2 PNG: the README's relative image must load in the browser.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)
README = """# Known repository

| Kind | Shown |
|------|-------|
| table | yes |

- [x] done
- [ ] open

~~struck~~ and https://example.org/autolink

```python
def greet(name):
    return f"hello {name}"
```

![logo](docs/logo.png)

See [the guide](docs/guide.md) and [the section](#known-repository).

<script>alert("no")</script> [bad](javascript:alert(1))
"""
APP_V1 = '''"""The app."""


def main():
    text = """a
multi-line string"""
    return text
'''
APP_V2 = APP_V1 + "\n\ndef helper():\n    return 42\n"
APP_FEATURE = APP_V2 + "\n\ndef feature():\n    return 'x'\n"


@dataclass
class Known:
    repo: str
    owner: User
    work: Path
    commits: list[str]  # main, oldest first
    feature: str  # the tip of feature/x

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work, capture_output=True, text=True, check=True
        ).stdout


def _commit(site: WebSite, work: Path, message: str) -> str:
    site.git(None, "add", "-A", cwd=work)
    site.git(None, "commit", "-q", "-m", message, cwd=work)
    return site.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()


def build_known_repo(site: WebSite, tmp: Path, owner: User, repo: str) -> Known:
    """`repo` (private, created here) with the commits above, pushed by `owner`."""
    site.create_repo(repo)
    work = tmp / "known"
    site.git(None, "init", "-q", "-b", "main", str(work))
    (work / "docs").mkdir()
    (work / "src").mkdir()
    (work / "README.md").write_text(README)
    (work / "docs" / "logo.png").write_bytes(PNG)
    (work / "docs" / "guide.md").write_text("# Guide\n\nBack to the [README](../README.md).\n")
    (work / "src" / "app.py").write_text(APP_V1)
    (work / "old_name.txt").write_text("renamed without changes\n" * 3)
    (work / "gone.txt").write_text("this file goes away\n")
    (work / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (work / "data.bin").write_bytes(bytes(range(256)) * 4)
    (work / "page.html").write_text("<html><script>alert(1)</script></html>\n")
    (work / "pic.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><script>alert(1)</script></svg>\n'
    )
    commits = [_commit(site, work, "Initial import")]
    (work / "new.txt").write_text("a new file\n")
    (work / "gone.txt").unlink()
    site.git(None, "mv", "old_name.txt", "new_name.txt", cwd=work)
    (work / "data.bin").write_bytes(bytes(range(255, -1, -1)) * 4)
    (work / "tool.sh").chmod(0o755)
    (work / "src" / "app.py").write_text(APP_V2)
    commits.append(_commit(site, work, "Change many kinds of things\n\nWith a body line."))
    site.git(None, "tag", "v1.0", cwd=work)
    site.git(None, "checkout", "-q", "-b", "feature/x", cwd=work)
    (work / "src" / "app.py").write_text(APP_FEATURE)
    feature = _commit(site, work, "Feature work")
    site.git(None, "checkout", "-q", "main", cwd=work)
    (work / "big.txt").write_text("".join(f"line {i}\n" for i in range(1, 10_001)))
    commits.append(_commit(site, work, "Add a big file"))
    site.git(None, "remote", "add", "origin", site.url(repo), cwd=work)
    site.push(
        owner, work, "main:refs/heads/main", "feature/x:refs/heads/feature/x", "refs/tags/v1.0"
    )
    return Known(repo, owner, work, commits, feature)


def build_many_repo(site: WebSite, tmp: Path, owner: User, repo: str, count: int = 120) -> str:
    """`repo` with `count` small commits on main (made with fast-import: quick); the tip."""
    site.create_repo(repo)
    work = tmp / "many"
    site.git(None, "init", "-q", "-b", "main", str(work))
    stream = []
    for i in range(1, count + 1):
        body = f"change {i}\n".encode()
        msg = f"Commit number {i}\n".encode()
        stream.append(
            b"commit refs/heads/main\n"
            + f"committer t <t@example.org> {1_700_000_000 + i * 60} +0000\n".encode()
            + b"data %d\n%s" % (len(msg), msg)
            + b"M 100644 inline file.txt\ndata %d\n%s\n" % (len(body), body)
        )
    subprocess.run(
        ["git", "fast-import", "--quiet"],
        cwd=work,
        input=b"".join(stream),
        check=True,
        capture_output=True,
    )
    site.git(None, "reset", "-q", "--hard", "main", cwd=work)
    site.git(None, "remote", "add", "origin", site.url(repo), cwd=work)
    site.push(owner, work, "main:refs/heads/main")
    return site.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()
