"""Node names: name@host, short or long, never mixed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from applikant.node import names
from applikant.node.names import BadNodeName


@pytest.mark.parametrize(
    ("node", "name", "host", "long"),
    [
        ("am@localhost", "am", "localhost", False),
        ("am@git", "am", "git", False),
        ("as_1234@git", "as_1234", "git", False),
        ("ah_99@build-01", "ah_99", "build-01", False),
        ("web-2@Host_X", "web-2", "Host_X", False),
        ("9@9", "9", "9", False),
        ("am@git.example.org", "am", "git.example.org", True),
        ("am@10.0.0.2", "am", "10.0.0.2", True),
        ("am@::1", "am", "::1", True),
        ("am@[::1]", "am", "[::1]", True),
        ("am@fe80::1", "am", "fe80::1", True),
        ("n" * 63 + "@h", "n" * 63, "h", False),
        ("n@" + "h" * 253, "n", "h" * 253, False),
    ],
)
def test_good_names(node: str, name: str, host: str, long: bool) -> None:
    assert names.split(node) == (name, host)
    assert names.name_of(node) == name
    assert names.host_of(node) == host
    assert names.is_long(node) is long
    assert names.kind(node) == ("long" if long else "short")


@pytest.mark.parametrize(
    "node",
    [
        "",
        "am",
        "am@",
        "@host",
        "@",
        "a@b@c",
        "a b@host",
        "am@ho st",
        "am@host/x",
        "-am@host",
        ".am@host",
        "a.m@host",
        "am@-host",
        "am@.host",
        "am@h\u00f6st",
        "\u00e4m@host",
        "am@host\n",
        "am\x00@host",
        "n" * 64 + "@h",
        "n@" + "h" * 254,
    ],
)
def test_bad_names(node: str) -> None:
    with pytest.raises(BadNodeName, match="not a node name"):
        names.split(node)
    with pytest.raises(BadNodeName):
        names.is_long(node)
    with pytest.raises(BadNodeName):
        names.check_same_kind("am@host", node)
    assert issubclass(BadNodeName, ValueError)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("am@git", "af@web"),
        ("am@git.example.org", "af@10.0.0.1"),
        ("am@::1", "af@h.example"),
        ("x@h", "x@h"),
    ],
)
def test_same_kind(a: str, b: str) -> None:
    assert names.check_same_kind(a, b) is None
    assert names.check_same_kind(b, a) is None


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("am@git", "af@git.example.org"),
        ("am@localhost", "af@127.0.0.1"),
        ("am@h", "af@::1"),
    ],
)
def test_mixed_kinds_refused_in_words(short: str, long: str) -> None:
    for a, b in ((short, long), (long, short)):
        reason = names.check_same_kind(a, b)
        assert reason is not None
        assert a in reason and b in reason
        assert "short" in reason and "long" in reason


_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(name=_part, labels=st.lists(_part, min_size=1, max_size=4))
def test_split_round_trips(name: str, labels: list[str]) -> None:
    host = ".".join(labels)
    node = f"{name}@{host}"
    assert names.split(node) == (name, host)
    assert names.is_long(node) is (len(labels) > 1)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_split_raises_only_bad_node_name(node: str) -> None:
    try:
        name, host = names.split(node)
    except BadNodeName:
        return
    assert f"{name}@{host}" == node
    assert name and host and "@" not in name + host
