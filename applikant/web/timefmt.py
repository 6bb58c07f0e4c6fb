"""Timestamps shown one way everywhere: a `<time>` element with the ISO time in
`datetime`, relative words in lists ("3 hours ago") with the absolute time on
hover, or the absolute time with the relative words on hover (`absolute=True`).
static/site.js formats times that arrive later (live build updates) the same way.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

__all__ = ["absolute", "between", "duration", "parse", "relative", "time_html", "time_tag"]

_UNITS = (
    (365 * 86400, "year"),
    (30 * 86400, "month"),
    (7 * 86400, "week"),
    (86400, "day"),
    (3600, "hour"),
    (60, "minute"),
)


def parse(value: Any) -> datetime | None:
    """An aware datetime (naive ones read as UTC) from ISO 8601, or None."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def absolute(moment: datetime) -> str:
    """`2024-05-01 12:34 UTC`: always in UTC, as the server cannot know the reader's zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def relative(moment: datetime, now: datetime | None = None) -> str:
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    for size, unit in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            words = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    n = max(1, round(seconds / 60))
    words = f"{n} minute{'s' if n != 1 else ''}"
    return f"in {words}" if future else f"{words} ago"


@functools.lru_cache(maxsize=4096)
def _parsed(value: str) -> tuple[datetime, str, str] | None:
    """(moment, its ISO form, its absolute words) for a stored time: a list page
    shows dozens of them, mostly the same ones again, so each is parsed once."""
    moment = parse(value)
    if moment is None:
        return None
    return moment, str(escape(moment.isoformat())), str(escape(absolute(moment)))


def time_tag(value: Any, absolute_text: bool = False, now: datetime | None = None) -> Markup:
    """The `<time>` element for `value`; '' for nothing, the text itself if unreadable.
    `now` (default: this moment) is what the relative words count from: a list
    passes one for all of its rows."""
    return Markup(time_html(value, absolute_text, now))


def time_html(value: Any, absolute_text: bool = False, now: datetime | None = None) -> str:
    """`time_tag` as the HTML text itself, for rows built in Python (rows.py)."""
    if value is None or value == "":
        return ""
    found = _parsed(value) if isinstance(value, str) else None
    if found is None:
        moment = parse(value)
        if moment is None:
            return str(escape(str(value)))
        found = moment, str(escape(moment.isoformat())), str(escape(absolute(moment)))
    moment, iso, full = found
    words = relative(moment, now)  # numbers and fixed words: nothing to escape
    shown, hover = (full, words) if absolute_text else (words, full)
    return f'<time datetime="{iso}" title="{hover}">{shown}</time>'


def duration(seconds: float) -> str:
    """`12 s`, `3 min 4 s`, `1 h 2 min`: how long something took, as people say it."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"


def between(start: Any, end: Any) -> float | None:
    """Seconds from `start` to `end` (ISO times), or None if either is missing."""
    a, b = parse(start) if start else None, parse(end) if end else None
    if a is None or b is None:
        return None
    return (b - a).total_seconds()
