"""SSH_ORIGINAL_COMMAND parsing: a table of good and hostile inputs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from applikant.frontend.sshcommand import CommandRefused, Request, parse, resolve_repo_path

R, W = "read", "write"

GOOD = [
    ("git-upload-pack 'team/project.git'", Request("git-upload-pack", "team/project", R)),
    ("git-upload-pack '/team/project.git'", Request("git-upload-pack", "team/project", R)),
    ("git-upload-pack '~/team/project.git'", Request("git-upload-pack", "team/project", R)),
    ("git-upload-pack 'team/project'", Request("git-upload-pack", "team/project", R)),
    ("git-upload-pack team/project", Request("git-upload-pack", "team/project", R)),
    ('git-upload-pack "team/project.git"', Request("git-upload-pack", "team/project", R)),
    ("git-receive-pack 'team/project.git'", Request("git-receive-pack", "team/project", W)),
    ("git-upload-archive 'team/project.git'", Request("git-upload-archive", "team/project", R)),
    ("git upload-pack 'team/project.git'", Request("git-upload-pack", "team/project", R)),
    ("git receive-pack '/team/project'", Request("git-receive-pack", "team/project", W)),
    ("git upload-archive team/project", Request("git-upload-archive", "team/project", R)),
    ("git-upload-pack  'a/b'", Request("git-upload-pack", "a/b", R)),
    ("git-upload-pack 'A-1/b_2.x'", Request("git-upload-pack", "A-1/b_2.x", R)),
    ("git-upload-pack '0/9'", Request("git-upload-pack", "0/9", R)),
    (
        "git-upload-pack '{}/{}'".format("o" * 64, "n" * 64),
        Request("git-upload-pack", "o" * 64 + "/" + "n" * 64, R),
    ),
    # A leading slash is relative to the repo root: this names repo etc/passwd.
    ("git-upload-pack '/etc/passwd'", Request("git-upload-pack", "etc/passwd", R)),
    ("info", Request("info", None, R)),
    ("help", Request("info", None, R)),
    (" info ", Request("info", None, R)),
]


@pytest.mark.parametrize("command,expected", GOOD, ids=[g[0] for g in GOOD])
def test_accepts(command: str, expected: Request) -> None:
    assert parse(command) == expected


HOSTILE = [
    # no command / empty: an interactive shell
    (None, "interactive shells"),
    ("", "interactive shells"),
    ("   ", "interactive shells"),
    # shell metacharacters
    ("git-upload-pack 'a/b'; rm -rf /", "metacharacters"),
    ("git-upload-pack 'a/b' | cat", "metacharacters"),
    ("git-upload-pack 'a/b' && id", "metacharacters"),
    ("git-upload-pack '$(id)/b'", "metacharacters"),
    ("git-upload-pack '`id`/b'", "metacharacters"),
    ("git-upload-pack 'a/b' > /tmp/x", "metacharacters"),
    ("git-upload-pack 'a/b' < /etc/passwd", "metacharacters"),
    ("git-upload-pack '{a,b}/c'", "metacharacters"),
    ("git-upload-pack 'a/*'", "metacharacters"),
    ("git-upload-pack 'a/?'", "metacharacters"),
    ("git-upload-pack 'a/b!'", "metacharacters"),
    ("git-upload-pack 'a/b'\nid", "metacharacters"),
    ("git-upload-pack 'a/b'\rid", "metacharacters"),
    ("git-upload-pack 'a\\/b'", "metacharacters"),
    ("git-upload-pack 'a/b' #", "metacharacters"),
    ("git-upload-pack 'a/b' &", "metacharacters"),
    ("git-upload-pack ${IFS}a/b", "metacharacters"),
    # control characters
    ("git-upload-pack\t'a/b'", "control characters"),
    ("git-upload-pack 'a/b\x1b[2J'", "control characters"),
    ("git-upload-pack 'a/b\x7f'", "control characters"),
    # NUL
    ("git-upload-pack 'a/b'\x00", "NUL"),
    ("git-upload-pack 'a/b\x00c'", "NUL"),
    # path traversal
    ("git-upload-pack '../etc/passwd'", "'..'"),
    ("git-upload-pack 'a/../b'", "'..'"),
    ("git-upload-pack 'a/..'", "'..'"),
    ("git-upload-pack 'a/b..c'", "'..'"),
    ("git-upload-pack '/../../etc/passwd'", "'..'"),
    ("git-upload-pack '../../etc/shadow'", "'..'"),
    ("git-upload-pack 'a/.hidden'", "letter or digit"),
    ("git-upload-pack '.a/b'", "letter or digit"),
    ("git-upload-pack '_a/b'", "letter or digit"),
    ("git-upload-pack './a/b'", "owner/name"),
    ("git-upload-pack 'a/./b'", "owner/name"),
    ("git-upload-pack 'a//b'", "owner/name"),
    ("git-upload-pack '//a/b'", "owner/name"),
    ("git-upload-pack 'a/b/'", "owner/name"),
    ("git-upload-pack '~root/a/b'", "owner/name"),
    ("git-upload-pack '~/../a/b'", "'..'"),
    # absolute paths outside the root (more than owner/name)
    ("git-upload-pack '/etc/ssh/sshd_config'", "owner/name"),
    ("git-upload-pack '/srv/git/a/b.git'", "owner/name"),
    ("git-upload-pack '/'", "owner/name"),
    ("git-upload-pack '/a'", "owner/name"),
    ("git-upload-pack 'a'", "owner/name"),
    # option injection
    ("git-upload-pack --upload-pack=touch /tmp/x", "options"),
    ("git-upload-pack '--upload-pack=touch /tmp/x'", "options"),
    ("git-upload-pack '--help'", "options"),
    ("git-upload-pack -h", "options"),
    ("git-upload-pack --strict 'a/b'", "options"),
    ("git-upload-pack 'a/b' --timeout=1", "options"),
    ("git-receive-pack '-a/b'", "options"),
    ("git-receive-pack 'a/-b'", "letter or digit"),
    ("git --upload-pack=x upload-pack 'a/b'", "unknown command"),
    ("git -c core.sshCommand=x upload-pack 'a/b'", "unknown command"),
    # unknown commands
    ("sh", "unknown command"),
    ("bash -c id", "unknown command"),
    ("scp -t /tmp", "unknown command"),
    ("git-shell", "unknown command"),
    ("git", "unknown command"),
    ("git upload-pack", "missing repository"),
    ("git-upload-pack", "missing repository"),
    ("git-upload-pack ''", "owner/name"),
    ("git-upload-pack 'a/b' 'c/d'", "exactly one"),
    ("git-upload-pack 'a b/c'", "exactly one"),
    ("git-upload-pack a b", "exactly one"),
    ("git-upload-pack 'a/b", "quotes"),
    ("git-upload-pack 'a/b\"", "quotes"),
    ("git-upload-pack 'a'/'b'", "quotes"),
    ("git-upload-pack 'a/b'\\''", "metacharacters"),
    ("GIT-UPLOAD-PACK 'a/b'", "unknown command"),
    ("git-upload-pack.exe 'a/b'", "unknown command"),
    ("git-http-backend 'a/b'", "unknown command"),
    ("git-cvsserver", "unknown command"),
    ("info extra", "no arguments"),
    ("rsync --server . /", "unknown command"),
    # names: charset and reserved suffixes
    ("git-upload-pack 'a/b.git.git'", "'.git'"),
    ("git-upload-pack 'a/b.lock'", "'.lock'"),
    ("git-upload-pack 'a/b=c'", "only contain"),
    ("git-upload-pack 'a/b:c'", "only contain"),
    ("git-upload-pack 'a/b@c'", "only contain"),
    ("git-upload-pack 'a/b%2e'", "only contain"),
    ("git-upload-pack 'a/é'", "letter or digit"),
    ("git-upload-pack 'a/bé'", "only contain"),
    ("git-upload-pack 'a/b\u202e'", "only contain"),
    ("git-upload-pack 'a/b\u3000'", "only contain"),
    ("git-upload-pack '%s/b'" % ("o" * 65), "limited to 64"),
    ("git-upload-pack 'a/%s'" % ("n" * 65), "limited to 64"),
    # very long
    ("git-upload-pack '" + "a" * 2000 + "/b'", "too long"),
    ("x" * 1025, "too long"),
    # non-UTF-8: os.environ gives surrogate escapes for invalid bytes
    (b"git-upload-pack 'a/\xff'".decode("utf-8", "surrogateescape"), "UTF-8"),
    ("git-upload-pack 'a/\ud800'", "UTF-8"),
]


@pytest.mark.parametrize("command,fragment", HOSTILE, ids=[repr(h[0])[:60] for h in HOSTILE])
def test_refuses(command: str | None, fragment: str) -> None:
    with pytest.raises(CommandRefused) as info:
        parse(command)
    message = info.value.message
    assert fragment in message
    assert "\n" not in message and "\r" not in message
    assert str(info.value) == message
    # The user's input is never echoed back, so no control bytes reach a terminal.
    assert all(" " <= ch < "\x7f" for ch in message)


def test_request_is_immutable() -> None:
    req = parse("git-upload-pack 'a/b'")
    with pytest.raises(AttributeError):
        req.repo = "x/y"  # type: ignore[misc]
    assert hash(req) == hash(Request("git-upload-pack", "a/b", "read"))
    assert "a/b" in repr(req)


def test_environment_round_trip_of_invalid_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``as`` actually reads: os.environ after sshd put raw bytes in it."""
    monkeypatch.setitem(os.environb, b"SSH_ORIGINAL_COMMAND", b"git-upload-pack 'a/b\xc3'")
    with pytest.raises(CommandRefused, match="UTF-8"):
        parse(os.environ["SSH_ORIGINAL_COMMAND"])


