"""Node names: `name@host`, short or long, as in Erlang.

A short name's host has no dots (`am@git`); a long name's host is a fully
qualified name or an IP address (`am@git.example.org`, `am@10.0.0.2`). A cluster
uses one kind only: mixing them is refused at the handshake.
"""

from __future__ import annotations

# No `re` here: this module is on the start-up path of `as` and `ah`.
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_PART_CHARS = _ALNUM | frozenset("-")
_HOST_CHARS = _ALNUM | frozenset("-.:[]")


def _ok(s: str, chars: frozenset[str], max_len: int) -> bool:
    return 0 < len(s) <= max_len and s[0] not in "-." and all(c in chars for c in s)


class BadNodeName(ValueError):
    """The string is not a valid `name@host` node name."""


def split(node: str) -> tuple[str, str]:
    """Return (name, host) of a node name, or raise BadNodeName."""
    name, sep, host = node.partition("@")
    if not sep or not _ok(name, _PART_CHARS, 63) or not _ok(host, _HOST_CHARS, 253):
        raise BadNodeName(f"{node!r} is not a node name: expected name@host, e.g. am@localhost")
    return name, host


def is_long(node: str) -> bool:
    """True for long names (dots or an IP address in the host part)."""
    host = split(node)[1]
    return "." in host or ":" in host


def kind(node: str) -> str:
    """'long' or 'short'."""
    return "long" if is_long(node) else "short"


def check_same_kind(ours: str, theirs: str) -> str | None:
    """None if both names are of one kind; else the refusal in words."""
    if is_long(ours) == is_long(theirs):
        return None
    return (
        f"{ours} uses {kind(ours)} names and {theirs} uses {kind(theirs)} names; "
        "short and long names are never mixed in one cluster"
    )


def host_of(node: str) -> str:
    return split(node)[1]


def name_of(node: str) -> str:
    return split(node)[0]
