"""Builds end to end with real processes: portmapper, am, af, sshd and ab
(harness/builds.py). A push with .applikant/build.sh queues a build
(`build alice/app #N queued for main: URL` in the push output), ab runs it, its log and status are in
am, and the CLI reads, follows, cancels and re-runs it. Then the ways a build
can be cut short: timeout, cancel, ab killed mid-build (failed, or queued
again), am restarted with builds queued, a build that prints megabytes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from applikant.builder.logcap import MARKER_PREFIX
from harness.builds import BuildSite
from harness.gitenv import User
from harness.wait import wait_until

pytestmark = [
    pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="OpenSSH server not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="ab switches to the build user only as root"),
]

LOG_LIMIT = 65536


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildSite]:
    with BuildSite(
        tmp_path_factory.mktemp("builds"), builder_toml=f"timeout = 6.0\nlog_limit = {LOG_LIMIT}\n"
    ) as s:
        yield s


@pytest.fixture(scope="module")
def alice(site: BuildSite) -> User:
    return site.add_user("alice")


def repo_and_clone(site: BuildSite, alice: User, name: str, tmp_path: Path) -> Path:
    site.create_repo(f"alice/{name}")
    work = tmp_path / name
    site.clone(alice, f"alice/{name}", work)
    return work


def cli(site: BuildSite, *args: str) -> subprocess.CompletedProcess[str]:
    return site.cluster.cli(*args)


def test_push_queues_a_build_that_succeeds_with_its_log(
    site: BuildSite, alice: User, tmp_path: Path
) -> None:
    work = repo_and_clone(site, alice, "ok", tmp_path)
    commit, stderr = site.push_script(
        alice,
        work,
        'echo "hello from $APPLIKANT_REPO"\necho "ref $APPLIKANT_REF"\ngit log -1 --format=%H\n',
    )
    number = site.queued_build(stderr)
    assert number == "alice/ok#1"  # numbered per repository
    assert (
        f"remote: applikant: build alice/ok #1 queued for main: {site.base}/alice/ok/builds/1"
        in stderr
    )
    build = site.wait_build(number, "succeeded")
    assert build["commit"] == commit and build["ref"] == "refs/heads/main"
    assert build["repo"] == "alice/ok" and build["pusher"] == alice.id
    assert build["number"] == 1 and build["pusher_login"] == "alice"
    assert build["exit_code"] == 0 and build["runner"] == site.ab_node
    assert build["queued_at"] <= build["started_at"] <= build["finished_at"]
    assert site.log_lines(number)[-3:] == ["hello from alice/ok", "ref refs/heads/main", commit]

    # the CLI: list, show, log
    listed = json.loads(cli(site, "build", "list", "--repo", "alice/ok", "--json").stdout)
    assert [f"{b['repo']}#{b['number']}" for b in listed] == [number]
    r = cli(site, "build", "show", number)
    assert r.returncode == 0 and "succeeded" in r.stdout and commit in r.stdout
    assert "alice/ok #1" in r.stdout and "alice" in r.stdout
    r = cli(site, "build", "log", "1", "--repo", "alice/ok")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == commit
    r = cli(site, "build", "log", "1")  # a number alone: which repository's?
    assert r.returncode == 1 and "--repo" in r.stderr and "alice/ok" not in r.stdout

    # a push without build.sh, a tag and a deletion queue nothing
    site.git(None, "rm", "-q", "-r", ".applikant", cwd=work)
    site.git(None, "commit", "-q", "-m", "no build", cwd=work)
    r = site.push(alice, work, "HEAD:refs/heads/nobuild")
    assert "queued" not in r.stderr
    site.git(None, "tag", "v1", commit, cwd=work)
    r = site.push(alice, work, "refs/tags/v1")
    assert "queued" not in r.stderr
    r = site.push(alice, work, ":refs/heads/nobuild")
    assert "queued" not in r.stderr
    assert len(site.call_am("am_builds", "list", {"repo": "alice/ok"})["items"]) == 1


def test_failing_build_and_rerun(site: BuildSite, alice: User, tmp_path: Path) -> None:
    work = repo_and_clone(site, alice, "fails", tmp_path)
    _, stderr = site.push_script(alice, work, "echo about to fail\nexit 3\n")
    number = site.queued_build(stderr)
    build = site.wait_build(number, "failed")
    assert build["exit_code"] == 3 and build["reason"] == "exited with code 3"
    assert site.log_lines(number) == ["about to fail", MARKER_PREFIX + "exited with code 3"]
    r = cli(site, "build", "log", number)
    assert r.returncode == 1

    r = cli(site, "build", "rerun", number)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "build alice/fails #2 queued"
    again = "alice/fails#2"
    rerun = site.wait_build(again, "failed")
    assert rerun["commit"] == build["commit"] and rerun["attempt"] == 2
    audit = site.call_am("am_repo_db", "query_audit", {"query": {"action": "build"}})["items"]
    assert any(e["action"] == "build.rerun" for e in audit)


def test_timeout(site: BuildSite, alice: User, tmp_path: Path) -> None:
    work = repo_and_clone(site, alice, "slow", tmp_path)
    _, stderr = site.push_script(alice, work, "echo sleeping\nsleep 60\n")
    number = site.queued_build(stderr)
    build = site.wait_build(number, "timed-out")
    assert build["reason"] == "timed out after 6 s"
    assert site.log_lines(number)[0] == "sleeping"


def test_cancel_running_and_queued(site: BuildSite, alice: User, tmp_path: Path) -> None:
    work = repo_and_clone(site, alice, "cancel", tmp_path)
    _, stderr = site.push_script(alice, work, "echo started\nsleep 60\n")
    running = site.queued_build(stderr)
    # concurrency 1: the second one waits in the queue
    _, stderr = site.push_script(alice, work, "echo second\n", branch="other")
    queued = site.queued_build(stderr)
    wait_until(lambda: site.log_lines(running) == ["started"], what="the build to start")
    assert site.build(queued)["status"] == "queued"
    r = cli(site, "build", "cancel", queued)
    assert r.returncode == 0 and "cancelled" in r.stdout
    r = cli(site, "build", "cancel", running)
    assert r.returncode == 0 and "cancel asked" in r.stdout, r.stdout + r.stderr
    build = site.wait_build(running, "cancelled")
    assert build["reason"] == "cancelled"
    assert site.build(queued)["started_at"] is None
    r = cli(site, "build", "cancel", running)
    assert r.returncode == 1 and "already ended" in r.stderr


def test_log_follow_streams(site: BuildSite, alice: User, tmp_path: Path) -> None:
    work = repo_and_clone(site, alice, "follow", tmp_path)
    # The build holds after its first line until the test opens the gate, so the
    # first line is seen while it runs, however slow the machine.
    gate = site.shared / "follow-gate"
    _, stderr = site.push_script(
        alice,
        work,
        f"echo line 1\nwhile [ ! -e {gate} ]; do sleep 0.05; done\n"
        "for i in 2 3 4 5; do echo line $i; sleep 0.3; done\n",
    )
    number = site.queued_build(stderr)
    env = dict(os.environ, **site.env)
    argv = [sys.executable, "-m", "applikant.cli.main", "build", "log", number, "--follow"]
    # (closes its pipes and waits for it at the end of the block)
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        # A stuck CLI is killed, which ends the reads below.
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()
            assert first == "line 1\n"
            # the first line came while the build still ran
            assert site.build(number)["status"] == "running"
            gate.touch()
            # Read on from the same buffered stream: readline may already hold
            # the next lines (communicate() would read past them).
            out, err = proc.stdout.read(), proc.stderr.read()
            proc.wait()
        finally:
            watchdog.cancel()
    assert out.splitlines() == [f"line {i}" for i in range(2, 6)]
    assert proc.returncode == 0 and f"build {number} succeeded" in err


def test_megabytes_of_output_are_capped(site: BuildSite, alice: User, tmp_path: Path) -> None:
    work = repo_and_clone(site, alice, "loud", tmp_path)
    _, stderr = site.push_script(
        alice, work, "yes 'a line of output' | head -c 5000000\necho end\n"
    )
    number = site.queued_build(stderr)
    build = site.wait_build(number, "succeeded")
    assert build["log_truncated"] is True
    lines = site.log_lines(number)
    assert sum(len(line) + 1 for line in lines) <= LOG_LIMIT + 200
    assert any(line.startswith(MARKER_PREFIX) and "log" in line for line in lines[-3:]), lines[-3:]
    r = cli(site, "build", "show", number)
    assert "(truncated)" in r.stdout


def test_ab_killed_mid_build_fails_it_then_requeue_mode_requeues(
    site: BuildSite, alice: User, tmp_path: Path
) -> None:
    work = repo_and_clone(site, alice, "killed", tmp_path)
    _, stderr = site.push_script(alice, work, "echo started\nsleep 60\n")
    number = site.queued_build(stderr)
    wait_until(lambda: "started" in site.log_lines(number), what="the build to start")
    site.stop_ab(signal.SIGKILL)
    site.start_ab()
    build = site.wait_build(number, "failed")
    assert build["reason"].startswith("interrupted"), build
    assert site.log_lines(number)[-1].startswith("applikant: interrupted")

    # requeue mode (the killed ab's, told to am in its hello): the same build
    # runs again (attempt 2) and succeeds
    requeue = site.with_builder('on_interrupt = "requeue"')
    site.stop_ab()
    site.start_ab(requeue)
    try:
        _, stderr = site.push_script(alice, work, "echo started\nsleep 2\necho done\n")
        number = site.queued_build(stderr)
        wait_until(lambda: "started" in site.log_lines(number), what="the build to start")
        site.stop_ab(signal.SIGKILL)
        site.start_ab(requeue)
        build = site.wait_build(number, "succeeded")
        assert build["attempt"] == 2
        lines = site.log_lines(number)
        assert lines[0] == "started" and lines[-1] == "done"
        assert any("queued again" in line for line in lines)
    finally:
        site.stop_ab()
        site.start_ab()


def test_am_restarted_with_queued_builds(site: BuildSite, alice: User, tmp_path: Path) -> None:
    work = repo_and_clone(site, alice, "restart", tmp_path)
    site.stop_ab()
    numbers = []
    for branch in ("one", "two"):
        _, stderr = site.push_script(alice, work, f"echo {branch}\n", branch=branch)
        numbers.append(site.queued_build(stderr))
    assert [site.build(n)["status"] for n in numbers] == ["queued", "queued"]
    site.kill_am()
    site.start_am()
    site.wait_synced()
    assert [site.build(n)["status"] for n in numbers] == ["queued", "queued"]
    site.start_ab()
    for n, branch in zip(numbers, ("one", "two"), strict=False):
        site.wait_build(n, "succeeded")
        assert site.log_lines(n) == [branch]


def test_web_pages_and_log_json(site: BuildSite, alice: User, tmp_path: Path) -> None:
    import httpx

    from harness.web import csrf_of

    site.start_aw()
    work = repo_and_clone(site, alice, "web", tmp_path)
    site.call_am("am_repo_db", "update_repo", {"repo": "alice/web", "is_public": True})
    _, stderr = site.push_script(alice, work, "echo '<b>not html</b>'\nsleep 1\necho done\n")
    number = site.queued_build(stderr)
    n = number.split("#")[1]
    build_id = site.build(number)["id"]
    with httpx.Client(base_url=site.base, timeout=20) as web:
        wait_until(lambda: "<b>" in "".join(site.log_lines(number)), what="the first line")
        page = web.get(f"/alice/web/builds/{n}")
        assert page.status_code == 200
        assert "&lt;b&gt;not html&lt;/b&gt;" in page.text and "/static/build.js" in page.text
        assert 'data-final="false"' in page.text
        first = web.get(f"/api/builds/{build_id}/log", params={"after": 0}).json()
        assert first["lines"][0] == [1, "<b>not html</b>"] and first["status"] == "running"
        site.wait_build(number, "succeeded")
        rest = web.get(f"/api/builds/{build_id}/log", params={"after": first["next"]}).json()
        assert rest["final"] and rest["status"] == "succeeded" and rest["lines"][-1][1] == "done"
        listing = web.get("/alice/web/builds")
        assert listing.status_code == 200 and f'/alice/web/builds/{n}"' in listing.text
        assert 'class="badge status-succeeded"' in listing.text
        done = web.get(f"/alice/web/builds/{n}").text
        assert re.search(r'id="build-summary">Succeeded in \d+ s<', done), done[:2000]
        assert "This build is" not in done
        assert 'href="/alice/web/builds"' in web.get("/alice/web").text
        assert web.get("/api/builds/build-999999/log").status_code == 404
        assert web.get(f"/alice/ok/builds/{n}").status_code == 404  # private, other repo
        # anonymous readers cannot re-run; alice (a writer) can
        assert web.post(f"/alice/web/builds/{n}", data={"action": "rerun"}).status_code in (
            403,
            401,
        )
    site.call_am("am_user_db", "set_password", {"user": alice.id, "password": "alice-password-1"})
    with httpx.Client(base_url=site.base, timeout=20) as web:
        login = web.get("/login")
        web.post(
            "/login",
            data={
                "login": "alice",
                "password": "alice-password-1",
                "next": "/",
                "csrf": csrf_of(login.text),
            },
        )
        page = web.get(f"/alice/web/builds/{n}")
        r = web.post(f"/alice/web/builds/{n}", data={"action": "rerun", "csrf": csrf_of(page.text)})
        assert r.status_code == 303
        again = int(r.headers["location"].rsplit("/", 1)[1])
        assert again == int(n) + 1  # the repository's next number
        site.wait_build(f"alice/web#{again}", "succeeded")
