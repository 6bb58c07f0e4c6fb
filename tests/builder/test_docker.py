"""The docker backend: its exact command line, a clear error when no engine
answers (none runs here), and the whole flow against a stand-in client."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from applikant.builder import BuilderSettings, BuildStatus, DockerSettings, Limits, run_build
from applikant.builder.docker import (
    DockerUnavailable,
    check_engine,
    container_name,
    remove_argv,
    run_argv,
)
from applikant.builder.logcap import MARKER_PREFIX
from applikant.builder.users import BuildUser

from .conftest import Lines, Repo

ENV = {
    "PATH": "/usr/bin",
    "HOME": "/host/w",
    "TMPDIR": "/host/w/tmp",
    "LANG": "C.UTF-8",
    "APPLIKANT_REPO": "alice/demo",
    "APPLIKANT_REF": "refs/heads/main",
    "APPLIKANT_COMMIT": "a" * 40,
    "APPLIKANT_BUILD_ID": "build-9",
}


def test_run_command_line() -> None:
    settings = BuilderSettings(
        backend="docker",
        limits=Limits(
            cpu_seconds=600,
            memory_bytes=1 << 30,
            processes=128,
            file_size_bytes=1 << 20,
            open_files=256,
        ),
    )
    argv = run_argv(
        settings,
        build_id="build-9",
        workdir="/b/build-9-x",
        uid=995,
        gid=994,
        env=ENV,
        script=["sh", ".applikant/build.sh"],
    )
    assert argv == [
        "docker",
        "run",
        "--rm",
        "--name",
        "applikant-build-build-9",
        "--init",
        "--network",
        "none",
        "--user",
        "995:994",
        "--memory",
        str(1 << 30),
        "--memory-swap",
        str(1 << 30),
        "--pids-limit",
        "128",
        "--ulimit",
        "cpu=600:600",
        "--ulimit",
        "fsize=1048576:1048576",
        "--ulimit",
        "nofile=256:256",
        "--ulimit",
        "core=0:0",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,exec,nosuid,size=512m",
        "--label",
        "applikant.build=build-9",
        "-v",
        "/b/build-9-x:/work",
        "-w",
        "/work/src",
        "-e",
        "LANG=C.UTF-8",
        "-e",
        "APPLIKANT_REPO=alice/demo",
        "-e",
        "APPLIKANT_REF=refs/heads/main",
        "-e",
        "APPLIKANT_COMMIT=" + "a" * 40,
        "-e",
        "APPLIKANT_BUILD_ID=build-9",
        "-e",
        "HOME=/work",
        "-e",
        "TMPDIR=/tmp",
        "debian:stable-slim",
        "sh",
        ".applikant/build.sh",
    ]


def test_run_command_line_options() -> None:
    settings = BuilderSettings(
        backend="docker",
        limits=Limits(cpu_seconds=0, memory_bytes=0, processes=0, file_size_bytes=0, open_files=0),
        docker=DockerSettings(
            command="/usr/bin/podman",
            image="alpine:3",
            network="bridge",
            read_only=False,
            extra_args=["--cpus", "1.5"],
        ),
    )
    argv = run_argv(
        settings,
        build_id="weird id/../x",
        workdir="/w",
        uid=1,
        gid=2,
        env={},
        script=["./.applikant/build.sh"],
    )
    assert argv[:6] == [
        "/usr/bin/podman",
        "run",
        "--rm",
        "--name",
        "applikant-build-weird_id_.._x",
        "--init",
    ]
    assert "--memory" not in argv and "--pids-limit" not in argv and "--read-only" not in argv
    assert argv[-5:] == ["TMPDIR=/tmp", "--cpus", "1.5", "alpine:3", "./.applikant/build.sh"]
    assert remove_argv(settings, "weird id/../x") == [
        "/usr/bin/podman",
        "rm",
        "-f",
        "applikant-build-weird_id_.._x",
    ]
    assert container_name("b-1") == "applikant-build-b-1"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client installed")
async def test_no_engine_is_a_clear_error() -> None:
    if os.path.exists("/var/run/docker.sock"):
        pytest.skip("a Docker engine may be running here")
    with pytest.raises(
        DockerUnavailable, match=r"^no Docker engine reachable: .*[Cc]annot connect"
    ):
        await check_engine(BuilderSettings(backend="docker"))


async def test_no_client_is_a_clear_error(tmp_path: Path) -> None:
    settings = BuilderSettings(docker=DockerSettings(command=str(tmp_path / "no-docker")))
    with pytest.raises(DockerUnavailable, match="no docker client"):
        await check_engine(settings)


async def test_build_fails_with_the_reason_when_no_engine(
    repo: Repo, builds_root: Path, lines: Lines, tmp_path: Path
) -> None:
    settings = BuilderSettings(
        backend="docker",
        builds_root=str(builds_root),
        docker=DockerSettings(command=str(tmp_path / "no-docker")),
    )
    commit = repo.build_sh("echo hi\n")
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.FAILED and result.exit_code is None
    assert result.reason.startswith("docker backend: no docker client")
    assert lines.lines[-1] == MARKER_PREFIX + result.reason
    assert not builds_root.exists() or os.listdir(builds_root) == []


FAKE_DOCKER = r"""#!/bin/sh
# A stand-in docker client: records each call, `run` shows what it would run.
printf '%s\n' "$*" >> "{log}"
case "$1" in
  version) echo 27.0.1 ;;
  rm) kill "$(cat "{log}.pid")"; echo removed ;;
  run)
    workdir=""; prev=""
    for a in "$@"; do
      [ "$prev" = "-v" ] && workdir="${{a%%:/work}}"; prev="$a"
    done
    echo $$ > "{log}.pid"
    echo "would run in $workdir"
    ls "$workdir/src/.applikant"
    [ {sleep} = 0 ] && exit 3
    trap 'exit 137' TERM
    sleep {sleep} & wait
    exit 3 ;;
