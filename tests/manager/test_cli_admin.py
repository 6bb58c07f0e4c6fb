"""The admin command line against a real am: tables, --json that parses, plain
one-line errors with exit status 1, and acknowledged changes that survive
SIGKILL of am."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path
from typing import Any

import pytest

from harness.am import Am
from tests.manager.helpers import RealKeys

# Each test runs a few dozen CLI processes (a Python start each) one after the other.
pytestmark = pytest.mark.timeout(300)


def ok(am: Am, *args: str, input: str | None = None) -> str:
    done = am.cli(*args, input=input)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def js(am: Am, *args: str, input: str | None = None) -> Any:
    return json.loads(ok(am, *args, "--json", input=input))


def refused(am: Am, *args: str, input: str | None = None) -> str:
    done = am.cli(*args, input=input)
    assert done.returncode == 1, (args, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("applikant: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_users_keys_groups(am: Am, real_keys: RealKeys, tmp_path: Path) -> None:
    out = ok(am, "user", "add", "cli-alice", "--name", "Alice", "--email", "alice@example.org")
    assert "cli-alice" in out and "password: " in out
    password = out.split("password: ")[1].split()[0]
    assert am.users("verify_password", login="cli-alice", password=password)["login"] == "cli-alice"
    bob = js(am, "user", "add", "cli-bob", "--password-stdin", input="bobs-password-1\n")
    assert bob["login"] == "cli-bob" and bob["has_password"]
    assert am.users("verify_password", login="cli-bob", password="bobs-password-1")
    assert js(am, "user", "add", "cli-keysonly", "--no-password")["has_password"] is False

    listed = js(am, "user", "list")
    assert {"cli-alice", "cli-bob"} <= {u["login"] for u in listed}
    assert "LOGIN" in ok(am, "user", "list")

    pub = real_keys.make("cli_ed", "ed25519").with_suffix(".pub")
    key = js(am, "key", "add", "cli-alice", str(pub), "--title", "laptop")
    assert key["title"] == "laptop" and key["login"] == "cli-alice"
    stdin_key = js(am, "key", "add", "cli-bob", "-", input=real_keys.public("cli_rsa", "rsa", 2048))
    assert stdin_key["key_type"] == "ssh-rsa" and stdin_key["bits"] == 2048
    assert [k["id"] for k in js(am, "key", "list", "cli-alice")] == [key["id"]]
    shown = js(am, "user", "show", "cli-alice")
    assert shown["keys"][0]["fingerprint"] == key["fingerprint"] and shown["groups"] == []
    assert key["fingerprint"] in ok(am, "user", "show", "cli-alice")

    assert js(am, "group", "create", "cli-team", "-d", "The team")["name"] == "cli-team"
    assert js(am, "group", "add-member", "cli-team", "cli-bob")["members"] == ["cli-bob"]
    assert js(am, "group", "show", "cli-team")["members"] == ["cli-bob"]
    assert "cli-team" in ok(am, "group", "list")
    assert js(am, "group", "rm-member", "cli-team", "cli-bob")["members"] == []
    ok(am, "group", "rm", "cli-team", "--yes")

    assert js(am, "user", "disable", "cli-bob")["disabled"] is True
    assert js(am, "user", "enable", "cli-bob")["disabled"] is False
    assert js(am, "user", "admin", "cli-bob")["is_admin"] is True
    assert js(am, "user", "admin", "cli-bob", "--revoke")["is_admin"] is False
    new = js(am, "user", "passwd", "cli-bob")["password"]
    assert am.users("verify_password", login="cli-bob", password=new)
    ok(am, "user", "passwd", "cli-bob", "--password-stdin", input="another-one-22\n")
    assert am.users("verify_password", login="cli-bob", password="another-one-22")
    removed = js(am, "key", "rm", key["fingerprint"])
    assert removed["id"] == key["id"]

    # Bad input: one plain line, exit 1, nothing changed.
    before = am.repos("counts")
    assert "already taken" in refused(am, "user", "add", "cli-alice")
    assert "login" in refused(am, "user", "add", "bad/login")
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("this is not a key\n")
    assert "key" in refused(am, "key", "add", "cli-alice", str(garbage))
    assert "cannot read" in refused(am, "key", "add", "cli-alice", str(tmp_path / "missing.pub"))
    assert "empty" in refused(am, "key", "add", "cli-alice", "-", input="")
    weak = real_keys.make("cli_weak", "rsa", 1024).with_suffix(".pub")
    assert "2048" in refused(am, "key", "add", "cli-alice", str(weak))
    assert "no user" in refused(am, "user", "show", "cli-nobody")
    assert "no password" in refused(am, "user", "add", "cli-x", "--password-stdin", input="\n")
    assert am.repos("counts") == before


def test_repos_perms_branches_audit(am: Am) -> None:
    ok(am, "user", "add", "cli-owner", "--no-password")
    ok(am, "user", "add", "cli-dev", "--no-password")
    repo = js(
        am, "repo", "create", "cli-owner/app.git", "-d", "An app", "--default-branch", "trunk"
    )
    assert repo["full_name"] == "cli-owner/app" and repo["default_branch"] == "trunk"
    assert "cli-owner/app" in ok(am, "repo", "list")
    assert [r["full_name"] for r in js(am, "repo", "list", "--owner", "cli-owner")] == [
        "cli-owner/app"
    ]

    grant = js(am, "perm", "grant", "cli-owner/app", "cli-dev", "write")
    assert grant["level"] == "write"
    assert js(am, "perm", "list", "cli-owner/app") == [grant]
    rule = js(am, "branch", "protect", "cli-owner/app", "release/*", "--admins-only")
    assert rule["admins_only"] is True
    assert [r["pattern"] for r in js(am, "branch", "list", "cli-owner/app")] == ["release/*"]
    shown = js(am, "repo", "show", "cli-owner/app")
    assert shown["grants"] == [grant] and shown["protected"][0]["pattern"] == "release/*"
    assert "cli-dev=write" in ok(am, "repo", "show", "cli-owner/app")

    updated = js(am, "repo", "update", "cli-owner/app", "--public", "-d", "Public now")
    assert updated["is_public"] and updated["description"] == "Public now"
    assert (
        js(am, "repo", "rename", "cli-owner/app", "cli-owner/app2")["full_name"] == "cli-owner/app2"
    )
    ok(am, "branch", "unprotect", "cli-owner/app2", "release/*")
    ok(am, "perm", "revoke", "cli-owner/app2", "cli-dev")

    before = am.repos("counts")
    assert "must be 'read', 'write' or 'admin'" in refused(
        am, "perm", "grant", "cli-owner/app2", "cli-dev", "root"
    )
    assert "no repository" in refused(am, "perm", "list", "cli-owner/ghost")
    assert "nothing to change" in refused(am, "repo", "update", "cli-owner/app2")
    assert refused(am, "repo", "create", "cli-owner/.dot")
    assert "already exists" in refused(am, "repo", "create", "cli-owner/app2")
    # rm asks first; "no" keeps the repository.
    done = am.cli("repo", "rm", "cli-owner/app2", input="n\n")
    assert done.returncode != 0
    assert am.repos("get_repo", repo="cli-owner/app2")
    assert am.repos("counts") == before
    assert js(am, "repo", "rm", "cli-owner/app2", "--yes")["full_name"] == "cli-owner/app2"
    done = am.cli("repo", "rm", "cli-owner/app2", "--yes")
    assert done.returncode == 1 and "no repository" in done.stderr

    entries = js(am, "audit", "--repo", "cli-owner/app2", "--limit", "3")
    assert [e["action"] for e in entries] == ["repo.delete", "perm.revoke", "branch.unprotect"]
    # Recorded as the OS user who ran the command, not as `system`.
    me = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
    assert all(e["actor"] == me and e["node"].startswith("cli_") for e in entries)
    assert me in ok(am, "audit", "--repo", "cli-owner/app2", "--limit", "1")
    assert [e["action"] for e in js(am, "audit", "--action", "perm")][:2] == [
        "perm.revoke",
        "perm.grant",
    ]
    assert js(am, "audit", "--since", "2000-01-01", "--until", "2000-01-02") == []
    assert js(am, "audit", "--actor", "user-424242") == []
    assert "perm.grant" in ok(am, "audit", "--action", "perm.grant")
    assert "ISO 8601" in refused(am, "audit", "--since", "last tuesday")
    assert "limit" in refused(am, "audit", "--limit", "0")


def test_acknowledged_changes_survive_sigkill(am: Am) -> None:
    # Kill am hard right after the CLI said yes; a new am on the same file has it all.
    ok(am, "user", "add", "durable", "--no-password")
    ok(am, "repo", "create", "durable/kept")
    ok(am, "user", "add", "durable-dev", "--no-password")
    ok(am, "perm", "grant", "durable/kept", "durable-dev", "read")
    am.kill()
    assert am.proc is not None and am.proc.popen.returncode == -9
    am.start()
    assert am.users("get_user", user="durable")["login"] == "durable"
    assert am.repos("get_repo", repo="durable/kept")["full_name"] == "durable/kept"
    assert am.repos("list_grants", repo="durable/kept")[0]["grantee"] == "durable-dev"
    assert am.repos("query_audit", query={"limit": 1})["items"][0]["action"] == "perm.grant"


def test_tokens(am: Am) -> None:
    user = js(am, "user", "add", "cli-tok", "--no-password")
    out = ok(am, "token", "create", "cli-tok", "--title", "deploy")
    secret = out.strip().splitlines()[-1]
    assert secret.startswith(user["id"] + ".") and "shown only now" in out
    assert am.users("verify_token", token=secret)["login"] == "cli-tok"
    made = js(am, "token", "create", user["id"], "-t", "ci")
    listed = js(am, "token", "list", "cli-tok")
    assert [t["title"] for t in listed] == ["deploy", "ci"] and "token" not in listed[0]
    table = ok(am, "token", "list", "cli-tok")
    assert "deploy" in table and "cli-tok" in table and user["id"] not in table  # by login
    assert made["id"] in ok(am, "token", "rm", "cli-tok", made["id"])
    assert am.users("verify_token", token=made["token"]) is None
    assert "no token" in refused(am, "token", "rm", "cli-tok", made["id"])
    assert "title" in refused(am, "token", "create", "cli-tok", "--title", "")


def test_user_edit_and_rm(am: Am) -> None:
    ok(am, "user", "add", "cli-leaver", "--no-password")
    ok(am, "user", "add", "cli-heir", "--no-password")
    edited = js(am, "user", "edit", "cli-leaver", "--name", "Lee Ver", "--email", "lee@example.org")
    assert (edited["display_name"], edited["email"]) == ("Lee Ver", "lee@example.org")
    assert "nothing to change: give --name or --email" in refused(am, "user", "edit", "cli-leaver")
    assert "email" in refused(am, "user", "edit", "cli-leaver", "--email", "not-an-email")
    ok(am, "repo", "create", "cli-leaver/one")
    ok(am, "repo", "create", "cli-leaver/two")
    ok(am, "repo", "create", "cli-heir/two")
    # Refused while it owns repositories, naming them; nothing changes.
    said = refused(am, "user", "rm", "cli-leaver", "--yes")
    assert (
        "owns 2 repositories (cli-leaver/one, cli-leaver/two)" in said and "--transfer-to" in said
    )
    # A transfer that clashes (cli-heir/two exists) changes nothing either.
    assert "already exists" in refused(
        am, "user", "rm", "cli-leaver", "--transfer-to", "cli-heir", "--yes"
    )
    assert am.repos("get_repo", repo="cli-leaver/one")
    am.repos("delete_repo", repo="cli-heir/two", actor="system")
    done = js(am, "user", "rm", "cli-leaver", "--transfer-to", "cli-heir", "--yes")
    assert done["user"]["login"] == "cli-leaver"
    assert done["transferred"] == ["cli-heir/one", "cli-heir/two"]
    assert am.repos("get_repo", repo="cli-heir/one")["full_name"] == "cli-heir/one"
    assert "no user named 'cli-leaver'" in refused(am, "user", "show", "cli-leaver")
    deleted = js(am, "audit", "--action", "user.delete", "--limit", "1")[0]
    assert deleted["details"]["login"] == "cli-leaver" and deleted["actor"].startswith("cli:")
    # The login can be taken again, by a new account.
    again = js(am, "user", "add", "cli-leaver", "--no-password")
    assert again["id"] != done["user"]["id"]
    assert "deleted cli-leaver" in ok(am, "user", "rm", "cli-leaver", "--yes")
