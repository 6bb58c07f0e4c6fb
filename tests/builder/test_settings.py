"""The [builder] table."""

from __future__ import annotations

import pytest

from applikant.builder import BuilderSettings, Limits


def test_defaults_work_on_one_host() -> None:
    s = BuilderSettings()
    assert (s.backend, s.concurrency, s.log_limit, s.build_user) == (
        "process",
        1,
        1024 * 1024,
        "applikant-build",
    )
    assert s.limits.rlimits() == {
        "cpu": 3600,
        "as": 4 << 30,
        "nproc": 512,
        "fsize": 2 << 30,
        "nofile": 1024,
        "core": 0,
    }


def test_zero_means_no_limit() -> None:
    assert Limits(
        cpu_seconds=0, memory_bytes=0, processes=0, file_size_bytes=0, open_files=0
    ).rlimits() == {"core": 0}


def test_from_mapping_names_the_key() -> None:
    s = BuilderSettings.from_mapping(
        {
            "backend": "docker",
            "timeout": 60,
            "limits": {"processes": 10},
            "docker": {"image": "alpine:3"},
        }
    )
    assert (s.backend, s.timeout, s.limits.processes, s.docker.image) == (
        "docker",
        60,
        10,
        "alpine:3",
    )
    with pytest.raises(ValueError, match=r"builder\.backend"):
        BuilderSettings.from_mapping({"backend": "podman"})
    with pytest.raises(ValueError, match=r"builder\.limits\.processes"):
        BuilderSettings.from_mapping({"limits": {"processes": -1}})
    with pytest.raises(ValueError, match=r"builder\.colour"):
        BuilderSettings.from_mapping({"colour": "blue"})


def test_resolved_paths() -> None:
    s = BuilderSettings(protected_paths=["/srv/git"]).resolved("/var/lib/applikant/")
    assert s.builds_root == "/var/lib/applikant-builds"
    assert s.protected_paths == ["/srv/git", "/var/lib/applikant"]
    s = BuilderSettings(builds_root="/b").resolved("/d")
    assert (s.builds_root, s.protected_paths) == ("/b", ["/d"])
