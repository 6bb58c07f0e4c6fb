"""The build account and the reachability checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from applikant.builder.users import (
    BuildUser,
    BuildUserError,
    ensure_build_user,
    reachable,
    traversable,
    useradd_argv,
)

NOBODY = BuildUser("nobody", 65534, 65534, frozenset())


def test_useradd_command_line() -> None:
    assert useradd_argv("applikant-build") == [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Applikant builds",
        "applikant-build",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="makes an account")
def test_ensure_build_user_makes_it_once() -> None:
    user = ensure_build_user("applikant-build")
    assert user.uid > 0 and user.gid > 0
    assert ensure_build_user("applikant-build") == user


def test_refusals() -> None:
    with pytest.raises(BuildUserError, match="create_build_user is off"):
        ensure_build_user("applikant-no-such-user", create=False)
    with pytest.raises(BuildUserError, match="root"):
        ensure_build_user("root")


def test_reachability_from_mode_bits(shared_dir: Path) -> None:
    tmp_path = shared_dir / "t"
    tmp_path.mkdir()
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    tmp_path.chmod(0o755)
    open_dir.chmod(0o755)
    (open_dir / "file").write_text("x")
    (open_dir / "file").chmod(0o644)
    (open_dir / "private").write_text("x")
    (open_dir / "private").chmod(0o600)
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    (closed / "file").write_text("x")
    (closed / "file").chmod(0o644)
    passable = open_dir / "passable"
    passable.mkdir()
    passable.chmod(0o711)
    try:
        if traversable(str(tmp_path), NOBODY) is not None:
            pytest.skip("tmp_path sits below a directory nobody cannot enter")
        assert reachable(str(open_dir / "file"), NOBODY)
        assert reachable(str(open_dir), NOBODY)
        assert not reachable(str(open_dir / "private"), NOBODY)
        assert not reachable(str(closed), NOBODY)
        assert not reachable(str(closed / "file"), NOBODY)
        assert reachable(str(passable), NOBODY)  # can enter, though not list
        assert not reachable(str(open_dir / "missing"), NOBODY)
        assert traversable(str(closed / "file"), NOBODY) == str(closed)
        owner = BuildUser("owner", os.getuid(), os.getgid(), frozenset())
        assert reachable(str(closed / "file"), owner)
    finally:
        tmp_path.chmod(0o700)


def test_pytest_tmp_is_out_of_reach(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root's tmp dirs are private")
    assert traversable(str(tmp_path), NOBODY) is not None
    assert not reachable(str(tmp_path), NOBODY)
