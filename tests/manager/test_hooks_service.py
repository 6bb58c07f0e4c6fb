"""am_hook_api through a real am process: per-ref decisions (write access,
protected branches, fast-forward by git), push.denied in the audit log, and
post-receive recorded once however often it is delivered."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from harness.am import Am, add_user
from tests.manager.gitrepo import ZERO, Repo, make_repo


@pytest.fixture(scope="module")
def setup(am: Am, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ids = {n: add_user(am, n)["id"] for n in ("hwriter", "hreader", "hadmin")}
    am.repos("create_repo", actor="system", path="hadmin/proj")
    am.repos("grant", actor="system", repo="hadmin/proj", grantee="hwriter", level="write")
    am.repos("grant", actor="system", repo="hadmin/proj", grantee="hreader", level="read")
    am.repos("protect_branch", actor="system", repo="hadmin/proj", pattern="main")
    am.repos(
        "protect_branch", actor="system", repo="hadmin/proj", pattern="release/*", admins_only=True
    )
    return {"ids": ids, "git": make_repo(tmp_path_factory.mktemp("hookrepo"))}


def hook(am: Am, kind: str, user: str, refs: list[dict[str, Any]], **extra: Any) -> Any:
    data = {
        "hook": kind,
        "repo": "hadmin/proj",
        "user": user,
        "node": "af@githost",
        "refs": refs,
        **extra,
    }
    return am.call("am_hook_api", "handle_hook", data)


def ref(name: str, old: str, new: str, ff: bool | None = None) -> dict[str, Any]:
    return {"ref": name, "old": old, "new": new, "ff": ff}


def test_writers_push_and_protection_holds(am: Am, setup: dict[str, Any]) -> None:
    g: Repo = setup["git"]
    writer, admin = setup["ids"]["hwriter"], setup["ids"]["hadmin"]
    ok = hook(
        am,
        "pre-receive",
        writer,
        [
            ref("refs/heads/main", g.a, g.b, True),
            ref("refs/heads/topic", ZERO, g.c),
            ref("refs/heads/scratch", g.b, g.c, False),
            ref("refs/tags/v1", ZERO, g.a),
        ],
    )
    assert ok == {"ok": True, "messages": []}

    cases = [
        (writer, ref("refs/heads/main", g.b, g.c, False), "force-push"),
        (admin, ref("refs/heads/main", g.b, g.c, False), "force-push"),
        (writer, ref("refs/heads/main", g.b, ZERO), "cannot be deleted"),
        (writer, ref("refs/heads/main", g.a, g.b, None), "not checked for fast-forward"),
        (writer, ref("refs/heads/release/1.0", ZERO, g.a), "only repository admins"),
        (writer, ref("refs/tags/v1", g.a, g.b), "tag v1 already exists"),
    ]
    for user, update, words in cases:
        answer = hook(am, "pre-receive", user, [ref("refs/heads/fine", ZERO, g.a), update])
        assert answer["ok"] is False, (update, answer)
        assert len(answer["messages"]) == 1 and words in answer["messages"][0], answer
        assert update["ref"] in answer["messages"][0]
    assert hook(am, "pre-receive", admin, [ref("refs/heads/release/1.0", ZERO, g.a)])["ok"]
    # The update hook asks about one ref at a time, with the same rules.
    assert not hook(am, "update", writer, [ref("refs/heads/main", g.b, g.c, False)])["ok"]
    assert hook(am, "post-update", writer, [])["ok"]


def test_non_writers_are_refused_and_audited(am: Am, setup: dict[str, Any]) -> None:
    g: Repo = setup["git"]
    for user in (setup["ids"]["hreader"], "user-999999"):
        answer = hook(am, "pre-receive", user, [ref("refs/heads/topic", ZERO, g.a)])
        assert answer["ok"] is False
        assert "write access" in answer["messages"][0] or "no account" in answer["messages"][0]
    denied = am.repos(
        "query_audit", query={"action": "push.denied", "repo": "hadmin/proj", "limit": 2}
    )["items"]
    assert [d["actor"] for d in denied] == ["user-999999", setup["ids"]["hreader"]]
    entry = denied[1]
    assert entry["node"] == "af@githost"
    assert entry["details"]["refs"][0]["ref"] == "refs/heads/topic"
    assert "no write access" in entry["details"]["refs"][0]["reason"]


def test_am_asks_git_when_ff_is_unknown(am: Am, setup: dict[str, Any]) -> None:
    g: Repo = setup["git"]
    writer = setup["ids"]["hwriter"]
    git_dir = str(g.bare)
    assert hook(am, "pre-receive", writer, [ref("refs/heads/main", g.a, g.b)], git_dir=git_dir)[
        "ok"
    ]
    answer = hook(am, "pre-receive", writer, [ref("refs/heads/main", g.b, g.c)], git_dir=git_dir)
    assert not answer["ok"] and "force-push" in answer["messages"][0]
    # A git_dir that is not there: unknown, so the protected branch refuses.
    answer = hook(
        am, "pre-receive", writer, [ref("refs/heads/main", g.a, g.b)], git_dir=git_dir + "-gone"
    )
    assert not answer["ok"] and "not checked" in answer["messages"][0]


def test_ff_on_request(am: Am, setup: dict[str, Any]) -> None:
    """af leaves ff out and says so: am names the refs whose decision needs it
    (existing protected branches it cannot ask git about itself), or decides."""
    g: Repo = setup["git"]
    writer = setup["ids"]["hwriter"]
    gone = str(g.bare) + "-gone"
    refs = [
        ref("refs/heads/main", g.a, g.b),  # protected: needs the answer
        ref("refs/heads/topic", g.b, g.c),  # not protected: does not
        ref("refs/heads/release/2", ZERO, g.a),  # a creation: does not
    ]
    answer = hook(am, "pre-receive", writer, refs, git_dir=gone, ff_on_request=True)
    assert answer == {"ok": False, "need_ff": ["refs/heads/main"], "messages": []}
    # nothing protected is touched: decided at once
    answer = hook(am, "pre-receive", writer, refs[1:2], git_dir=gone, ff_on_request=True)
    assert answer == {"ok": True, "messages": []}
    # am shares the file system: it asks git itself rather than ask back
    answer = hook(am, "pre-receive", writer, refs[:1], git_dir=str(g.bare), ff_on_request=True)
    assert answer == {"ok": True, "messages": []}
    # asked again with the answers: decided
    refs[0]["ff"] = False
    answer = hook(am, "pre-receive", writer, refs[:1], git_dir=gone, ff_on_request=False)
    assert not answer["ok"] and "force-push" in answer["messages"][0]


def test_post_receive_is_recorded_once(am: Am, setup: dict[str, Any]) -> None:
    g: Repo = setup["git"]
    writer = setup["ids"]["hwriter"]
    event_id = str(uuid.uuid4())
    refs = [ref("refs/heads/main", g.a, g.b), ref("refs/heads/new", ZERO, g.c)]
    first = hook(am, "post-receive", writer, refs, event_id=event_id)
    again = hook(am, "post-receive", writer, refs, event_id=event_id)
    assert first["ok"] and again["ok"]
    assert first["duplicate"] is False and again["duplicate"] is True
    assert first["entry"] == again["entry"]
    pushes = [
        e
        for e in am.repos("query_audit", query={"action": "push", "limit": 50})["items"]
        if e["event_id"] == event_id
    ]
    assert len(pushes) == 1
    assert pushes[0]["action"] == "push" and pushes[0]["actor"] == writer
    assert pushes[0]["details"]["refs"] == [
        {"ref": "refs/heads/main", "old": g.a, "new": g.b},
        {"ref": "refs/heads/new", "old": ZERO, "new": g.c},
    ]
    assert am.repos("recent_pushes", limit=1)[0]["event_id"] == event_id
    # Without an event id every delivery counts (nothing to tell them apart).
    other = hook(am, "post-receive", writer, refs)
    assert other["entry"] != first["entry"]


BAD_HOOK_DATA = [
    {"hook": "pre-commit", "repo": "hadmin/proj", "user": "user-1", "refs": []},
    {"hook": "pre-receive", "user": "user-1", "refs": []},
    {"hook": "pre-receive", "repo": "hadmin/proj", "user": "user-1", "refs": "main"},
    {
        "hook": "pre-receive",
        "repo": "hadmin/proj",
        "user": "user-1",
        "refs": [{"ref": "refs/heads/x", "old": "xyz", "new": ZERO}],
    },
    {
        "hook": "pre-receive",
        "repo": "hadmin/proj",
        "user": "user-1",
        "refs": [{"ref": "refs/heads/a..b", "old": ZERO, "new": "1" * 40}],
    },
    {
        "hook": "pre-receive",
        "repo": "hadmin/proj",
        "user": "user-1",
        "refs": [{"ref": "refs/heads/x", "old": ZERO, "new": "1" * 40, "ff": "yes"}],
    },
    {
        "hook": "post-receive",
        "repo": "hadmin/proj",
        "user": "user-1",
        "event_id": "../../x",
        "refs": [{"ref": "refs/heads/x", "old": ZERO, "new": "1" * 40}],
    },
    {
        "hook": "post-receive",
        "repo": "hadmin/ghost",
        "user": "user-1",
        "refs": [{"ref": "refs/heads/x", "old": ZERO, "new": "1" * 40}],
    },
]


@pytest.mark.parametrize("data", BAD_HOOK_DATA)
def test_bad_hook_data(am: Am, setup: dict[str, Any], data: dict[str, Any]) -> None:
    before = am.repos("query_audit", query={"limit": 1})
    err = am.error("am_hook_api", "handle_hook", data)
    assert err.kind in ("bad_request", "not_found"), err
    assert am.repos("query_audit", query={"limit": 1}) == before
