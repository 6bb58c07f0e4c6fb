"""The docker backend's command lines, and whether an engine answers.

The steps are those of the process backend (the checkout is made on the host,
in the same work dir) but build.sh runs in a throw-away container:

    docker run --rm --name applikant-build-<id> --init --network none
      --user UID:GID --memory M --memory-swap M --pids-limit N
      --ulimit cpu=.. --ulimit fsize=.. --ulimit nofile=.. --ulimit core=0
      --cap-drop ALL --security-opt no-new-privileges
      --read-only --tmpfs /tmp:rw,exec,nosuid,size=..
      --label applikant.build=<id> -v WORKDIR:/work -w /work/src
      -e HOME=/work -e LANG=C.UTF-8 -e TMPDIR=/tmp -e APPLIKANT_...=..
      IMAGE sh .applikant/build.sh      (or ./.applikant/build.sh when executable)

The container's PATH is the image's. Stopping a build (timeout, cancel, the
end) is `docker rm -f <name>`: killing the client would leave the container.
"""

from __future__ import annotations

import re

import trio

from .settings import BuilderSettings

__all__ = ["DockerUnavailable", "check_engine", "container_name", "remove_argv", "run_argv"]

WORK = "/work"


class DockerUnavailable(Exception):
    """No docker client, or no engine that answers it."""


def container_name(build_id: str) -> str:
    return "applikant-build-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", build_id)[:100]


def run_argv(
    settings: BuilderSettings,
    *,
    build_id: str,
    workdir: str,
    uid: int,
    gid: int,
    env: dict[str, str],
    script: list[str],
) -> list[str]:
    """`docker run ...` for one build. `env` are the variables for build.sh
    (HOME and TMPDIR are set here, PATH is left to the image); `script` the
    argv of build.sh relative to the checkout."""
    d = settings.docker
    lim = settings.limits
    argv = [
        d.command,
        "run",
        "--rm",
        "--name",
        container_name(build_id),
        "--init",
        "--network",
        d.network,
        "--user",
        f"{uid}:{gid}",
    ]
    if lim.memory_bytes:
        argv += ["--memory", str(lim.memory_bytes), "--memory-swap", str(lim.memory_bytes)]
    if lim.processes:
        argv += ["--pids-limit", str(lim.processes)]
    for name, limit in lim.rlimits().items():
        if name in ("cpu", "fsize", "nofile", "core"):
            argv += ["--ulimit", f"{name}={limit}:{limit}"]
    argv += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    if d.read_only:
        argv += ["--read-only", "--tmpfs", f"/tmp:rw,exec,nosuid,size={d.tmpfs_size}"]
    argv += [
        "--label",
        f"applikant.build={build_id}",
        "-v",
        f"{workdir}:{WORK}",
        "-w",
        f"{WORK}/src",
    ]
    variables = {k: v for k, v in env.items() if k not in ("PATH", "HOME", "TMPDIR")}
    variables.update(HOME=WORK, TMPDIR="/tmp")
    for key, value in variables.items():
        argv += ["-e", f"{key}={value}"]
    argv += [*d.extra_args, d.image, *script]
    return argv


def remove_argv(settings: BuilderSettings, build_id: str) -> list[str]:
    return [settings.docker.command, "rm", "-f", container_name(build_id)]


async def check_engine(settings: BuilderSettings) -> str:
    """The engine's version; DockerUnavailable, with the client's own words,
    when there is no client or no engine answers within engine_timeout."""
    argv = [settings.docker.command, "version", "--format", "{{.Server.Version}}"]
    try:
        with trio.fail_after(settings.docker.engine_timeout):
            done = await trio.run_process(
                argv, stdin=b"", capture_stdout=True, capture_stderr=True, check=False
            )
    except FileNotFoundError:
        raise DockerUnavailable(
            f"no docker client {settings.docker.command!r} on this host"
        ) from None
    except trio.TooSlowError:
        raise DockerUnavailable(
            f"the Docker engine did not answer within {settings.docker.engine_timeout:g} s"
        ) from None
    version = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not version:
        words = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DockerUnavailable(
            "no Docker engine reachable: "
            + (words[-1] if words else f"docker exited {done.returncode}")
        )
    return version
