"""am_user_db through a real am process: users, keys, groups, who may do what,
and bad input answered with a typed error that changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from harness.am import Am, add_user
from tests.manager.helpers import RealKeys, random_ed25519_line


def snapshot(am: Am) -> tuple[Any, int]:
    """What a refused call must leave as it was: the counts and the audit log."""
    last = am.repos("query_audit", query={"limit": 1})["items"]
    return am.repos("counts"), (last[0]["id"] if last else 0)


@pytest.fixture(scope="module")
def taken(am: Am) -> dict[str, Any]:
    """The user `taken` (and so the name), made once for the bad-input cases."""
    return add_user(am, "taken")


def test_user_lifecycle(am: Am) -> None:
    user = add_user(
        am, "ulife", display_name="U Life", email="u@example.org", password="a-good-password"
    )
    assert user["login"] == "ulife" and user["id"].startswith("user-")
    assert user["has_password"] and not user["is_admin"] and not user["disabled"]
    assert am.users("get_user", user="ulife")["id"] == user["id"]
    assert am.users("get_user", user=user["id"])["email"] == "u@example.org"
    assert "ulife" in [u["login"] for u in am.users("list_users")["items"]]

    changed = am.users("update_user", actor="system", user="ulife", display_name="Renamed")
    assert changed["display_name"] == "Renamed" and changed["email"] == "u@example.org"

    ok = am.users("verify_password", login="ulife", password="a-good-password")
    assert ok is not None and ok["id"] == user["id"]
    assert am.users("verify_password", login="ulife", password="wrong-password") is None
    assert am.users("verify_password", login="nobody-here", password="x") is None

    assert am.users("disable_user", actor="system", user="ulife")["disabled"] is True
    assert am.users("verify_password", login="ulife", password="a-good-password") is None
    assert am.users("enable_user", actor="system", user="ulife")["disabled"] is False
    assert am.users("set_admin", actor="system", user="ulife", is_admin=True)["is_admin"]
    am.users("set_password", actor="system", user="ulife", password="another-password-2")
    assert am.users("verify_password", login="ulife", password="another-password-2")

    actions = [
        e["action"]
        for e in am.repos("query_audit", query={"actor": "system", "limit": 20})["items"]
    ]
    for action in (
        "user.add",
        "user.update",
        "user.disable",
        "user.enable",
        "user.admin",
        "user.passwd",
    ):
        assert action in actions


def test_keys_and_groups(am: Am, real_keys: RealKeys) -> None:
    owner = add_user(am, "kowner")
    line = real_keys.public("svc_ed", "ed25519")
    key = am.users("add_key", actor="system", user="kowner", key=line)
    bits, fingerprint, _ = real_keys.keygen_fingerprint("svc_ed")
    assert key["fingerprint"] == fingerprint and key["bits"] == bits
    assert key["user"] == owner["id"] and key["title"] == "svc_ed@test"
    assert am.users("find_key", fingerprint=fingerprint)["id"] == key["id"]
    assert am.users("find_key", fingerprint="SHA256:nope") is None
    assert am.users("get_key", key=key["id"])["fingerprint"] == fingerprint
    assert fingerprint in {k["fingerprint"] for k in am.users("all_keys")["items"]}
    assert [k["id"] for k in am.users("list_keys", user="kowner")["items"]] == [key["id"]]

    # A disabled user's keys vanish from what sshd is given, and come back.
    am.users("disable_user", actor="system", user="kowner")
    assert am.users("find_key", fingerprint=fingerprint) is None
    assert fingerprint not in {k["fingerprint"] for k in am.users("all_keys")["items"]}
    am.users("enable_user", actor="system", user="kowner")
    assert am.users("find_key", fingerprint=fingerprint) is not None

    removed = am.users("remove_key", actor="system", key=fingerprint)
    assert removed["id"] == key["id"]
    assert am.users("list_keys", user="kowner")["items"] == []

    group = am.users("create_group", actor="system", name="kteam", description="Team K")
    assert group["members"] == []
    assert am.users("add_member", actor="system", group="kteam", user="kowner")["members"] == [
        "kowner"
    ]
    assert am.users("groups_of", user="kowner") == ["kteam"]
    assert "kteam" in [g["name"] for g in am.users("list_groups")["items"]]
    assert am.users("remove_member", actor="system", group="kteam", user="kowner")["members"] == []
    am.users("delete_group", actor="system", group="kteam")
    assert am.error("am_user_db", "get_group", {"group": "kteam"}).kind == "not_found"


def test_users_act_for_themselves_only(am: Am) -> None:
    me = add_user(am, "selfie", password="my-password-1")
    other = add_user(am, "otherone")
    mine = am.users("add_key", actor=me["id"], user="selfie", key=random_ed25519_line())
    theirs = am.users("add_key", actor="system", user="otherone", key=random_ed25519_line())
    assert am.users("list_keys", actor=me["id"], user=me["id"])["items"][0]["id"] == mine["id"]
    before = snapshot(am)
    for method, args in [
        ("add_key", {"user": "otherone", "key": random_ed25519_line()}),
        ("list_keys", {"user": "otherone"}),
        ("add_user", {"login": "sneaky"}),
        ("disable_user", {"user": "otherone"}),
        ("set_admin", {"user": "selfie", "is_admin": True}),
        ("set_password", {"user": "otherone", "password": "taken-over-1"}),
        ("create_group", {"name": "myteam"}),
        ("all_keys", {}),
        ("find_key", {"fingerprint": theirs["fingerprint"]}),
        ("verify_password", {"login": "otherone", "password": "x"}),
    ]:
        err = am.error("am_user_db", method, {**args, "actor": me["id"]})
        assert err.kind == "forbidden", (method, err)
    # Someone else's key is "not found", which tells nothing about it.
    err = am.error("am_user_db", "remove_key", {"actor": me["id"], "key": theirs["id"]})
    assert err.kind == "not_found"
    assert (
        am.error("am_user_db", "get_key", {"actor": me["id"], "key": theirs["id"]}).kind
        == "not_found"
    )
    assert snapshot(am) == before
    # Others' emails are hidden from users; their own is not.
    assert am.users("get_user", actor=me["id"], user=other["id"])["email"] == ""
    am.users("set_password", actor=me["id"], user="selfie", password="my-new-password")
    am.users("remove_key", actor=me["id"], key=mine["id"])
    # A disabled or unknown actor may do nothing at all.
    am.users("disable_user", actor="system", user="selfie")
    assert (
        am.error("am_user_db", "list_keys", {"actor": me["id"], "user": me["id"]}).kind
        == "forbidden"
    )
    assert (
        am.error("am_user_db", "get_user", {"actor": "user-99999", "user": "otherone"}).kind
        == "forbidden"
    )
    assert (
        am.error("am_user_db", "get_user", {"actor": "root", "user": "otherone"}).kind
        == "forbidden"
    )


BAD_USER_CALLS = [
    ("add_user", {"actor": "system"}, "bad_request", "'login' is required"),
    ("add_user", {"login": "nobody1"}, "bad_request", "'actor' is required"),
    ("add_user", {"actor": "system", "login": 42}, "bad_request", "'login' must be a string"),
    (
        "add_user",
        {"actor": "system", "login": "ok1", "is_admin": "yes"},
        "bad_request",
        "'is_admin' must be true or false",
    ),
    (
        "add_user",
        {"actor": "system", "login": "ok2", "shoe_size": 44},
        "bad_request",
        "unknown field 'shoe_size'",
    ),
    ("add_user", ["system", "ok3"], "bad_request", "must be a map"),
    ("add_user", {"actor": "system", "login": "../etc"}, "bad_request", "login"),
    ("add_user", {"actor": "system", "login": "-dash"}, "bad_request", "login"),
    ("add_user", {"actor": "system", "login": "x" * 65}, "bad_request", "login"),
    ("add_user", {"actor": "system", "login": "user-12"}, "bad_request", "login"),
    ("add_user", {"actor": "system", "login": "admin"}, "bad_request", "reserved"),
    (
        "add_user",
        {"actor": "system", "login": "ok4", "email": "not-an-email"},
        "bad_request",
        "email",
    ),
    (
        "add_user",
        {"actor": "system", "login": "ok5", "password": "short"},
        "bad_request",
        "password",
    ),
    ("add_user", {"actor": "system", "login": "taken"}, "conflict", "already taken"),
    ("add_user", {"actor": "user-99999", "login": "ok6"}, "forbidden", "no account"),
    ("add_user", {"actor": "nobody", "login": "ok7"}, "forbidden", "neither system"),
    ("get_user", {"user": "ghost"}, "not_found", "ghost"),
    ("get_user", {"user": None}, "bad_request", "'user' must be a string"),
    ("disable_user", {"actor": "system", "user": "user-424242"}, "not_found", "user-424242"),
    (
        "set_admin",
        {"actor": "system", "user": "taken", "is_admin": 1},
        "bad_request",
        "'is_admin' must be true or false",
    ),
    ("add_key", {"actor": "system", "user": "taken", "key": "garbage"}, "bad_request", "key"),
    (
        "add_key",
        {"actor": "system", "user": "taken", "key": "ssh-ed25519 AAAA"},
        "bad_request",
        "key",
    ),
    (
        "add_key",
        {"actor": "system", "user": "taken", "key": b"ssh-ed25519 AAAA"},
        "bad_request",
        "'key' must be a string",
    ),
    (
        "add_key",
        {"actor": "system", "user": "ghost", "key": random_ed25519_line()},
        "not_found",
        "ghost",
    ),
    ("add_key", {"actor": "system", "user": "taken"}, "bad_request", "'key' is required"),
    ("remove_key", {"actor": "system", "key": "key-999999"}, "not_found", "key-999999"),
    ("remove_key", {"actor": "system", "key": "rubbish"}, "bad_request", "fingerprint"),
    ("create_group", {"actor": "system", "name": "taken"}, "conflict", "already taken"),
    ("create_group", {"actor": "system", "name": "bad/name"}, "bad_request", "group name"),
    (
        "add_member",
        {"actor": "system", "group": "nogroup", "user": "taken"},
        "not_found",
        "nogroup",
    ),
    ("subscribe", {"service": 5}, "bad_request", "'service' must be a string"),
    ("no_such_method", {}, "no_such_method", "no_such_method"),
]


@pytest.mark.parametrize(
    "method,args,kind,words",
    BAD_USER_CALLS,
    ids=[f"{m}-{i}" for i, (m, *_) in enumerate(BAD_USER_CALLS)],
)
def test_bad_input_is_refused_and_changes_nothing(
    am: Am, taken: dict[str, Any], method: str, args: Any, kind: str, words: str
) -> None:
    before = snapshot(am)
    err = am.error("am_user_db", method, args)
    assert err.kind == kind, err
    assert words in err.message, err.message
    assert "Traceback" not in err.message
    assert snapshot(am) == before


def test_weak_and_duplicate_keys(am: Am, real_keys: RealKeys) -> None:
    add_user(am, "keyholder")
    add_user(am, "keythief")
    before = snapshot(am)
    weak = real_keys.public("weak_rsa", "rsa", 1024)
    err = am.error("am_user_db", "add_key", {"actor": "system", "user": "keyholder", "key": weak})
    assert err.kind == "bad_request" and "2048" in err.message
    assert snapshot(am) == before
    line = real_keys.public("dup_ed", "ed25519")
    am.users("add_key", actor="system", user="keyholder", key=line)
    before = snapshot(am)
    # Admins are told whose key it is; the user is not.
    err = am.error("am_user_db", "add_key", {"actor": "system", "user": "keythief", "key": line})
    assert err.kind == "conflict" and "keyholder" in err.message
    thief = am.users("get_user", user="keythief")["id"]
    err = am.error("am_user_db", "add_key", {"actor": thief, "user": thief, "key": line})
    assert err.kind == "conflict" and "keyholder" not in err.message
    assert snapshot(am) == before


def test_api_tokens(am: Am) -> None:
    me = add_user(am, "tokenuser")
    other = add_user(am, "tokenother")
    made = am.users("create_token", actor=me["id"], user="tokenuser", title="ci")
    assert set(made) == {"id", "user", "login", "title", "created_at", "last_used_at", "token"}
    assert made["user"] == me["id"] and made["token"].startswith(me["id"] + ".")
    assert made["last_used_at"] is None
    # Only the cluster's services verify; the answer is the user, or None.
    user = am.users("verify_token", token=made["token"])
    assert user["id"] == me["id"] and "password_hash" not in user
    assert am.users("verify_token", token=made["token"] + "x") is None
    assert am.users("verify_token", token="user-1.nothing-like-a-token") is None
    assert (
        am.error("am_user_db", "verify_token", {"actor": me["id"], "token": made["token"]}).kind
        == "forbidden"
    )
    listed = am.users("list_tokens", actor=me["id"], user=me["id"])
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    assert listed[0]["last_used_at"] is not None

    # Users see and revoke their own tokens only; admins anyone's.
    before = snapshot(am)
    for method, args in [
        ("create_token", {"user": "tokenother", "title": "x"}),
        ("list_tokens", {"user": "tokenother"}),
        ("revoke_token", {"token": made["id"], "user": "tokenother"}),
    ]:
        err = am.error("am_user_db", method, {**args, "actor": me["id"]})
        assert err.kind == "forbidden", (method, err)
    assert snapshot(am) == before
    theirs = am.users("create_token", actor="system", user=other["id"], title="theirs")
    before = snapshot(am)
    err = am.error("am_user_db", "revoke_token", {"actor": me["id"], "token": theirs["id"]})
    assert err.kind == "not_found"
    for args, kind in [
        ({"user": me["id"], "title": ""}, "bad_request"),
        ({"user": me["id"], "title": "x" * 101}, "bad_request"),
        ({"user": me["id"]}, "bad_request"),
        ({"user": "ghost", "title": "x"}, "not_found"),
    ]:
        assert am.error("am_user_db", "create_token", {**args, "actor": "system"}).kind == kind
    assert snapshot(am) == before

    # A disabled account's tokens stop working at once.
    am.users("disable_user", actor="system", user=me["id"])
    assert am.users("verify_token", token=made["token"]) is None
    am.users("enable_user", actor="system", user=me["id"])
    revoked = am.users("revoke_token", actor=me["id"], token=made["id"], user="tokenuser")
    assert revoked["id"] == made["id"]
    assert am.users("verify_token", token=made["token"]) is None
    assert am.users("list_tokens", actor="system", user=me["id"]) == []
    actions = [
        e["action"]
        for e in am.repos("query_audit", query={"action": "token", "limit": 10})["items"]
    ]
    assert actions[:3] == ["token.revoke", "token.create", "token.create"]


def test_update_key_title(am: Am) -> None:
    me = add_user(am, "retitler")
    add_user(am, "retitled")
    mine = am.users(
        "add_key", actor=me["id"], user=me["id"], key=random_ed25519_line(), title="old"
    )
    theirs = am.users("add_key", actor="system", user="retitled", key=random_ed25519_line())
    changed = am.users("update_key", actor=me["id"], key=mine["id"], title="laptop")
    assert changed["id"] == mine["id"] and changed["fingerprint"] == mine["fingerprint"]
    assert changed["title"] == "laptop"
    assert (
        am.users("update_key", actor=me["id"], key=mine["fingerprint"], title="by fp")["id"]
        == mine["id"]
    )
    before = snapshot(am)
    err = am.error(
        "am_user_db", "update_key", {"actor": me["id"], "key": theirs["id"], "title": "mine"}
    )
    assert err.kind == "not_found"
    for args in (
        {"key": mine["id"], "title": ""},
        {"key": mine["id"]},
        {"key": "rubbish", "title": "x"},
    ):
        assert (
            am.error("am_user_db", "update_key", {**args, "actor": me["id"]}).kind == "bad_request"
        )
    assert (
        am.error("am_user_db", "update_key", {"key": mine["id"], "title": "x"}).kind
        == "bad_request"
    )  # actor is required
    assert snapshot(am) == before
    assert (
        am.users("update_key", actor="system", key=theirs["id"], title="admin did it")["title"]
        == "admin did it"
    )


def test_as_token_checks_the_token_and_asks_as_its_user_in_one_call(am: Am) -> None:
    """aw's API read for a token it has seen: am checks the token, then runs the
    call only if its actor is the token's user, with that user's rights."""
    me = add_user(am, "astokuser")
    other = add_user(am, "astokother")
    am.repos("create_repo", actor=other["id"], path="astokother/secret")
    made = am.users("create_token", actor=me["id"], user=me["id"], title="t")

    def as_token(service: str, method: str, args: dict[str, Any]) -> Any:
        asked = {"token": made["token"], "service": service, "method": method, "args": args}
        return am.call("am_user_db", "as_token", asked)

    mine = {"actor": me["id"], "limit": 5}
    got = as_token("am_repo_db", "list_repos", mine)
    assert got["ran"] is True and got["user"] == am.users("verify_token", token=made["token"])
    assert got["answer"] == am.repos("list_repos", **mine) and got.get("error") is None
    # am's refusals of the inner call come back as they are, the user beside them.
    refused = as_token("am_repo_db", "get_repo", {"actor": me["id"], "repo": "astokother/secret"})
    assert refused["ran"] is True and refused["user"]["id"] == me["id"]
    kind = am.error("am_repo_db", "get_repo", {"actor": me["id"], "repo": "astokother/secret"})
    assert refused["error"] == [kind.kind, kind.message] and refused.get("answer") is None
    bad = as_token("am_repo_db", "list_repos", {"actor": me["id"], "limit": 0})
    assert bad["ran"] is True and bad["error"][0] == "bad_request"
    # Another actor (or none: the system) is not run; the user says who the token is.
    for args in ({"actor": other["id"]}, {"actor": "system"}, {}):
        got = as_token("am_repo_db", "list_repos", args)
        assert got["ran"] is False and got["user"]["id"] == me["id"] and "answer" not in got
    # Only the cluster's services ask; no method that am lacks, and not itself.
    err = am.error(
        "am_user_db",
        "as_token",
        {
            "actor": me["id"],
            "token": made["token"],
            "service": "am_repo_db",
            "method": "list_repos",
            "args": mine,
        },
    )
    assert err.kind == "forbidden"
    for service, method in (
        ("am_repo_db", "nothing"),
        ("nowhere", "x"),
        ("am_user_db", "as_token"),
    ):
        err = am.error(
            "am_user_db",
            "as_token",
            {"token": made["token"], "service": service, "method": method, "args": mine},
        )
        assert err.kind == "bad_request", (service, method)
    # A disabled account, a revoked token: no user, nothing run, at once.
    am.users("disable_user", actor="system", user=me["id"])
    got = as_token("am_repo_db", "list_repos", mine)
    assert got["user"] is None and got["ran"] is False and "answer" not in got
    am.users("enable_user", actor="system", user=me["id"])
    assert as_token("am_repo_db", "list_repos", mine)["ran"] is True
    am.users("revoke_token", actor=me["id"], token=made["id"])
    got = as_token("am_repo_db", "list_repos", mine)
    assert got["user"] is None and got["ran"] is False
