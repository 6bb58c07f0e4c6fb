"""af_hook_server in-process: what it accepts from ah/as, what it sends am, the
quarantine confinement, fail-closed pre-receive, and the spool round trip.
am is replaced by a recording link here; the end-to-end tests use the real one."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from applikant.amclient import AmRefused, AmUnavailable
from applikant.diskspace import Reserve
from applikant.frontend import spool
from applikant.frontend.hookserver import HookRefused, HookServer, parse_refs
from applikant.frontend.repodisk import RepoDisk
from harness.amlink import RecordingLink

OLD, NEW, ZERO = "a" * 40, "b" * 40, "0" * 40


@pytest.fixture
def setup(tmp_path: Path) -> tuple[HookServer, RecordingLink, RepoDisk]:
    disk = RepoDisk(str(tmp_path / "repos"), "/bin/true")
    disk.create("team/p")
    link = RecordingLink()
    return HookServer(link, disk, str(tmp_path / "spool"), "af@test"), link, disk  # type: ignore[arg-type]


def _request(disk: RepoDisk, hook: str = "pre-receive", **env: str) -> dict[str, Any]:
    return {
        "hook": hook,
        "args": [],
        "stdin": f"{OLD} {NEW} refs/heads/main\n",
        "env": {"APPLIKANT_USER": "user-7", "APPLIKANT_REPO": "team/p", **env},
        "cwd": disk.path("team/p"),
        "event_id": "0123abcd-0000-4000-8000-000000000000",
    }


def test_build(setup: tuple[HookServer, RecordingLink, RepoDisk]) -> None:
    server, _, disk = setup
    data = server.build(_request(disk))
    assert data == {
        "hook": "pre-receive",
        "repo": "team/p",
        "user": "user-7",
        "node": "af@test",
        "event_id": "0123abcd-0000-4000-8000-000000000000",
        "refs": [{"ref": "refs/heads/main", "old": OLD, "new": NEW, "ff": None}],
        "git_dir": disk.path("team/p"),
    }
    # without APPLIKANT_REPO the repo comes from the working directory
    req = _request(disk)
    del req["env"]["APPLIKANT_REPO"]
    assert server.build(req)["repo"] == "team/p"


@pytest.mark.parametrize(
    "change,fragment",
    [
        ({"env": {"APPLIKANT_REPO": "team/p"}}, "no user given"),
        ({"env": {"APPLIKANT_USER": "root", "APPLIKANT_REPO": "team/p"}}, "no user given"),
        (
            {"env": {"APPLIKANT_USER": "user-7", "APPLIKANT_REPO": "team/other"}},
            "different repository",
        ),
        ({"env": {"APPLIKANT_USER": "user-7", "APPLIKANT_REPO": "../x"}}, "'..'"),
        ({"cwd": "/tmp"}, "different repository"),
        ({"cwd": "relative"}, "outside a repository"),
        ({"stdin": "garbage\n"}, "malformed ref update"),
        ({"stdin": f"{OLD} {NEW} main\n"}, "malformed ref update"),
        ({"event_id": None}, "no event id"),
        ({"env": None}, "malformed hook call"),
    ],
)
def test_build_refuses(
    setup: tuple[HookServer, RecordingLink, RepoDisk], change: dict, fragment: str
) -> None:
    server, _, disk = setup
    with pytest.raises(HookRefused, match=fragment.replace("(", r"\(")):
        server.build({**_request(disk), **change})


def test_parse_refs() -> None:
    assert parse_refs("") == []
    assert parse_refs(f"{ZERO} {NEW} refs/tags/v1\n{OLD} {ZERO} refs/heads/x\n") == [
        {"ref": "refs/tags/v1", "old": ZERO, "new": NEW, "ff": None},
        {"ref": "refs/heads/x", "old": OLD, "new": ZERO, "ff": None},
    ]
    with pytest.raises(HookRefused):
        parse_refs(f"{OLD[:-1]} {NEW} refs/heads/x\n")


async def test_pre_receive_forwards_with_ff_and_quarantine(
    tmp_path: Path, setup: tuple[HookServer, RecordingLink, RepoDisk]
) -> None:
    server, link, disk = setup
    git_dir = disk.path("team/p")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@e",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@e",
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "--git-dir", git_dir, *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    tree = git("write-tree")
    a = git("commit-tree", tree, "-m", "a")
    b = git("commit-tree", tree, "-p", a, "-m", "b")
    c = git("commit-tree", tree, "-m", "c")
    req = _request(
        disk, GIT_QUARANTINE_PATH="objects/incoming", GIT_OBJECT_DIRECTORY=f"{git_dir}/objects"
    )
    req["stdin"] = f"{a} {b} refs/heads/main\n{b} {c} refs/heads/other\n{ZERO} {c} refs/heads/new\n"
    quarantine = {
        "GIT_QUARANTINE_PATH": f"{git_dir}/objects/incoming",
        "GIT_OBJECT_DIRECTORY": f"{git_dir}/objects",
    }
    # am needs no fast-forward answer (no protected branch): one call, no git.
    reply = await server.handle_hook(None, req)  # type: ignore[arg-type]
    assert reply == {"ok": True, "messages": []}
    [(target, method, data)] = link.calls
    assert (target, method) == ("am_hook_api", "handle_hook")
    assert [r["ff"] for r in data["refs"]] == [None, None, None]
    assert data["ff_on_request"] is True and data["env"] == quarantine
    # am asks (protected branches): git answers inside the quarantine, am is asked again.
    link.calls.clear()
    names = ["refs/heads/main", "refs/heads/other", "refs/heads/new"]
    link.answers = [
        {"ok": False, "need_ff": names, "messages": []},
        {"ok": False, "messages": ["refused refs/heads/other: force", "applikant: x"]},
    ]
    reply = await server.handle_hook(None, req)  # type: ignore[arg-type]
    assert reply == {
        "ok": False,
        "messages": ["applikant: refused refs/heads/other: force", "applikant: x"],
    }
    [(_, _, first), (_, _, second)] = link.calls
    assert [r["ff"] for r in first["refs"]] == [None, None, None]
    assert [r["ff"] for r in second["refs"]] == [True, False, None]  # (a creation needs none)
    assert second["ff_on_request"] is False and second["env"] == quarantine
    # only the refs am named
    link.calls.clear()
    link.answers = [{"ok": False, "need_ff": ["refs/heads/other"], "messages": []}]
    assert (await server.handle_hook(None, req))["ok"] is True  # type: ignore[arg-type]
    assert [r["ff"] for r in link.calls[1][2]["refs"]] == [None, False, None]


async def test_quarantine_outside_the_repo_refused(
    setup: tuple[HookServer, RecordingLink, RepoDisk],
) -> None:
    server, link, disk = setup
    for var, value in (
        ("GIT_OBJECT_DIRECTORY", "/etc"),
        ("GIT_ALTERNATE_OBJECT_DIRECTORIES", "objects:../../x"),
        ("GIT_QUARANTINE_PATH", "../other.git/objects"),
    ):
        req = _request(disk, **{var: value})
        req["stdin"] = f"{OLD} {NEW} refs/heads/main\n"
        reply = await server.handle_hook(None, req)  # type: ignore[arg-type]
        assert reply["ok"] is False and "outside the repository" in reply["messages"][0]
    assert link.calls == []


async def test_pre_receive_fails_closed(setup: tuple[HookServer, RecordingLink, RepoDisk]) -> None:
    server, link, disk = setup
    link.up = False
    reply = await server.handle_hook(None, _request(disk))  # type: ignore[arg-type]
    assert reply["ok"] is False and "cannot be reached" in reply["messages"][0]
    link.up = True
    link.answers = [AmUnavailable("the manager (am) did not answer within 15 s")]
    reply = await server.handle_hook(None, _request(disk))  # type: ignore[arg-type]
    assert reply == {
        "ok": False,
        "messages": [
            "applikant: push refused, nothing changed: the manager (am) did not answer within 15 s"
        ],
    }


async def test_post_receive_spooled_then_delivered(
    setup: tuple[HookServer, RecordingLink, RepoDisk],
) -> None:
    server, link, disk = setup
    link.answers = [AmUnavailable("gone")]
    reply = await server.handle_hook(None, _request(disk, "post-receive"))  # type: ignore[arg-type]
    assert reply["ok"] is True and "recorded when the manager is back" in reply["messages"][0]
    [path] = spool.pending(server.spool_dir)
    assert spool.read(path)["spooled_by"] == "af"
    # a second event am will refuse for good is parked, not retried for ever
    other = _request(disk, "post-receive")
    other["event_id"] = "ffff0000-0000-4000-8000-000000000000"
    link.answers = [AmUnavailable("gone")]
    await server.handle_hook(None, other)  # type: ignore[arg-type]
    link.calls.clear()
    link.answers = [{"ok": True, "messages": []}, AmRefused("not_found", "no repository team/p")]
    assert await server.deliver_spool() == 0  # held back until am is back (or the backoff)
    assert link.calls == []
    await server.delivery.on_connect()  # am is back
    assert await server.deliver_spool() == 1
    assert spool.pending(server.spool_dir) == []
    assert [c[2]["event_id"] for c in link.calls] == [
        "0123abcd-0000-4000-8000-000000000000",
        "ffff0000-0000-4000-8000-000000000000",
    ]
    failed = Path(server.spool_dir) / spool.FAILED_DIR
    assert sorted(p.suffix for p in failed.iterdir()) == [".json", ".reason"]


async def test_unknown_hooks(setup: tuple[HookServer, RecordingLink, RepoDisk]) -> None:
    server, link, _disk = setup
    assert (await server.handle_hook(None, {"hook": "post-update"}))["ok"] is True  # type: ignore[arg-type]
    assert (await server.handle_hook(None, {"hook": "proc-receive"}))["ok"] is False  # type: ignore[arg-type]
    assert (await server.handle_hook(None, "junk"))["ok"] is False  # type: ignore[arg-type]
    assert link.calls == []


# ---- write ahead ------------------------------------------------------------------


async def test_an_approved_push_is_written_ahead_and_dropped_once_recorded(
    setup: tuple[HookServer, RecordingLink, RepoDisk],
) -> None:
    server, link, disk = setup
    pre = {**_request(disk), "push": {"pid": os.getpid(), "start": 1}}
    reply = await server.handle_hook(None, pre)  # type: ignore[arg-type]
    assert reply["ok"] is True
    path = spool.intent_path(server.spool_dir, pre["event_id"])
    record = spool.read(path)
    assert record["request"] == pre and record["push"] == {"pid": os.getpid(), "start": 1}
    await server.handle_hook(None, _request(disk, "post-receive"))  # type: ignore[arg-type]
    assert not os.path.exists(path)
    assert [c[2]["hook"] for c in link.calls] == ["pre-receive", "post-receive"]


async def test_a_refused_push_writes_nothing(
    setup: tuple[HookServer, RecordingLink, RepoDisk],
) -> None:
    server, link, disk = setup
    link.answers = [{"ok": False, "messages": ["refused refs/heads/main: protected"]}]
    reply = await server.handle_hook(None, _request(disk))  # type: ignore[arg-type]
    assert reply["ok"] is False
    assert spool.intents(server.spool_dir) == []


async def test_no_intent_no_push(
    setup: tuple[HookServer, RecordingLink, RepoDisk], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _, disk = setup

    def full(*args: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool, "write_intent", full)
    reply = await server.handle_hook(None, _request(disk))  # type: ignore[arg-type]
    assert reply == {
        "ok": False,
        "messages": ["applikant: push refused: the git host's disk is full; nothing changed"],
    }
    # any other failure is refused too, in its own words
    Path(server.spool_dir).write_text("not a directory")
    monkeypatch.undo()
    reply = await server.handle_hook(None, _request(disk))  # type: ignore[arg-type]
    assert reply["ok"] is False
    assert reply["messages"][0].startswith("applikant: push refused: the git host cannot record")


async def test_below_the_reserve_am_is_not_asked(
    setup: tuple[HookServer, RecordingLink, RepoDisk],
) -> None:
    server, link, disk = setup
    server.reserve = Reserve([disk.root], 1)
    server.reserve.reserve_of = lambda total: total + 1  # type: ignore[method-assign]
    reply = await server.handle_hook(None, _request(disk))  # type: ignore[arg-type]
    assert reply["ok"] is False
    assert "the git host's disk is nearly full (only " in reply["messages"][0]
    assert "clones and fetches go on" in reply["messages"][0]
    assert link.calls == []


async def test_post_receive_failures_are_kept(
    setup: tuple[HookServer, RecordingLink, RepoDisk],
) -> None:
    server, link, disk = setup
    # an error reply (a failed commit in am) is retried, not taken as final
    link.answers = [AmRefused("internal", "database or disk is full")]
    reply = await server.handle_hook(None, _request(disk, "post-receive"))  # type: ignore[arg-type]
    assert "could not record it yet (internal: database or disk is full)" in reply["messages"][0]
    assert len(spool.pending(server.spool_dir)) == 1
    # a rejection for good is a dead letter, with its reason
    other = {**_request(disk, "post-receive"), "event_id": "ffff0000-0000-4000-8000-000000000000"}
    link.answers = [AmRefused("bad_request", "refs: too many")]
    reply = await server.handle_hook(None, other)  # type: ignore[arg-type]
    assert reply["ok"] is True and "kept for the admin" in reply["messages"][0]
    [dead] = spool.dead_letters(server.spool_dir)
    assert dead["event_id"] == other["event_id"] and dead["reason"] == "bad_request: refs: too many"
    assert dead["repo"] == "team/p"
