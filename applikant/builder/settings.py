"""The `[builder]` table of the config file, read into pydantic models.

Every key has a default that works on one host. `config.py` keeps the table as
a dict until this is wired in; `BuilderSettings.from_mapping(config.builder)`
reads it, with the key at fault named in the error.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["BuilderSettings", "DockerSettings", "Limits"]

MiB = 1024 * 1024
GiB = 1024 * MiB


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Section):
    """Resource limits of build.sh and everything it starts (setrlimit in the
    process backend, the matching `docker run` flags in the docker backend).
    0 means no limit of that kind."""

    cpu_seconds: int = Field(default=3600, ge=0)  # RLIMIT_CPU, per process
    memory_bytes: int = Field(default=4 * GiB, ge=0)  # RLIMIT_AS per process / --memory
    processes: int = Field(default=512, ge=0)  # RLIMIT_NPROC (per build user!) / --pids-limit
    file_size_bytes: int = Field(default=2 * GiB, ge=0)  # RLIMIT_FSIZE
    open_files: int = Field(default=1024, ge=0)  # RLIMIT_NOFILE

    def rlimits(self) -> dict[str, int]:
        """The limits as RLIMIT_* names (lower case, without the prefix) to values."""
        table = {
            "cpu": self.cpu_seconds,
            "as": self.memory_bytes,
            "nproc": self.processes,
            "fsize": self.file_size_bytes,
            "nofile": self.open_files,
        }
        limits = {k: v for k, v in table.items() if v}
        limits["core"] = 0  # a crashing build leaves no core file behind
        return limits


class DockerSettings(_Section):
    command: str = "docker"  # the client binary
    image: str = "debian:stable-slim"
    network: str = "none"
    read_only: bool = True  # root file system read-only; /tmp a tmpfs, /work the work dir
    tmpfs_size: str = "512m"
    extra_args: list[str] = Field(default_factory=list)  # before the image name
    engine_timeout: float = 10.0  # for `docker version`, `docker rm -f`


class BuilderSettings(_Section):
    backend: Literal["process", "docker"] = "process"
    # Where work dirs are made. Must be traversable by the build user, so not
    # inside the (private) data dir; empty: `<data_dir>-builds` (see `resolved`).
    builds_root: str = ""
    concurrency: int = Field(default=1, ge=1)  # builds at once, for the queue
    # Where ab fetches a build's commit from: empty, the bare repository on
    # ab's host (<[af].repo_root>/owner/name.git); else this URL with
    # "owner/name.git" appended (e.g. "ssh://git@githost:22/" for an ab on
    # another host; its key needs read access).
    source_url: str = ""
    on_interrupt: Literal["fail", "requeue"] = "fail"  # a build found running at start
    timeout: float = Field(default=3600.0, gt=0)  # wall clock for build.sh, seconds
    checkout_timeout: float = Field(default=600.0, gt=0)
    kill_grace: float = Field(default=2.0, ge=0)  # SIGTERM .. SIGKILL at timeout/cancel
    log_limit: int = Field(default=1 * MiB, ge=1024)  # bytes of log kept per build
    max_line: int = Field(default=16 * 1024, ge=80)  # longer lines are split
    # The account builds run as when ab runs as root; made (useradd --system)
    # when missing and create_build_user is set. Ignored when ab is not root.
    build_user: str = "applikant-build"
    create_build_user: bool = True
    # Paths a build must not be able to read (am's data dir, the repo root):
    # checked before each build, which fails when the build user could.
    protected_paths: list[str] = Field(default_factory=list)
    path: str = "/usr/local/bin:/usr/bin:/bin"  # PATH of build.sh
    env: dict[str, str] = Field(default_factory=dict)  # extra variables for build.sh
    limits: Limits = Field(default_factory=Limits)
    docker: DockerSettings = Field(default_factory=DockerSettings)

    @classmethod
    def from_mapping(cls, table: dict[str, Any]) -> BuilderSettings:
        """Read the `[builder]` table; ValueError naming the key at fault."""
        try:
            return cls.model_validate(table)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"in the config file, builder.{where}: {first['msg']}") from None

    def resolved(self, data_dir: str) -> BuilderSettings:
        """These settings with the empty paths derived from `data_dir`, which
        is also protected."""
        data_dir = os.path.abspath(data_dir)
        root = self.builds_root or data_dir.rstrip("/") + "-builds"
        protected = list(dict.fromkeys([*self.protected_paths, data_dir]))
        return self.model_copy(
            update={"builds_root": os.path.abspath(root), "protected_paths": protected}
        )
