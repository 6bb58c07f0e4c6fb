"""af's services check what `as` and `ah` send before anything reaches am."""

from __future__ import annotations

from typing import Any

import pytest

from applikant.frontend.services import _user
from applikant.node.errors import BadRequest


def test_a_user_id_is_user_dash_digits() -> None:
    assert _user({"user": "user-42"}) == "user-42"


@pytest.mark.parametrize(
    "args",
    [None, [], {}, {"user": None}, {"user": 42}, {"user": "user-"}, {"user": "user-4x"},
     {"user": "root"}, {"user": "user-٤٢"}, {"user": "USER-42"}],
)  # fmt: skip
def test_anything_else_is_refused(args: Any) -> None:
    with pytest.raises(BadRequest, match="user must look like user-42"):
        _user(args)
