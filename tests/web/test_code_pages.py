"""The forge pages through a real aw on a known repository (harness/forge.py):
diffs of known commits, blame and history against git's own output, raw files
served safely, archives that unpack to the tree, paging, bad input in words,
and private repositories answering 404 on every route."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from harness.forge import PNG, Known
from harness.web import WebSite

from .conftest import KNOWN as REPO


@pytest.fixture
def owner(site: WebSite, known: Known) -> httpx.Client:
    return site.login("kowner", "kowner-pass-1")


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_commit_page_shows_each_kind_of_change(owner: httpx.Client, known: Known) -> None:
    sha = known.commits[1]
    r = owner.get(f"/{REPO}/commit/{sha}")
    assert r.status_code == 200, r.text[:300]
    html = r.text
    text = _text(html)
    assert "Change many kinds of things" in text and "With a body line." in text
    assert f'href="/{REPO}/commit/{known.commits[0]}"' in html  # the parent, linked
    files = _text(html.split('id="changed-files"')[1].split("</ul>")[0])
    for needle in (
        "A new.txt",
        "D gone.txt",
        "R old_name.txt → new_name.txt",
        "M data.bin binary",
        "M tool.sh",
        "M src/app.py +4 −0",
    ):
        assert needle in files, (needle, files)
    assert "mode 100644 → 100755" in text
    assert "Renamed without changes." in text
    # The changed lines, highlighted, with their numbers.
    assert '<span class="nf">helper</span>' in html and '<td class="ln">11</td>' in html
    # Split view: both sides on one row.
    r = owner.get(f"/{REPO}/commit/{sha}", params={"style": "split"})
    assert r.status_code == 200 and 'class="diff hl split"' in r.text


def test_a_ten_thousand_line_change_is_cut_with_a_note(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/commit/{known.commits[2]}")
    assert r.status_code == 200
    assert "This diff is cut: 10,000 lines changed, the first 2,000 lines are shown." in r.text
    assert "line 2000" in r.text and "line 2001<" not in r.text
    assert len(r.content) < 2_000_000


def test_patch_and_diff_downloads(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/commit/{known.commits[1]}.patch")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "Subject: [PATCH] Change many kinds of things" in r.text
    assert "sandbox" in r.headers["content-security-policy"]


def test_compare_lists_commits_and_the_diff(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/compare/main...feature/x")
    assert r.status_code == 200, r.text[:300]
    assert "Feature work" in r.text and "Add a big file" not in r.text
    assert "src/app.py" in r.text and "feature" in r.text
    r = owner.get(f"/{REPO}/compare", params={"base": "main", "head": "feature/x"})
    assert r.status_code == 303 and r.headers["location"].endswith("/compare/main...feature/x")
    r = owner.get(f"/{REPO}/compare/main...main")
    assert r.status_code == 200 and "nothing to compare" in r.text


def test_blame_matches_git_blame(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/blame", params={"ref": "feature/x", "path": "src/app.py"})
    assert r.status_code == 200
    rows = re.findall(r'<tr id="L(\d+)"', r.text)
    porcelain = known.git("blame", "--porcelain", "feature/x", "--", "src/app.py")
    expected = [
        line.split()[0]
        for line in porcelain.splitlines()
        if re.match(r"[0-9a-f]{40} \d+ \d+", line)
    ]
    assert [int(n) for n in rows] == list(range(1, len(expected) + 1))
    # Each chunk's first line names the commit git names for it.
    shown = {}
    for number, sha in re.findall(
        r'<tr id="L(\d+)" class="chunk-start">\s*<td class="blameinfo"><a href="/[^"]+/commit/([0-9a-f]{40})"',
        r.text,
    ):
        shown[int(number)] = sha
    assert shown and all(expected[n - 1] == sha for n, sha in shown.items())
    assert {expected[0], expected[-1]} <= set(shown.values())


def test_history_matches_git_log(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/commits", params={"ref": "feature/x", "path": "src/app.py"})
    assert r.status_code == 200
    table = r.text.split('id="commit-list"')[1].split("</table>")[0]
    shown = re.findall(r'/commit/([0-9a-f]{40})" class="sha"', table)
    assert shown == known.git("log", "--format=%H", "feature/x", "--", "src/app.py").split()


def test_commit_list_pages_with_older_and_newer(owner: httpx.Client, known: Known) -> None:
    first = owner.get("/kowner/many/commits")
    assert first.status_code == 200
    assert first.text.count('class="sha"') == 50 and "Commit number 120" in first.text
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older and "page=2" in older.group(1)
    third = owner.get("/kowner/many/commits", params={"page": 3})
    assert third.text.count('class="sha"') == 20 and "Commit number 1<" in third.text
    assert 'rel="next"' not in third.text and 'rel="prev"' in third.text


def test_tree_has_the_last_commit_of_each_entry(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}")
    assert r.status_code == 200
    rows = {}
    for row in r.text.split('id="tree"')[1].split("</table>")[0].split("<tr>")[1:]:
        name = re.search(r'path=[^"]*">([^<]+)</a>', row)
        subject = re.search(r'<td class="lastmsg"><a [^>]*>([^<]*)</a>', row)
        if name and subject:
            rows[name.group(1)] = subject.group(1)
    assert rows["big.txt"] == "Add a big file"
    assert rows["new_name.txt"] == "Change many kinds of things"
    assert rows["page.html"] == "Initial import"
    assert rows["docs"] == "Initial import"
    # The README: GFM, the relative image through the raw endpoint, no script.
    readme = r.text.split('id="readme"')[1]
    assert "<table>" in readme and 'type="checkbox"' in readme and "<s>struck</s>" in readme
    assert '<a href="https://example.org/autolink">' in readme
    assert f'src="/{REPO}/raw?ref=main&amp;path=docs/logo.png"' in readme
    assert f'href="/{REPO}/blob?ref=main&amp;path=docs/guide.md"' in readme
    assert 'href="#user-content-known-repository"' in readme
    assert "<script>" not in readme and "javascript:" not in readme.replace("[bad](javascript", "")
    assert 'class="hl"' in readme  # the fenced Python, highlighted


def test_raw_files_are_served_safely(owner: httpx.Client, known: Known) -> None:
    def raw(path: str, **extra: str) -> httpx.Response:
        return owner.get(f"/{REPO}/raw", params={"ref": "main", "path": path, **extra})

    r = raw("docs/logo.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == PNG
    for path in ("page.html", "src/app.py"):
        r = raw(path)
        assert r.headers["content-type"] == "text/plain; charset=utf-8", path
        assert r.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in r.headers["content-security-policy"]
    r = raw("pic.svg")
    assert r.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in r.headers["content-security-policy"]
    assert "script-src" not in r.headers["content-security-policy"]
    r = raw("data.bin")
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.content == bytes(range(255, -1, -1)) * 4
    r = raw("src/app.py", download="1")
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''app.py"
    etag = r.headers["etag"]
    assert owner.get(r.request.url, headers={"if-none-match": etag}).status_code == 304


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_archives_unpack_to_the_tree(owner: httpx.Client, known: Known, fmt: str) -> None:
    r = owner.get(f"/{REPO}/archive/v1.0.{fmt}")
    assert r.status_code == 200
    assert "known-v1.0." + fmt in r.headers["content-disposition"]
    files: dict[str, bytes] = {}
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            files = {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}
    else:
        with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as t:
            files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}  # type: ignore[union-attr]
    listed = known.git("ls-tree", "-r", "--name-only", "v1.0").split()
    assert sorted(files) == sorted(f"known-v1.0/{p}" for p in listed)
    for p in listed:
        blob = subprocess.run(
            ["git", "show", f"v1.0:{p}"], cwd=known.work, capture_output=True, check=True
        ).stdout
        assert files[f"known-v1.0/{p}"] == blob, p


def test_branches_and_tags_pages(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/branches")
    assert r.status_code == 200
    row = r.text.split('data-branch="feature/x"')[1].split("</tr>")[0]
    assert re.search(r'class="behind"[^>]*>1<', row) and re.search(r'class="ahead"[^>]*>1<', row)
    assert f"/{REPO}/compare/main...feature/x" in row
    r = owner.get(f"/{REPO}/tags")
    assert r.status_code == 200 and "v1.0" in r.text and f"/{REPO}/archive/v1.0.zip" in r.text
    assert known.commits[1] in r.text


def test_blob_views(owner: httpx.Client, known: Known) -> None:
    r = owner.get(f"/{REPO}/blob", params={"path": "src/app.py"})
    assert r.status_code == 200 and 'id="L9"' in r.text and 'href="#L9"' in r.text
    assert '<span class="s2">multi-line string"""</span></td>' in r.text
    r = owner.get(f"/{REPO}/blob", params={"path": "data.bin"})
    assert "Binary file" in r.text and "download=1" in r.text
    r = owner.get(f"/{REPO}/blob", params={"path": "docs/logo.png"})
    assert f'<img src="/{REPO}/raw?ref=main&amp;path=docs/logo.png"' in r.text
    r = owner.get(f"/{REPO}/blob", params={"path": "docs/guide.md"})
    assert 'href="/kowner/known/blob?ref=main&amp;path=README.md"' in r.text
    r = owner.get(f"/{REPO}/blob", params={"path": "docs/guide.md", "plain": "1"})
    assert 'id="L1"' in r.text
    r = owner.get(f"/{REPO}/blob", params={"path": "docs"})
    assert r.status_code == 302 and "/tree?" in r.headers["location"]


