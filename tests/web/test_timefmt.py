"""Times as people read them, one way everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from applikant.web.timefmt import absolute, duration, relative, time_tag

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_relative_and_absolute() -> None:
    assert relative(NOW - timedelta(seconds=10), NOW) == "just now"
    assert relative(NOW - timedelta(minutes=1), NOW) == "1 minute ago"
    assert relative(NOW - timedelta(hours=3, minutes=5), NOW) == "3 hours ago"
    assert relative(NOW - timedelta(days=9), NOW) == "1 week ago"
    assert relative(NOW - timedelta(days=800), NOW) == "2 years ago"
    assert relative(NOW + timedelta(minutes=5), NOW) == "in 5 minutes"
    assert absolute(datetime(2024, 5, 1, 14, 30, tzinfo=UTC)) == "2024-05-01 14:30 UTC"


def test_time_tag() -> None:
    tag = time_tag("2024-05-01T10:00:00+02:00", absolute_text=True)
    assert tag.startswith('<time datetime="2024-05-01T10:00:00+02:00" title="')
    assert ">2024-05-01 08:00 UTC</time>" in tag
    assert time_tag(None) == "" and time_tag("not a time") == "not a time"
    assert time_tag("<b>") == "&lt;b&gt;"


def test_duration() -> None:
    assert [duration(s) for s in (0.4, 12, 60, 184, 3600, 3720)] == [
        "0 s",
        "12 s",
        "1 min",
        "3 min 4 s",
        "1 h",
        "1 h 2 min",
    ]
