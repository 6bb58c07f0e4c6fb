"""Name validation: the safe charset, and a clear refusal for each way out of it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from applikant.manager.errors import BadRequest
from applikant.manager.names import (
    check_branch_name,
    check_branch_pattern,
    check_email,
    check_name,
    check_object_id,
    check_owner_name,
    check_refname,
    check_repo_name,
    is_zero_id,
    parse_repo_path,
)


@pytest.mark.parametrize("name", ["a", "alice", "A.b_c-d", "x" * 64, "9lives", "a.b"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "empty"),
        ("x" * 65, "longer than 64"),
        ("a..b", "'..'"),
        (".hidden", "start with"),
        ("-rf", "start with"),
        ("_x", "letters, digits"),
        ("a b", "letters, digits"),
        ("a/b", "'/'"),
        ("a\x00b", "NUL"),
        ("caf\u00e9", "non-ASCII"),
        ("x.lock", ".lock"),
        ("a:b", "letters, digits"),
    ],
)
def test_bad_names(name: str, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment) as info:
        check_name(name)
    assert info.value.kind == "bad_request"


def test_non_string_name() -> None:
    with pytest.raises(BadRequest, match="string"):
        check_name(42)


@pytest.mark.parametrize(
    "name", ["user-42", "Group-1", "key-3", "repo-9", "admin", "API", "system"]
)
def test_owner_names_reserved_or_id_like(name: str) -> None:
    with pytest.raises(BadRequest):
        check_owner_name(name)


def test_owner_name_ok() -> None:
    assert check_owner_name("user-x") == "user-x"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("alice/project", ("alice", "project")),
        ("alice/project.git", ("alice", "project")),
        ("/alice/project.git", ("alice", "project")),
        ("Team/App.GIT", ("Team", "App")),
    ],
)
def test_parse_repo_path(path: str, expected: tuple[str, str]) -> None:
    assert parse_repo_path(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "project",
        "a/b/c",
        "../etc/passwd",
        "alice/../bob",
        "alice/..",
        "//a/b",
        "a/",
        "/a",
        "alice/.git",
        "alice/x.git.git",
        "a/b\x00",
        "alice/-x",
        "alice/.x",
        "alice/caf\u00e9",
        "",
        "a" * 65 + "/b",
        "a/" + "b" * 65,
        "~alice/x",
    ],
)
def test_parse_repo_path_refuses(path: str) -> None:
    with pytest.raises(BadRequest):
        parse_repo_path(path)


def test_repo_name_strips_one_git() -> None:
    assert check_repo_name("x.git") == "x"
    with pytest.raises(BadRequest, match=r"must not end in '\.git'"):
        check_repo_name("x.git.git")


@given(st.text(max_size=80))
def test_parse_repo_path_is_safe_or_refuses(text: str) -> None:
    try:
        owner, name = parse_repo_path(text)
    except BadRequest:
        return
    for part in (owner, name):
        assert part and part.isascii() and ".." not in part and part[0] not in ".-"
        assert "/" not in part and "\x00" not in part


@pytest.mark.parametrize("name", ["main", "release/1.0", "feature/x-y"])
def test_branch_names(name: str) -> None:
    assert check_branch_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "a..b", "a b", "-x", "x/", "x.lock", "a//b", "refs/heads/x", "a~1", "a:b", "@", ".x"],
)
def test_bad_branch_names(name: str) -> None:
    with pytest.raises(BadRequest):
        check_branch_name(name)


def test_refname_and_pattern() -> None:
    assert check_refname("refs/heads/main") == "refs/heads/main"
    with pytest.raises(BadRequest):
        check_refname("main")
    assert check_branch_pattern("refs/heads/release/*") == "release/*"
    assert check_branch_pattern("v[0-9]*") == "v[0-9]*"
    with pytest.raises(BadRequest):
        check_branch_pattern("a b")


def test_object_ids() -> None:
    assert check_object_id("a" * 40, "old") == "a" * 40
    assert check_object_id("b" * 64, "old") == "b" * 64
    for bad in ["A" * 40, "a" * 39, "g" * 40, "a" * 50]:
        with pytest.raises(BadRequest):
            check_object_id(bad, "old")
    assert is_zero_id("0" * 40) and not is_zero_id("0" * 39 + "1")


def test_email() -> None:
    assert check_email("") == ""
    assert check_email("a@b.c") == "a@b.c"
    with pytest.raises(BadRequest):
        check_email("not an email")