esac
"""


def _fake(tmp_path: Path, sleep: int) -> tuple[str, Path]:
    log = tmp_path / "docker-calls"
    script = tmp_path / "docker"
    script.write_text(FAKE_DOCKER.format(log=log, sleep=sleep))
    script.chmod(0o755)
    return str(script), log


async def test_whole_flow_against_a_stand_in_client(
    repo: Repo, builds_root: Path, lines: Lines, tmp_path: Path
) -> None:
    command, log = _fake(tmp_path, 0)
    settings = BuilderSettings(
        backend="docker", builds_root=str(builds_root), docker=DockerSettings(command=command)
    )
    commit = repo.build_sh("echo hi\n")
    result = await run_build(repo.spec(commit, "build-3"), lines, settings=settings)
    assert result.status is BuildStatus.FAILED and result.exit_code == 3
    assert lines.lines[0].startswith(f"would run in {builds_root}/build-3-")
    assert lines.lines[1:] == ["build.sh", MARKER_PREFIX + "exited with code 3"]
    calls = log.read_text().splitlines()
    assert calls[0] == "version --format {{.Server.Version}}"
    assert calls[1].startswith("run --rm --name applikant-build-build-3 --init --network none")
    user = BuildUser.lookup("applikant-build") if os.geteuid() == 0 else BuildUser.current()
    assert f"--user {user.uid}:{user.gid}" in calls[1]
    assert calls[1].endswith("debian:stable-slim sh .applikant/build.sh")
    assert len(calls) == 2
    assert os.listdir(builds_root) == []


async def test_timeout_removes_the_container(
    repo: Repo, builds_root: Path, lines: Lines, tmp_path: Path
) -> None:
    command, log = _fake(tmp_path, 60)
    settings = BuilderSettings(
        backend="docker",
        builds_root=str(builds_root),
        timeout=0.5,
        docker=DockerSettings(command=command),
    )
    commit = repo.build_sh("echo hi\n")
    result = await run_build(repo.spec(commit, "build-4"), lines, settings=settings)
    assert result.status is BuildStatus.TIMED_OUT
    assert result.exit_code == 137
    calls = log.read_text().splitlines()
    assert calls[-1] == "rm -f applikant-build-build-4"
    assert os.listdir(builds_root) == []


def test_values_go_through_as_single_arguments() -> None:
    argv = run_argv(
        BuilderSettings(),
        build_id="b",
        workdir="/w",
        uid=1,
        gid=1,
        env={"X": "a b=c"},
        script=["sh", "s"],
    )
    assert argv[argv.index("X=a b=c") - 1] == "-e"
