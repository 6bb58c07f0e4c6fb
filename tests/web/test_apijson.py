"""The API's JSON encoder (apitable.Json) against Starlette's JSONResponse:
the same bytes for what am answers, the same values for every float."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from starlette.responses import JSONResponse

from applikant.web.apitable import Json

REPO = {
    "id": "repo-7",
    "owner": "ana",
    "owner_kind": "user",
    "name": "wörk",
    "full_name": "ana/wörk",
    "description": 'quotes " and \\ and </script> & <b>, 漢字, 😀',
    "is_public": False,
    "default_branch": "main",
    "created_at": "2026-11-30T11:13:12.190434Z",
}


@pytest.mark.parametrize(
    "content",
    [
        [REPO] * 50,
        [],
        {},
        {"status": 404, "message": "no such API route"},
        {"controls": "".join(chr(c) for c in range(32)) + "\x7f\u2028\u2029"},
        [None, True, False, 0, -1, 2**63, 2**64 + 5, -(2**70)],
        {"nested": [{"a": {"b": [[], {}]}}], "text": "plain"},
        "a string",
    ],
)
def test_same_bytes_as_starlette(content: Any) -> None:
    assert Json(content).body == JSONResponse(content).body


def test_floats_keep_their_values() -> None:
    values = [1.5, 0.1, 1e-7, 1e22, 123456789.125, -0.0, 5e-324]
    assert json.loads(Json(values).body) == values


def test_nan_and_infinity_are_null_not_invalid_json() -> None:
    body = Json([math.nan, math.inf, -math.inf]).body
    assert json.loads(body) == [None, None, None]


def test_headers_and_status_as_starlette() -> None:
    response = Json({"a": 1}, status_code=201)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.body))