@pytest.mark.parametrize(
    "path,params,status",
    [
        ("/commit/zzzz", {}, 404),
        ("/commit/" + "0" * 40, {}, 404),
        ("/commit/--output=x", {}, 400),
        ("/tree", {"ref": "no-such-branch"}, 404),
        ("/blob", {"path": "../../etc/passwd"}, 400),
        ("/raw", {"path": "a/../../x"}, 400),
        ("/blame", {"path": "nope.txt"}, 404),
        ("/blame", {"path": "src/../.."}, 400),
        ("/commits", {"path": "nope.txt"}, 404),
        ("/compare/main...nope", {}, 404),
        ("/compare/main", {}, 400),
        ("/archive/main.rar", {}, 404),
        ("/archive/nope.zip", {}, 404),
        ("/commits", {"page": "x"}, 200),
    ],
)
def test_bad_input_gets_a_clear_page(
    owner: httpx.Client, known: Known, path: str, params: dict, status: int
) -> None:
    r = owner.get(f"/{REPO}{path}", params=params)
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    if status != 200:
        assert "<h1>" in r.text and 'id="me"' in r.text  # the logged-in header on errors too


PRIVATE_ROUTES = [
    "",
    "/tree?path=src",
    "/blob?path=src/app.py",
    "/raw?path=src/app.py",
    "/raw?path=docs/logo.png",
    "/blame?path=src/app.py",
    "/commits?path=src/app.py",
    "/commits",
    "/commit/{sha}",
    "/commit/{sha}.patch",
    "/compare/main...feature/x",
    "/compare",
    "/archive/main.zip",
    "/archive/main.tar.gz",
    "/branches",
    "/tags",
]


