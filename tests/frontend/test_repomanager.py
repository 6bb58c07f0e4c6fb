"""The table af applies to its repo root before it serves (repomanager.decide);
the whole role, with real daemons on several hosts, is in tests/multihost."""

from __future__ import annotations

import pytest

from applikant.frontend.repomanager import ADOPT, CLAIM, JOIN, REFUSE, decide
from applikant.frontend.repostore import Marker

US, THEM = "a" * 32, "b" * 32
OURS = Marker(US, "1" * 32)
COPY = Marker(US, "2" * 32)
FOREIGN = Marker(THEM, "1" * 32)
HOLDER = ("af@git1", "1" * 32)


@pytest.mark.parametrize(
    ("marker", "kw", "verdict", "says"),
    [
        # another cluster's root is refused whatever else holds
        (FOREIGN, {}, REFUSE, "another cluster"),
        (FOREIGN, {"holder": HOLDER}, REFUSE, "another cluster"),
        # another af manages the store: the same marker joins, anything else is refused
        (OURS, {"holder": HOLDER}, JOIN, ""),
        (COPY, {"holder": HOLDER}, REFUSE, "another copy"),
        (None, {"holder": HOLDER}, REFUSE, "no cluster marker"),
        (None, {"holder": HOLDER, "has_entries": True}, REFUSE, "no cluster marker"),
        # nobody manages it: a marked root is claimed ...
        (OURS, {}, CLAIM, ""),
        # ... an unmarked one marked when it holds repos or the cluster has none yet ...
        (None, {"has_entries": True, "am_repos": 3}, ADOPT, ""),
        (None, {"am_repos": 0}, ADOPT, ""),
        # ... and an empty one refused when am knows repositories: they are elsewhere
        (None, {"am_repos": 3}, REFUSE, "am knows 3 repositories"),
        (None, {"am_repos": 100, "am_repos_more": True}, REFUSE, "am knows 100 or more rep"),
    ],
)
def test_what_an_af_does_with_its_root(
    marker: Marker | None, kw: dict, verdict: str, says: str
) -> None:
    got, why = decide(US, marker, **kw)
    assert got == verdict
    assert says in why
    assert (why == "") == (verdict != REFUSE)
