"""/api/openapi.json: an OpenAPI 3.1 document made from the API's route table.

Schemas come from the pydantic models themselves (applikant.schema: the
bodies aw validates and the results am returns), and each operation's access
(`x-access`, and in words in its description) is the route's `access`, the one
the dispatcher enforces (apitable.py): the document cannot drift from what the
API does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from .apitable import ApiRoute, ErrorOut

REF = "#/components/schemas/{model}"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        components[name] = sub
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


# A paged list (as GitHub and Gitea page): the body is one page, `Link` names the next.
PAGE_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "items per page (default 50)",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "where the page starts: the cursor in the previous page's Link header",
        "schema": {"type": "string", "maxLength": 512},
    },
]
PAGE_HEADERS = {
    "Link": {
        "description": 'the next page, `<URL>; rel="next"`; absent on the last page',
        "schema": {"type": "string"},
    },
    "X-Total-Count": {
        "description": "how many there are in all, when that was free to know",
        "schema": {"type": "integer"},
    },
}

_cache: dict[int, dict[str, Any]] = {}


def document(routes: Sequence[ApiRoute]) -> dict[str, Any]:
    """The document for `routes` (made once per route table)."""
    key = id(routes)
    if key not in _cache:
        _cache[key] = _document(routes)
    return _cache[key]


def _document(routes: Sequence[ApiRoute]) -> dict[str, Any]:
    components: dict[str, Any] = {}
    error_ref = _schema(ErrorOut, components)
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "description": f"Access: {r.access.text}.",
            "x-access": r.access.name,
            "operationId": f"{r.method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', r.path)}".rstrip("_"),
        }
        params = re.findall(r"{(\w+)}", r.path)
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
        if r.paged:
            parameters += PAGE_PARAMETERS
        if parameters:
            op["parameters"] = parameters
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _schema(r.body, components)}},
            }
        responses: dict[str, Any] = {}
        if r.status == 204 or r.answer is None:
            responses[str(r.status)] = {"description": "done"}
        else:
            if isinstance(r.answer, list):
                schema = {"type": "array", "items": _schema(r.answer[0], components)}
            else:
                schema = _schema(r.answer, components)
            responses[str(r.status)] = {
                "description": "success",
                "content": {"application/json": {"schema": schema}},
            }
            if r.paged:
                responses[str(r.status)]["headers"] = PAGE_HEADERS
        for code, text in (
            ("400", "bad input"),
            ("401", "authentication required"),
            ("403", "not allowed"),
            ("404", "not found"),
            ("409", "conflict"),
            ("422", "invalid body"),
            ("503", "the manager (am) is unavailable"),
        ):
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": error_ref}},
            }
        op["responses"] = responses
        if r.access.login:
            op["security"] = [{"bearer": []}, {"basic": []}, {"session": []}]
        else:  # credentials are optional: they may show more
            op["security"] = [{}, {"bearer": []}, {"basic": []}, {"session": []}]
        paths.setdefault("/api" + r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Applikant REST API",
            "version": "1",
            "description": "Users, SSH keys, groups, repositories, permissions and "
            "the audit log. Errors are {status, message}.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a personal API token user-N.xxxx",
                },
                "basic": {"type": "http", "scheme": "basic"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "applikant_session",
                    "description": "changes also need the X-CSRF-Token header",
                },
            },
        },
    }
