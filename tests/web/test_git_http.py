"""git clone over aw's smart HTTP: public, private with a token or password, denied;
pushes refused with a message; gzip bodies and protocol v2."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import httpx
import pytest

from harness.gitenv import git_env
from harness.web import WebSite


@pytest.fixture(scope="module")
def repos(site: WebSite, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """alice's public and private repos with two commits each, pushed over SSH."""
    alice = site.add_user("ghalice")
    site.call_am("am_user_db", "set_password", {"user": alice.id, "password": "alice-pass-1"})
    work = tmp_path_factory.mktemp("gitwork")
    heads = {}
    for name, public in (("pub", True), ("priv", False)):
        site.create_repo(f"ghalice/{name}", is_public=public)
        w = work / name
        site.commit(w, "first")
        (w / "README.md").write_text(f"# {name}\n\nhello\n")
        site.git(None, "add", "README.md", cwd=w)
        site.git(None, "commit", "-q", "-m", "readme", cwd=w)
        site.git(None, "remote", "add", "origin", site.url(f"ghalice/{name}"), cwd=w)
        site.push(alice, w)
        heads[name] = site.head(f"ghalice/{name}")
    token = site.token_for(alice.id)
    return {"alice": alice, "token": token, "heads": heads}


def clone(site: WebSite, url: str, dest: Path, *config: str) -> subprocess.CompletedProcess:
    args = ["git"]
    for c in config:
        args += ["-c", c]
    return subprocess.run(
        [*args, "clone", "-q", url, str(dest)],
        env=git_env(site.home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def head_of(site: WebSite, work: Path) -> str:
    return site.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()


def test_public_clone_anonymous_v0_and_v2(site: WebSite, repos: dict, tmp_path: Path) -> None:
    for version in ("0", "2"):
        dest = tmp_path / f"v{version}"
        r = clone(site, f"{site.base}/ghalice/pub.git", dest, f"protocol.version={version}")
        assert r.returncode == 0, r.stderr
        assert head_of(site, dest) == repos["heads"]["pub"]
        assert (dest / "README.md").read_text().startswith("# pub")
    # Without the .git suffix too.
    r = clone(site, f"{site.base}/ghalice/pub", tmp_path / "plain")
    assert r.returncode == 0, r.stderr


def test_private_clone_needs_credentials(site: WebSite, repos: dict, tmp_path: Path) -> None:
    r = clone(site, f"{site.base}/ghalice/priv.git", tmp_path / "anon")
    assert r.returncode != 0
    assert not (tmp_path / "anon").exists()
    host = site.base.removeprefix("http://")
    token = repos["token"]
    r = clone(site, f"http://ghalice:{token}@{host}/ghalice/priv.git", tmp_path / "tok")
    assert r.returncode == 0, r.stderr
    assert head_of(site, tmp_path / "tok") == repos["heads"]["priv"]
    r = clone(site, f"http://ghalice:alice-pass-1@{host}/ghalice/priv.git", tmp_path / "pw")
    assert r.returncode == 0, r.stderr
    r = clone(site, f"http://ghalice:wrong-password@{host}/ghalice/priv.git", tmp_path / "bad")
    assert r.returncode != 0


def test_private_clone_denied_to_other_users(site: WebSite, repos: dict, tmp_path: Path) -> None:
    other = site.user_with_password("ghmallory", "mallory-pass-1")
    token = site.token_for(other["id"])
    host = site.base.removeprefix("http://")
    r = clone(site, f"http://ghmallory:{token}@{host}/ghalice/priv.git", tmp_path / "m")
    assert r.returncode != 0
    assert "not found" in r.stderr or "404" in r.stderr
    # The answer is the same as for a repository that does not exist.
    c = site.client(auth=("ghmallory", token))
    a = c.get("/ghalice/priv.git/info/refs", params={"service": "git-upload-pack"})
    b = c.get("/ghalice/nothing.git/info/refs", params={"service": "git-upload-pack"})
    assert a.status_code == b.status_code == 404


def test_push_over_http_is_refused_with_a_message(
    site: WebSite, repos: dict, tmp_path: Path
) -> None:
    dest = tmp_path / "w"
    assert clone(site, f"{site.base}/ghalice/pub.git", dest).returncode == 0
    site.commit(dest, "over http")
    r = subprocess.run(
        ["git", "push", "origin", "HEAD:refs/heads/main"],
        cwd=dest,
        env=git_env(site.home),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode != 0
    assert "push over SSH" in r.stderr, r.stderr
    assert site.head("ghalice/pub") == repos["heads"]["pub"]
    post = site.client().post("/ghalice/pub.git/git-receive-pack", content=b"0000")
    assert post.status_code == 403


def test_gzip_request_body_and_content_checks(site: WebSite, repos: dict) -> None:
    head = repos["heads"]["pub"]
    want = f"want {head} ofs-delta\n"
    body = f"{len(want) + 4:04x}{want}0000".encode() + b"0009done\n"
    c = site.client()
    r = c.post(
        "/ghalice/pub.git/git-upload-pack",
        content=gzip.compress(body),
        headers={
            "content-type": "application/x-git-upload-pack-request",
            "content-encoding": "gzip",
        },
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-git-upload-pack-result"
    assert r.content.startswith(b"0008NAK\n") and b"PACK" in r.content
    # Garbage gzip: no pack, and no traceback either.
    r = c.post(
        "/ghalice/pub.git/git-upload-pack",
        content=b"\x1f\x8bnot gzip at all",
        headers={
            "content-type": "application/x-git-upload-pack-request",
            "content-encoding": "gzip",
        },
    )
    assert b"PACK" not in r.content and b"Traceback" not in r.content
    r = c.post(
        "/ghalice/pub.git/git-upload-pack", content=body, headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415
    # Dumb HTTP is not offered.
    assert c.get("/ghalice/pub.git/info/refs").status_code == 403
    assert c.get("/ghalice/pub.git/HEAD").status_code == 404


def test_streamed_advertisement_v2(site: WebSite, repos: dict) -> None:
    with httpx.Client(base_url=site.base) as c:
        r = c.get(
            "/ghalice/pub.git/info/refs",
            params={"service": "git-upload-pack"},
            headers={"git-protocol": "version=2"},
        )
        assert r.status_code == 200
        assert r.content.startswith(b"000eversion 2\n")
        r = c.get("/ghalice/pub.git/info/refs", params={"service": "git-upload-pack"})
        assert r.content.startswith(b"001e# service=git-upload-pack\n0000")
        assert repos["heads"]["pub"].encode() in r.content
        # Path tricks never reach git.
        for path in (
            "/ghalice/..%2F..%2Fetc.git/info/refs",
            "/%2e%2e/pub.git/info/refs",
            "/ghalice/pub.git%00/info/refs",
        ):
            r = c.get(path, params={"service": "git-upload-pack"})
            assert r.status_code in (400, 404), path


def test_denied_clone_with_credentials_is_audited(
    site: WebSite, repos: dict, tmp_path: Path
) -> None:
    other = site.user_with_password("ghtrudy", "trudy-pass-1")
    token = site.token_for(other["id"])

    def denials() -> list[dict]:
        return site.call_am(
            "am_repo_db",
            "query_audit",
            {"query": {"action": "access.denied", "repo": "ghalice/priv"}},
        )["items"]

    before = len(denials())
    # Anonymous first requests are git's way of asking for credentials: not audited.
    assert (
        site.client()
        .get("/ghalice/priv.git/info/refs", params={"service": "git-upload-pack"})
        .status_code
        == 401
    )
    assert len(denials()) == before
    host = site.base.removeprefix("http://")
    r = clone(site, f"http://ghtrudy:{token}@{host}/ghalice/priv.git", tmp_path / "t")
    assert r.returncode != 0
    entry = denials()[0]
    assert len(denials()) == before + 1
    assert entry["actor"] == other["id"] and entry["details"]["access"] == "read"
    assert entry["details"]["user"] == other["id"] and entry["details"]["reason"]
    assert entry["node"].startswith("aw")