def test_import_is_cheap() -> None:
    """``as`` imports this on every fetch: it must pull in no module of its own."""
    code = (
        "import sys; before = set(sys.modules);"
        "import applikant.frontend.sshcommand;"
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    new = eval(out)
    assert set(new) <= {"applikant", "applikant.frontend", "applikant.frontend.sshcommand"}, new


# -- resolve_repo_path -------------------------------------------------------


def test_resolve_plain(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repos"
    root.mkdir()
    assert resolve_repo_path(str(root), "team/p") == str(root / "team" / "p.git")
    # Relative roots come back absolute; the path need not exist.
    monkeypatch.chdir(tmp_path)
    assert resolve_repo_path("repos", "team/p") == str(root / "team" / "p.git")


def test_resolve_refuses_owner_symlink_out(tmp_path) -> None:
    root = tmp_path / "repos"
    root.mkdir()
    outside = tmp_path / "outside"
    (outside / "p.git").mkdir(parents=True)
    (root / "evil").symlink_to(outside)
    with pytest.raises(CommandRefused, match="not its own directory"):
        resolve_repo_path(str(root), "evil/p")


def test_resolve_refuses_repo_symlink_out(tmp_path) -> None:
    root = tmp_path / "repos"
    (root / "team").mkdir(parents=True)
    (root / "team" / "p.git").symlink_to("/etc")
    with pytest.raises(CommandRefused, match="not its own directory"):
        resolve_repo_path(str(root), "team/p")


def test_resolve_refuses_symlink_to_root_sibling_with_common_prefix(tmp_path) -> None:
    root = tmp_path / "repos"
    (root / "team").mkdir(parents=True)
    sibling = tmp_path / "repos-evil"
    sibling.mkdir()
    (root / "team" / "p.git").symlink_to(sibling)
    with pytest.raises(CommandRefused, match="not its own directory"):
        resolve_repo_path(str(root), "team/p")


def test_resolve_allows_a_symlinked_root(tmp_path) -> None:
    real_root = tmp_path / "real"
    (real_root / "team" / "p.git").mkdir(parents=True)
    link_root = tmp_path / "link"
    link_root.symlink_to(real_root)
    assert resolve_repo_path(str(link_root), "team/p") == str(link_root / "team" / "p.git")


def test_resolve_refuses_symlinks_inside_the_root(tmp_path) -> None:
    """bob/alias.git -> ../alice/secret.git must not serve alice's repository
    to whoever may read bob's; nor a whole owner directory linked to another."""
    root = tmp_path / "repos"
    (root / "alice" / "secret.git").mkdir(parents=True)
    (root / "bob").mkdir()
    (root / "bob" / "alias.git").symlink_to(Path("..") / "alice" / "secret.git")
    (root / "carol").symlink_to("alice")
    for repo in ("bob/alias", "carol/secret"):
        with pytest.raises(CommandRefused, match="not its own directory"):
            resolve_repo_path(str(root), repo)
    assert resolve_repo_path(str(root), "alice/secret") == str(root / "alice" / "secret.git")


def test_resolve_refuses_dangling_symlink_out(tmp_path) -> None:
    root = tmp_path / "repos"
    (root / "team").mkdir(parents=True)
    (root / "team" / "p.git").symlink_to(tmp_path / "not-yet")
    with pytest.raises(CommandRefused, match="not its own directory"):
        resolve_repo_path(str(root), "team/p")


@pytest.mark.parametrize(
    "repo", ["../x", "a/../../b", "/etc/passwd", "a", "a/b/c", "a/.git", "-a/b"]
)
def test_resolve_refuses_bad_names(tmp_path, repo: str) -> None:
    with pytest.raises(CommandRefused):
        resolve_repo_path(str(tmp_path), repo)
