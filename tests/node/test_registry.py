"""The global registry's state: claims, deterministic conflicts, node down."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from applikant.node.registry import Claim, GlobalRegistry

ME = "b@host"


def test_empty() -> None:
    reg = GlobalRegistry(ME)
    assert reg.owner("repos") is None
    assert reg.names() == {} and reg.own() == []
    assert reg.node_down("x@host") == []
    reg.withdraw("repos", ME)  # withdrawing nothing is harmless
    assert reg.names() == {}


def test_own_claim() -> None:
    reg = GlobalRegistry(ME)
    assert reg.claim("repos", ME, 1.0) == []
    assert reg.owner("repos") == ME
    assert reg.own() == [("repos", 1.0)]
    assert reg.names() == {"repos": ME}


def test_peer_claims_are_owned_by_the_peer() -> None:
    reg = GlobalRegistry(ME)
    assert reg.claim("users", "a@host", 5.0) == []
    assert reg.owner("users") == "a@host"
    assert reg.own() == []
    assert reg.names() == {"users": "a@host"}


def test_conflict_we_lose_we_withdraw() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("repos", ME, 2.0)
    assert reg.claim("repos", "a@host", 1.0) == ["repos"]  # an earlier stamp wins
    assert reg.owner("repos") == "a@host"
    assert reg.own() == []  # our claim is gone, not just outranked
    # When the winner goes down, the loser does not come back by itself.
    assert reg.node_down("a@host") == ["repos"]
    assert reg.owner("repos") is None


def test_conflict_we_win_we_keep() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("repos", ME, 1.0)
    assert reg.claim("repos", "c@host", 2.0) == []
    assert reg.owner("repos") == ME
    assert reg.own() == [("repos", 1.0)]


def test_equal_stamps_broken_by_node_name() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("repos", ME, 1.0)
    assert reg.claim("repos", "c@host", 1.0) == []  # "b@host" < "c@host"
    assert reg.owner("repos") == ME
    assert reg.claim("repos", "a@host", 1.0) == ["repos"]  # "a@host" < "b@host"
    assert reg.owner("repos") == "a@host"


def test_beats_says_whether_a_stamp_would_take_the_name() -> None:
    reg = GlobalRegistry(ME)
    assert reg.beats("repos", 9.0, ME)  # nobody holds it
    reg.claim("repos", "a@host", -1.0)
    assert not reg.beats("repos", -1.0, "c@host") and not reg.beats("repos", 0.0, ME)
    assert not reg.beats("repos", -1.0, ME)  # "a@host" < ME on equal stamps
    assert reg.beats("repos", -1.5, ME) and reg.beats("repos", -2.0, "c@host")


def test_claiming_after_losing_loses_again() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("repos", "a@host", 1.0)
    assert reg.claim("repos", ME, 5.0) == ["repos"]
    assert reg.owner("repos") == "a@host" and reg.own() == []


def test_node_down_next_claimant_becomes_owner() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("repos", "a@host", 1.0)
    reg.claim("repos", "c@host", 2.0)
    reg.claim("repos", "d@host", 3.0)
    reg.claim("users", "a@host", 1.0)
    reg.claim("other", "c@host", 1.0)
    assert reg.owner("repos") == "a@host"
    assert sorted(reg.node_down("a@host")) == ["repos", "users"]
    assert reg.owner("repos") == "c@host"
    assert reg.owner("users") is None
    assert reg.names() == {"repos": "c@host", "other": "c@host"}
    assert sorted(reg.node_down("c@host")) == ["other", "repos"]
    assert reg.names() == {"repos": "d@host"}
    assert reg.node_down("c@host") == []


def test_withdraw() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("repos", "a@host", 1.0)
    reg.claim("repos", "c@host", 2.0)
    reg.withdraw("repos", "a@host")
    assert reg.owner("repos") == "c@host"
    reg.withdraw("repos", "c@host")
    assert reg.owner("repos") is None and reg.names() == {}


def test_replace_node_drops_earlier_claims() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("old", "a@host", 1.0)
    reg.claim("kept", "a@host", 1.0)
    reg.claim("mine", ME, 3.0)
    lost = reg.replace_node("a@host", [("kept", 4.0), ("new", 2.0), ("mine", 2.5)])
    assert lost == ["mine"]  # a@host's earlier stamp beats ours
    assert reg.owner("old") is None
    assert reg.names() == {"kept": "a@host", "new": "a@host", "mine": "a@host"}
    assert reg.own() == []
    # the stamp was replaced, not kept: a claim at 3.0 now beats a@host's 4.0
    assert reg.claim("kept", "c@host", 3.0) == []
    assert reg.owner("kept") == "c@host"


def test_replace_node_with_nothing_is_node_down() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("x", "a@host", 1.0)
    reg.claim("x", "c@host", 2.0)
    assert reg.replace_node("a@host", []) == []
    assert reg.owner("x") == "c@host"


def test_replace_node_we_win() -> None:
    reg = GlobalRegistry(ME)
    reg.claim("mine", ME, 1.0)
    assert reg.replace_node("a@host", [("mine", 2.0)]) == []
    assert reg.owner("mine") == ME


def test_claim_key() -> None:
    assert Claim("a@h", 1.0).key() == (1.0, "a@h")
    assert min([Claim("b@h", 1.0), Claim("a@h", 1.0), Claim("0@h", 2.0)], key=Claim.key) == Claim(
        "a@h", 1.0
    )


# ---- the winner does not depend on the order claims arrive ----------------------

NODES = ["a@host", "b@host", "c@host", "d@host", "e@host"]
claims_strategy = st.lists(
    st.tuples(st.sampled_from(NODES), st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0])),
    min_size=1,
    max_size=5,
    unique_by=lambda c: c[0],
)


@settings(max_examples=200, deadline=None)
@given(claims=claims_strategy, me=st.sampled_from(NODES), data=st.data())
def test_winner_is_deterministic_whatever_the_order(
    claims: list[tuple[str, float]], me: str, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(claims))
    winner = min(claims, key=lambda c: (c[1], c[0]))[0]
    reg = GlobalRegistry(me)
    lost: list[str] = []
    for node, stamp in order:
        lost += reg.claim("repos", node, stamp)
    assert reg.owner("repos") == winner
    assert reg.names() == {"repos": winner}
    claimed = me in [n for n, _ in claims]
    # The loser is told exactly once, and only if it claimed and lost.
    assert lost == (["repos"] if claimed and winner != me else [])
    assert reg.own() == ([("repos", dict(claims)[me])] if winner == me else [])


@settings(max_examples=200, deadline=None)
@given(claims=claims_strategy, data=st.data())
def test_every_node_agrees_on_the_winner(
    claims: list[tuple[str, float]], data: st.DataObject
) -> None:
    """Each node hears the claims in its own order; all end with the same owner,
    and only the winner still holds its claim."""
    owners = set()
    holders = []
    for me in NODES:
        reg = GlobalRegistry(me)
        for node, stamp in data.draw(st.permutations(claims)):
            reg.claim("repos", node, stamp)
        owners.add(reg.owner("repos"))
        if reg.own():
            holders.append(me)
    assert len(owners) == 1
    [winner] = owners
    assert holders == [winner]


@settings(max_examples=200, deadline=None)
@given(claims=claims_strategy, data=st.data())
def test_node_down_hands_the_name_to_the_next_claimant(
    claims: list[tuple[str, float]], data: st.DataObject
) -> None:
    observer = "z@host"  # claims nothing, so nothing is withdrawn
    reg = GlobalRegistry(observer)
    for node, stamp in data.draw(st.permutations(claims)):
        reg.claim("repos", node, stamp)
    remaining = sorted(claims, key=lambda c: (c[1], c[0]))
    while remaining:
        assert reg.owner("repos") == remaining[0][0]
        down = data.draw(st.sampled_from(remaining))
        assert reg.node_down(down[0]) == ["repos"]
        remaining.remove(down)
    assert reg.owner("repos") is None and reg.names() == {}
