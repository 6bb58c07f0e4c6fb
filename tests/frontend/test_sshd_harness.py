"""The sshd harness with a real OpenSSH sshd: forced commands, plain git over SSH."""

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from applikant.frontend.authkeys import render, write_atomic
from harness.sshd import SshServer, ensure_system_user, make_client_key

pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/sbin/sshd"), reason="OpenSSH server not installed"
)


def _git_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org")
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org", **extra)
    return env


def _bare_repo_with_commit(where: Path) -> tuple[Path, str]:
    bare = where / "plain.git"
    work = where / "work"
    env = _git_env()
    for args in (
        ["init", "-q", "--bare", "-b", "main", str(bare)],
        ["init", "-q", "-b", "main", str(work)],
        ["-C", str(work), "commit", "-q", "--allow-empty", "-m", "one"],
        ["-C", str(work), "push", "-q", str(bare), "main"],
    ):
        subprocess.run(["git", *args], check=True, env=env)
    head = subprocess.run(
        ["git", "-C", str(bare), "rev-parse", "main"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    return bare, head.stdout.strip()


def _echo_script(path: Path) -> Path:
    path.write_text('#!/bin/sh\nprintf "%s\\n" "$SSH_ORIGINAL_COMMAND"\necho "args: $*"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with SshServer(tmp_path) as server:
        yield server


def test_forced_command_and_plain_key(sshd: SshServer, tmp_path: Path) -> None:
    forced_key, forced_pub = make_client_key(tmp_path, name="forced")
    plain_key, plain_pub = make_client_key(tmp_path, name="plain")
    script = _echo_script(tmp_path / "echo-as")
    content = render([("user-42", forced_pub)], str(script)) + plain_pub + "\n"
    write_atomic(str(sshd.authorized_keys), content)

    r = sshd.run(forced_key, "git-upload-pack 'foo/bar'")
    assert r.returncode == 0, r.stderr + sshd.log_tail()
    assert r.stdout == "git-upload-pack 'foo/bar'\nargs: user-42\n"

    # Whatever the client asks for, the forced command runs instead.
    r = sshd.run(forced_key, "id; touch /tmp/pwned")
    assert r.stdout == "id; touch /tmp/pwned\nargs: user-42\n"

    # A plain key reaches git itself, with protocol v2 (AcceptEnv GIT_PROTOCOL).
    bare, head = _bare_repo_with_commit(tmp_path)
    env = _git_env(GIT_SSH_COMMAND=sshd.ssh_command(plain_key), GIT_TRACE_PACKET="1")
    r = subprocess.run(
        ["git", "-c", "protocol.version=2", "ls-remote", sshd.url(str(bare))],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr + sshd.log_tail()
    assert f"{head}\trefs/heads/main" in r.stdout
    assert "version 2" in r.stderr

    # The forced key never reaches git.
    env = _git_env(GIT_SSH_COMMAND=sshd.ssh_command(forced_key))
    r = subprocess.run(
        ["git", "ls-remote", sshd.url(str(bare))], env=env, capture_output=True, text=True
    )
    assert r.returncode != 0


def test_key_added_and_removed_takes_effect_at_once(sshd: SshServer, tmp_path: Path) -> None:
    key, pub = make_client_key(tmp_path)
    script = _echo_script(tmp_path / "echo-as")
    assert sshd.run(key, "info").returncode == 255  # not yet authorized
    write_atomic(str(sshd.authorized_keys), render([("user-1", pub)], str(script)))
    assert sshd.run(key, "info").stdout == "info\nargs: user-1\n"
    write_atomic(str(sshd.authorized_keys), render([], str(script)))
    r = sshd.run(key, "info")
    assert r.returncode == 255 and "Permission denied" in r.stderr


def test_stopped_even_on_failure(tmp_path: Path) -> None:
    server = SshServer(tmp_path)
    with pytest.raises(ZeroDivisionError):
        with server:
            pid = server.pid
            assert pid is not None
            os.kill(pid, 0)
            raise ZeroDivisionError
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # idempotent


def test_start_failure_is_reported(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="sshd"):
        with SshServer(tmp_path, extra_config="NoSuchOption yes\n"):
            pass


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to add a system user")
def test_separate_git_user(tmp_path: Path) -> None:
    """The realistic setup: a locked-by-useradd system user, unlocked, logs in by key."""
    user = ensure_system_user("applikant-git")
    assert ensure_system_user("applikant-git").pw_uid == user.pw_uid  # idempotent
    # tmp_path lives under a 0700 directory; the git user needs its own place.
    shared = Path(tempfile.mkdtemp(prefix="applikant-sshd-"))
    try:
        shared.chmod(0o755)
        script = _echo_script(shared / "echo-as")
        key, pub = make_client_key(tmp_path)
        keys_file = shared / "authorized_keys"
        write_atomic(
            str(keys_file),
            render([("user-5", pub)], str(script)),
            owner_uid=user.pw_uid,
            owner_gid=user.pw_gid,
        )
        st = keys_file.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, 0o600)
        with SshServer(tmp_path, user="applikant-git", authorized_keys=keys_file) as sshd:
            r = sshd.run(key, "git-receive-pack 'a/b.git'")
            assert r.returncode == 0, r.stderr + sshd.log_tail()
            assert r.stdout == "git-receive-pack 'a/b.git'\nargs: user-5\n"
            # root is not allowed in with this server
            r = subprocess.run(
                [*sshd.ssh_args(key), "root@127.0.0.1", "true"], capture_output=True, text=True
            )
            assert r.returncode == 255
    finally:
        shutil.rmtree(shared)