@pytest.mark.parametrize("route", PRIVATE_ROUTES)
def test_private_repositories_are_404_on_every_route(
    site: WebSite, known: Known, route: str
) -> None:
    url = f"/{REPO}" + route.format(sha=known.commits[1])
    stranger = site.login("kstranger", "kstranger-pass-1")
    for client in (stranger, site.client()):
        r = client.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "Initial import" not in r.text and "app.py" not in r.text
    assert site.login("kowner", "kowner-pass-1").get(url).status_code in (200, 303)


def test_owner_pages(site: WebSite, known: Known) -> None:
    owner = site.login("kowner", "kowner-pass-1")
    r = owner.get("/kowner")
    assert r.status_code == 200 and "/kowner/known" in r.text and "/kowner/many" in r.text
    stranger = site.login("kstranger", "kstranger-pass-1")
    r = stranger.get("/kowner")
    assert r.status_code == 200 and "/kowner/known" not in r.text
    assert site.client().get("/kowner").status_code == 404  # no public repositories
    assert site.client().get("/nobody-here").status_code == 404
    admin = site.admin_client()
    assert admin.get("/kowner").status_code == 200


def test_group_owner_page_lists_members(site: WebSite, name: str) -> None:
    admin = site.admin_client()
    site.call_am("am_user_db", "create_group", {"name": name, "actor": "system"})
    site.call_am("am_user_db", "add_member", {"group": name, "user": "kowner", "actor": "system"})
    r = admin.get(f"/{name}")
    assert r.status_code == 200 and 'href="/kowner"' in r.text.split('id="members"')[1]


