"""Which URLs a hook may have: absolute http or https URLs with a host.

Checked when a hook is made or changed (the API answers 4xx with the message)
and again before each attempt. Anything else, file:, ftp:, javascript:, a URL
without a host, with credentials in it, with spaces or control characters, is
refused. Private and loopback addresses are allowed: on a self-hosted
platform the receivers are often on the same network (a site that minds can
add a deny-list here).
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["MAX_URL", "InvalidHookURL", "validate_url"]

MAX_URL = 2048


class InvalidHookURL(ValueError):
    """The URL cannot be a webhook's; the message says why, for the user."""


def validate_url(url: str) -> str:
    """`url` itself when a hook may post to it; InvalidHookURL otherwise."""
    if not isinstance(url, str) or not url:
        raise InvalidHookURL("the URL is empty")
    if len(url) > MAX_URL:
        raise InvalidHookURL(f"the URL is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidHookURL("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidHookURL(f"the URL is malformed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidHookURL("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise InvalidHookURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidHookURL(
            "the URL must not contain a user name or password (the secret signs the deliveries)"
        )
    if port == 0:
        raise InvalidHookURL("the URL has port 0")
    return url
