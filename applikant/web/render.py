"""Templates, flash messages, forms with CSRF, and error pages in words.

Every form POST goes through `read_form`, which refuses a request whose hidden
`csrf` field does not match the session's token (403, nothing changed).
Templates are Jinja2 with autoescaping on; Markdown is rendered by
`markdown.render` (raw HTML disabled, links validated), so repository content
cannot inject markup or script. Times go through `timefmt` (the `when` and
`when_abs` filters), so every page shows them one way.
"""

from __future__ import annotations

import os
from typing import Any

import jinja2
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from . import markdown as _markdown
from .security import csrf_ok, new_csrf
from .timefmt import time_tag

__all__ = [
    "FormError",
    "error_page",
    "file_size",
    "flash",
    "markdown",
    "read_form",
    "redirect",
    "render",
    "templates",
]

HERE = os.path.dirname(__file__)

templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
    autoescape=jinja2.select_autoescape(default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates ship with aw and change only with it (a restart): no
    # stat of each template a page uses on every request.
    auto_reload=False,
)


def markdown(text: str, base: _markdown.Base | None = None, key: str = "") -> str:
    return _markdown.render(text, base, key=key)


def _when(value: Any) -> Any:
    """A `<time>` with relative words and the absolute time on hover."""
    return time_tag(value)


def _when_abs(value: Any) -> Any:
    """A `<time>` with the absolute time and relative words on hover."""
    return time_tag(value, absolute_text=True)


def file_size(value: Any) -> str:
    """`512 B`, `1.5 KiB`: a size as the file lists show it."""
    if value is None:
        return ""
    n = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)


templates.filters["when"] = _when
templates.filters["when_abs"] = _when_abs
templates.filters["size"] = file_size


class FormError(Exception):
    """A form cannot be accepted: 403 for a missing CSRF token, 400/413 otherwise."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = new_csrf()
        request.session["csrf"] = token
    return token


def flash(request: Request, message: str, kind: str = "ok") -> None:
    request.session.setdefault("flash", []).append([kind, message[:500]])


async def read_form(request: Request) -> FormData:
    """The POSTed form, after the CSRF check; FormError(403) without a valid token."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        raise FormError(415, "this address expects a form submitted from its page")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > 256 * 1024):
        raise FormError(413, "the form is too large")
    try:
        form = await request.form(max_files=0, max_fields=200, max_part_size=128 * 1024)
    except Exception:  # multipart's own errors: bad boundaries, too many fields
        raise FormError(400, "the form could not be read") from None
    if not csrf_ok(request.session.get("csrf"), form.get("csrf")):
        raise FormError(
            403, "the form had no valid security token (CSRF); reload the page and submit it again"
        )
    return form


def field(form: FormData, name: str, max_len: int = 1024) -> str:
    """A text field of the form, '' when absent; FormError(400) when over `max_len`."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise FormError(400, f"{name} must be text")
    if len(value) > max_len:
        raise FormError(400, f"{name} is longer than {max_len} characters")
    return value


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    web = request.app.state.web
    viewer = getattr(request.state, "viewer", None)
    messages = request.session.pop("flash", []) if "session" in request.scope else []
    body = templates.get_template(name).render(
        request=request,
        viewer=viewer,
        csrf=csrf_token(request) if "session" in request.scope else "",
        messages=messages,
        site=web.site,
        **context,
    )
    return HTMLResponse(body, status_code=status)


def error_page(
    request: Request, status: int, message: str, title: str | None = None
) -> HTMLResponse:
    titles = {
        400: "Bad request",
        401: "Please log in",
        403: "Not allowed",
        404: "Not found",
        405: "Method not allowed",
        409: "Conflict",
        413: "Too large",
        415: "Unsupported form",
        422: "Invalid input",
        429: "Too many attempts",
        500: "Something went wrong",
        501: "Not available yet",
        503: "The manager is unavailable",
    }
    try:
        return render(
            request,
            "error.html",
            status=status,
            message=message,
            title=title or titles.get(status, "Error"),
            status_code=status,
        )
    except Exception:  # the page itself must never fail into a traceback
        return HTMLResponse(
            f"<h1>{status}</h1><p>{jinja2.utils.markupsafe.escape(message)}</p>", status_code=status
        )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
