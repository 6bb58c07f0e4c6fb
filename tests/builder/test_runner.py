"""run_build against real git and real processes: the happy path, the
documented environment, and each bad build.sh of issue 6."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import trio

from applikant.builder import BuilderSettings, BuildStatus, Limits, run_build
from applikant.builder.logcap import MARKER_PREFIX
from applikant.builder.runner import build_env

from .conftest import Lines, Repo, alive, git

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds switch users only as root")


def pids_in(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := re.match(r"PID (\d+)", line))]


async def test_success_in_a_clean_environment(
    repo: Repo, settings: BuilderSettings, lines: Lines, builds_root: Path
) -> None:
    commit = repo.build_sh(
        'echo "hello from $APPLIKANT_REPO"\nid -un\npwd\nenv | sort\n'
        'git log -1 --format=%H\ntest -z "$(git status --porcelain)"\n'
    )
    os.environ["APPLIKANT_TEST_SECRET"] = "leaked"
    try:
        result = await run_build(repo.spec(commit), lines, settings=settings)
    finally:
        del os.environ["APPLIKANT_TEST_SECRET"]
    assert result.status is BuildStatus.SUCCEEDED, lines.text
    assert result.exit_code == 0 and result.reason == ""
    assert result.started_at <= result.finished_at
    assert lines.lines[0] == "hello from alice/demo"
    assert lines.lines[1] == "applikant-build"
    workdir = lines.lines[2].removesuffix("/src")
    assert os.path.dirname(workdir) == str(builds_root)
    env = dict(line.split("=", 1) for line in lines.lines[3:-1] if "=" in line)
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "LANG": "C.UTF-8",
        "TMPDIR": workdir + "/tmp",
        "PWD": workdir + "/src",
        "APPLIKANT_REPO": "alice/demo",
        "APPLIKANT_REF": "refs/heads/main",
        "APPLIKANT_COMMIT": commit,
        "APPLIKANT_BUILD_ID": "build-1",
    }
    assert lines.lines[-1] == commit  # exactly that commit, checked out clean
    assert result.log_size == sum(len(line) + 1 for line in lines.lines)
    assert not os.path.exists(workdir)  # removed afterwards
    assert os.listdir(builds_root) == []


async def test_exactly_the_pushed_commit_even_after_the_branch_moved(
    repo: Repo, settings: BuilderSettings, lines: Lines
) -> None:
    first = repo.build_sh("echo one\n")
    repo.build_sh("echo two\n")
    repo.commit({"x": "y"})
    # The first commit is still reachable; an unreachable one (force-pushed
    # away) is fetched by id too.
    result = await run_build(repo.spec(first), lines, settings=settings)
    assert result.status is BuildStatus.SUCCEEDED and lines.lines == ["one"]
    lost = repo.build_sh("echo lost\n")
    repo.commit({"x": "z"})
    git("reset", "-q", "--hard", first, cwd=repo.work)
    git("push", "-q", "-f", str(repo.git_dir), "HEAD:refs/heads/main", cwd=repo.work)
    lines.lines.clear()
    result = await run_build(repo.spec(lost), lines, settings=settings)
    assert result.status is BuildStatus.SUCCEEDED and lines.lines == ["lost"]


async def test_failure_exit_code_and_shebang(
    repo: Repo, settings: BuilderSettings, lines: Lines
) -> None:
    commit = repo.build_sh("#!/bin/sh\necho $0\nexit 7\n", executable=(".applikant/build.sh",))
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.FAILED
    assert result.exit_code == 7 and result.reason == "exited with code 7"
    assert lines.lines == ["./.applikant/build.sh", MARKER_PREFIX + "exited with code 7"]


async def test_no_build_sh_and_unknown_commit(
    repo: Repo, settings: BuilderSettings, lines: Lines, builds_root: Path
) -> None:
    commit = repo.commit({"README": "no build here"})
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.FAILED and result.exit_code is None
    assert result.reason == f"no .applikant/build.sh in commit {commit[:12]}"
    result = await run_build(repo.spec("1" * 40), lines, settings=settings)
    assert (
        result.status is BuildStatus.FAILED and "checkout of 111111111111 failed" in result.reason
    )
    assert "not our ref" in result.reason
    assert lines.lines[-1] == MARKER_PREFIX + result.reason
    assert os.listdir(builds_root) == []


async def test_loops_forever_times_out(repo: Repo, builds_root: Path, lines: Lines) -> None:
    commit = repo.build_sh("echo start\nwhile :; do :; done\n")
    settings = BuilderSettings(builds_root=str(builds_root), timeout=1.0, kill_grace=0.2)
    start = trio.current_time()
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.TIMED_OUT
    assert result.reason == "timed out after 1 s"
    assert lines.lines == ["start", MARKER_PREFIX + "timed out after 1 s"]
    assert 1.0 <= trio.current_time() - start < 30  # stopped at its timeout, not before
    assert os.listdir(builds_root) == []


async def test_ignoring_sigterm_does_not_help(repo: Repo, builds_root: Path, lines: Lines) -> None:
    commit = repo.build_sh("trap '' TERM\necho PID $$\nwhile :; do sleep 0.05; done\n")
    settings = BuilderSettings(builds_root=str(builds_root), timeout=0.5, kill_grace=0.3)
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.TIMED_OUT and result.exit_code == -9
    assert not any(alive(p) for p in pids_in(lines.lines))


async def test_megabytes_of_output_are_capped_and_say_so(
    repo: Repo, builds_root: Path, lines: Lines
) -> None:
    # 8 MiB of output against a 64 KiB cap; the build still runs to its end.
    commit = repo.build_sh(
        "yes 0123456789abcdef0123456789abcdef | head -c 8388608\necho done >&2\nexit 0\n"
    )
    settings = BuilderSettings(builds_root=str(builds_root), log_limit=64 * 1024)
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.SUCCEEDED
    assert result.log_truncated
    assert lines.lines[-1] == (
        MARKER_PREFIX + "log truncated at 64 KiB; the rest of the output was discarded"
    )
    kept = lines.lines[:-1]
    assert set(kept) == {"0123456789abcdef0123456789abcdef"}
    assert sum(len(line) + 1 for line in kept) <= 64 * 1024
    assert result.log_size == sum(len(line.encode()) + 1 for line in lines.lines)


async def test_children_are_all_killed_at_the_end(
    repo: Repo, settings: BuilderSettings, lines: Lines
) -> None:
    # A background child, a child in a new process group, and a daemon that
    # double-forks into a new session (escaping the group): none survives.
    commit = repo.build_sh(
        "sleep 300 &\necho PID $!\n"
        "(set -m; sleep 301 & echo PID $!) \n"
        "setsid sh -c 'sleep 302 & echo PID $!; exit 0' &\n"
        "sh -c 'setsid sh -c \"echo PID \\$\\$; exec sleep 303\" & exit 0'\n"
        "sleep 0.3\necho done\n"
    )
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.SUCCEEDED, lines.text
    pids = pids_in(lines.lines)
    assert len(pids) == 4, lines.text
    assert [p for p in pids if alive(p)] == []


async def test_cannot_reach_ams_data_nor_write_outside_its_work_dir(
    repo: Repo, shared_dir: Path, builds_root: Path, lines: Lines
) -> None:
    data = shared_dir / "data"
    data.mkdir(mode=0o700)
    (data / "am.sqlite3").write_text("secret")
    (data / "am.sqlite3").chmod(0o644)  # readable by all: only the dir protects it
    other = builds_root / "someone-elses-build"
    other.mkdir(parents=True, mode=0o700)
    settings = BuilderSettings(builds_root=str(builds_root)).resolved(str(data))
    targets = [
        str(data / "am.sqlite3"),
        str(data / "new"),
        str(builds_root / "escape"),
        str(other / "x"),
        str(repo.git_dir / "HEAD"),
        "/etc/applikant-escape",
    ]
    script = "".join(
        f"if cat {t} >/dev/null 2>&1; then echo READ {t}; fi\n"
        f"if echo x >>{t} 2>/dev/null; then echo WROTE {t}; fi\n"
        for t in targets
    )
    script += "ls ../.. >/dev/null 2>&1 && echo LISTED builds root\n"
    script += "echo x > $HOME/ok && echo x > $TMPDIR/ok && echo x > ok && echo own dirs ok\n"
    commit = repo.build_sh(script)
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.SUCCEEDED, lines.text
    assert [line for line in lines.lines if line.split()[0] in ("READ", "WROTE", "LISTED")] == []
    assert lines.lines[-1] == "own dirs ok"
    assert (data / "am.sqlite3").read_text() == "secret"
    assert not (data / "new").exists() and not (builds_root / "escape").exists()
    assert not os.path.exists("/etc/applikant-escape")


async def test_a_reachable_data_dir_refuses_the_build(
    repo: Repo, shared_dir: Path, builds_root: Path, lines: Lines
) -> None:
    data = shared_dir / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    settings = BuilderSettings(builds_root=str(builds_root)).resolved(str(data))
    commit = repo.build_sh("echo should not run\n")
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.FAILED and result.exit_code is None
    assert result.reason == f"isolation: the build user applikant-build could read {data}"
    assert "should not run" not in lines.lines


async def test_builds_root_the_build_user_cannot_enter(
    repo: Repo, tmp_path: Path, lines: Lines
) -> None:
    settings = BuilderSettings(builds_root=str(tmp_path / "builds"))
    commit = repo.build_sh("echo should not run\n")
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.FAILED
    assert "the build user applikant-build cannot enter" in result.reason
    assert os.listdir(tmp_path / "builds") == []


async def test_resource_limits_apply(repo: Repo, builds_root: Path, lines: Lines) -> None:
    limits = Limits(
        cpu_seconds=1,
        memory_bytes=256 * 1024 * 1024,
        processes=64,
        file_size_bytes=1024 * 1024,
        open_files=32,
    )
    settings = BuilderSettings(builds_root=str(builds_root), limits=limits)
    commit = repo.build_sh(
        "ulimit -t; ulimit -v; ulimit -p; ulimit -f; ulimit -n; ulimit -c\n"
        "if head -c 2097152 /dev/zero > big 2>/dev/null; then echo wrote 2 MiB; fi\n"
        "ls -l big | awk '{print $5}'\n"
        "while :; do :; done\n"
    )
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert lines.lines[:6] == ["1", str(256 * 1024), "64", str(1024 * 1024 // 512), "32", "0"]
    assert lines.lines[6] == str(1024 * 1024)  # stopped at the file size limit
    assert result.status is BuildStatus.FAILED
    assert result.reason == "killed by SIGXCPU (CPU time limit)"


async def test_cancel_event_stops_a_running_build_and_lines_come_live(
    repo: Repo, settings: BuilderSettings, lines: Lines, builds_root: Path
) -> None:
    commit = repo.build_sh("echo PID $$\necho first\nsleep 60 &\necho PID $!\nwait\n")
    cancel = trio.Event()
    seen_at: list[float] = []

    async def on_line(line: str) -> None:
        await lines(line)
        if line == "first":
            seen_at.append(trio.current_time())
            cancel.set()

    start = trio.current_time()
    result = await run_build(repo.spec(commit), on_line, settings=settings, cancel=cancel)
    assert result.status is BuildStatus.CANCELLED and result.reason == "cancelled"
    assert seen_at and seen_at[0] - start < 30  # live: the build itself runs 60 s
    assert lines.lines[-1] == MARKER_PREFIX + "cancelled"
    assert not any(alive(p) for p in pids_in(lines.lines))
    assert os.listdir(builds_root) == []


async def test_callers_cancel_scope_stops_and_cleans_up(
    repo: Repo, settings: BuilderSettings, lines: Lines, builds_root: Path
) -> None:
    commit = repo.build_sh("echo PID $$\nsleep 60 &\necho PID $!\nwait\n")
    with trio.move_on_after(1.0) as scope:
        await run_build(repo.spec(commit), lines, settings=settings)
    assert scope.cancelled_caught
    pids = pids_in(lines.lines)
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    assert os.listdir(builds_root) == []


async def test_on_line_raising_stops_the_build(
    repo: Repo, settings: BuilderSettings, builds_root: Path
) -> None:
    commit = repo.build_sh("echo PID $$\nsleep 60\n")
    pids: list[int] = []

    async def on_line(line: str) -> None:
        pids.extend(pids_in([line]))
        raise RuntimeError("store is gone")

    with pytest.raises(RuntimeError, match="store is gone"):
        await run_build(repo.spec(commit), on_line, settings=settings)
    assert pids and not alive(pids[0])
    assert os.listdir(builds_root) == []


async def test_work_dir_removed_whatever_the_build_did_to_it(
    repo: Repo, settings: BuilderSettings, lines: Lines, builds_root: Path
) -> None:
    commit = repo.build_sh(
        "mkdir -p a/b && touch a/b/c && ln -s /etc/passwd link && "
        "chmod 000 a/b a && chmod 500 . && echo done\n"
    )
    result = await run_build(repo.spec(commit), lines, settings=settings)
    assert result.status is BuildStatus.SUCCEEDED, lines.text
    assert os.listdir(builds_root) == []
    assert os.path.exists("/etc/passwd")


def test_build_env_is_the_documented_one(repo: Repo, settings: BuilderSettings) -> None:
    spec = repo.spec("a" * 40)
    extra = settings.model_copy(update={"env": {"CI": "true", "HOME": "/ignored"}})
    env = build_env(spec, extra, "/w")
    assert env == {
        "CI": "true",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/w",
        "TMPDIR": "/w/tmp",
        "LANG": "C.UTF-8",
        "APPLIKANT_REPO": "alice/demo",
        "APPLIKANT_REF": "refs/heads/main",
        "APPLIKANT_COMMIT": "a" * 40,
        "APPLIKANT_BUILD_ID": "build-1",
    }
