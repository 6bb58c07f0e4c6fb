"""The build data model: validation, transitions, JSON round trips."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from applikant.builder import FINAL_STATUSES, Build, BuildResult, BuildSpec, BuildStatus
from applikant.builder.models import utcnow

OID = "0123456789abcdef0123456789abcdef01234567"


def test_spec_validation() -> None:
    ok = dict(build_id="build-1", repo="a/b", ref="refs/heads/main", commit=OID, source="/r.git")
    assert BuildSpec(**ok).commit == OID
    BuildSpec(**{**ok, "commit": "a" * 64})  # sha256 repositories
    for bad in ["0" * 40, OID.upper(), OID[:-1], "--upload-pack=x", "HEAD"]:
        with pytest.raises(ValidationError):
            BuildSpec(**{**ok, "commit": bad})
    for key in ("build_id", "repo", "ref", "source"):
        with pytest.raises(ValidationError):
            BuildSpec(**{**ok, key: "x\ny"})
        with pytest.raises(ValidationError):
            BuildSpec(**{**ok, key: ""})
    with pytest.raises(ValidationError):
        BuildSpec(**ok, extra=1)


def test_statuses() -> None:
    assert {s.value for s in BuildStatus} == {
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "timed-out",
    }
    assert {s for s in BuildStatus if s.final} == FINAL_STATUSES
    assert not BuildStatus.QUEUED.final and not BuildStatus.RUNNING.final


def test_build_life_and_json_round_trip() -> None:
    t0 = utcnow()
    build = Build(
        id="build-7",
        number=7,
        repo="a/b",
        ref="refs/heads/main",
        commit=OID,
        queued_at=t0,
        pusher="user-1",
    )
    assert build.status is BuildStatus.QUEUED
    assert build.spec("/r.git") == BuildSpec(
        build_id="build-7", repo="a/b", ref="refs/heads/main", commit=OID, source="/r.git"
    )
    running = build.started(t0 + timedelta(seconds=1))
    assert running.status is BuildStatus.RUNNING
    result = BuildResult(
        status=BuildStatus.TIMED_OUT,
        started_at=t0 + timedelta(seconds=2),
        finished_at=t0 + timedelta(seconds=5),
        exit_code=-9,
        reason="timed out after 3 s",
        log_size=10,
        log_truncated=True,
    )
    assert result.duration == 3.0
    done = running.finished(result)
    assert (done.status, done.exit_code, done.log_truncated) == (BuildStatus.TIMED_OUT, -9, True)
    assert done.started_at == t0 + timedelta(seconds=1)  # the store's, not the runner's
    data = done.model_dump(mode="json")
    assert data["status"] == "timed-out" and data["exit_code"] == -9
    assert Build.model_validate(data) == done
    with pytest.raises(ValidationError):
        done.status = BuildStatus.QUEUED  # type: ignore[misc]