def test_dashboard_is_scoped_to_the_viewer(site: WebSite, known: Known) -> None:
    owner = site.login("kowner", "kowner-pass-1")
    r = owner.get("/")
    assert r.status_code == 200
    assert 'id="cluster"' not in r.text
    # Totals of what kowner may read, not the site's.
    readable = len(owner.get("/api/repos").json())
    assert f'<b id="count-repos">{readable}</b> repositories you can read' in r.text
    mine = r.text.split('id="my-repos"')[1].split("</ul>")[0]
    assert "kowner/known" in mine and "kowner/many" in mine
    assert "kowner/known" in r.text.split('id="pushes"')[1]
    r = site.admin_client().get("/")
    assert 'id="site-counts"' in r.text and 'id="cluster"' in r.text


def test_assets(site: WebSite) -> None:
    c = site.client()
    r = c.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    r = c.get("/static/highlight.css")
    assert r.status_code == 200 and ".hl .k" in r.text and "prefers-color-scheme: dark" in r.text
    assert c.get("/static/site.js").status_code == 200


def test_huge_file_is_cut_in_the_blob_view(site: WebSite, known: Known, tmp_path: Path) -> None:
    work = known.work
    (work / "huge.txt").write_text("x" * 99 + "\n" * 1 + ("y" * 99 + "\n") * 8000)
    site.git(None, "add", "huge.txt", cwd=work)
    site.git(None, "commit", "-q", "-m", "Add a huge file", cwd=work)
    site.git(None, "checkout", "-q", "-b", "huge", cwd=work)
    site.push(known.owner, work, "huge:refs/heads/huge")
    site.git(None, "checkout", "-q", "main", cwd=work)
    site.git(None, "reset", "-q", "--hard", "HEAD~1", cwd=work)
    owner = site.login("kowner", "kowner-pass-1")
    r = owner.get(f"/{REPO}/blob", params={"ref": "huge", "path": "huge.txt"})
    assert r.status_code == 200 and "only the first 512.0 KiB are shown" in r.text
    r = owner.get(f"/{REPO}/raw", params={"ref": "huge", "path": "huge.txt"})
    assert len(r.content) == 100 * 8001


@pytest.mark.parametrize(
    "route",
    [
        "",
        "/tree",
        "/blob?path=x",
        "/raw?path=x",
        "/blame?path=x",
        "/commits",
        "/commit/main",
        "/compare",
        "/compare/main...dev",
        "/branches",
        "/tags",
        "/archive/main.zip",
    ],
)
def test_an_empty_repository_answers_in_words(site: WebSite, known: Known, route: str) -> None:
    if not site.call_am("am_repo_db", "list_repos", {"owner": "kowner"})["items"] or not any(
        r["name"] == "empty"
        for r in site.call_am("am_repo_db", "list_repos", {"owner": "kowner"})["items"]
    ):
        site.create_repo("kowner/empty")
    r = site.login("kowner", "kowner-pass-1").get(f"/kowner/empty{route}")
    assert r.status_code in (200, 404), (route, r.status_code, r.text[:300])
    assert "Traceback" not in r.text and "<h1>" in r.text
