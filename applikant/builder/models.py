"""What a build is: the record am's store persists, and what one run returns.

Same conventions as the results of `applikant.schema`: frozen pydantic models of
JSON-friendly types only (str, int, bool, datetime as ISO 8601 UTC), unknown
fields refused, so that `model.model_dump(mode="json")` crosses the node layer
and `Model.model_validate(data)` rebuilds it.

Life of a build (the store owns the transitions; the runner reports the last):

    queued --(a runner takes it)--> running --> succeeded | failed | timed-out
       |                               |
       +---------(cancel)--------------+-----> cancelled

`succeeded`, `failed`, `cancelled` and `timed-out` are final. A build found
`running` when ab starts again was interrupted: the store marks it failed
(reason "interrupted") or queues it again, as configured (`on_interrupt`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["FINAL_STATUSES", "Build", "BuildResult", "BuildSpec", "BuildStatus", "utcnow"]

_OID_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")


def utcnow() -> datetime:
    """Now, timezone-aware UTC, to the microsecond."""
    return datetime.now(UTC)


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed-out"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED, BuildStatus.TIMED_OUT}
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BuildSpec(_Model):
    """What to build: exactly one commit of one repository.

    `source` is what git fetches from: the path of the bare repository (on the
    host where ab runs) or a clone URL. `build_id` is am's id of the build, also
    given to build.sh as APPLIKANT_BUILD_ID and used in the work dir's name.
    """

    build_id: str = Field(min_length=1, max_length=100)
    repo: str = Field(min_length=1, max_length=300)  # "owner/name", for APPLIKANT_REPO
    ref: str = Field(min_length=1, max_length=1000)  # e.g. refs/heads/main
    commit: str
    source: str = Field(min_length=1)

    @field_validator("commit")
    @classmethod
    def _commit(cls, value: str) -> str:
        if not _OID_RE.match(value) or set(value) == {"0"}:
            raise ValueError("commit must be a full lower-case hex object id")
        return value

    @field_validator("build_id", "repo", "ref", "source")
    @classmethod
    def _printable(cls, value: str) -> str:
        # Each ends up in an environment variable or on a command line.
        if any(c in value for c in "\x00\n\r"):
            raise ValueError("must not contain NUL or line breaks")
        return value


class BuildResult(_Model):
    """How one run ended. `exit_code` is build.sh's exit status, negative for a
    signal (-9: SIGKILL), None when build.sh never ran (checkout failed, no
    build.sh, no Docker engine...). `reason` says why in words for every status
    but succeeded (e.g. "exited with code 2", "timed out after 3600 s").
    `log_size` counts the bytes of the lines handed to `on_line` (each with its
    newline); `log_truncated` says that output was discarded past the cap."""

    status: BuildStatus
    started_at: datetime
    finished_at: datetime
    exit_code: int | None = None
    reason: str = ""
    log_size: int = 0
    log_truncated: bool = False

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


class Build(_Model):
    """A build as am's store keeps it: its spec, where it is in its life, and
    the outcome once final. `id` is the store's (e.g. "build-42", unique in the
    cluster), `number` its number in its repository (people see "alice/app #12")."""

    id: str
    number: int = 0
    repo: str
    ref: str
    commit: str
    status: BuildStatus = BuildStatus.QUEUED
    queued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    log_size: int = 0
    log_truncated: bool = False
    pusher: str | None = None  # user id of who pushed, when a push queued it
    pusher_login: str | None = None  # their login now (None: not a user, or deleted)
    attempt: int = 1  # a re-run or a re-queue after an interruption counts up
    runner: str | None = None  # the node of the ab that runs (or ran) it
    cancel_requested: bool = False  # cancel asked while running; the runner stops it

    def spec(self, source: str) -> BuildSpec:
        """What a runner needs to run this build, fetching from `source`."""
        return BuildSpec(
            build_id=self.id, repo=self.repo, ref=self.ref, commit=self.commit, source=source
        )

    def started(self, at: datetime | None = None) -> Build:
        return self.model_copy(update={"status": BuildStatus.RUNNING, "started_at": at or utcnow()})

    def finished(self, result: BuildResult) -> Build:
        """This build with the outcome of its run."""
        return self.model_copy(
            update={
                "status": result.status,
                "started_at": self.started_at or result.started_at,
                "finished_at": result.finished_at,
                "exit_code": result.exit_code,
                "reason": result.reason,
                "log_size": result.log_size,
                "log_truncated": result.log_truncated,
            }
        )
