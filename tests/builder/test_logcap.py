"""LogCap, fed whole, one byte at a time, and in odd chunks."""

from __future__ import annotations

import pytest

from applikant.builder.logcap import MARKER_PREFIX, LogCap


def feed_all(cap: LogCap, data: bytes, step: int | None = None) -> list[str]:
    out: list[str] = []
    step = step or len(data) or 1
    for i in range(0, len(data), step):
        out += cap.feed(data[i : i + step])
    return out + cap.close()


@pytest.mark.parametrize("step", [None, 1, 3, 7])
def test_lines_whatever_the_chunking(step: int | None) -> None:
    data = "one\r\ntwo\n\nthré€\nlast, no newline".encode()
    cap = LogCap(limit=1000)
    assert feed_all(cap, data, step) == ["one", "two", "", "thré€", "last, no newline"]
    assert cap.size == len(b"one\ntwo\n\nthr\xc3\xa9\xe2\x82\xac\nlast, no newline\n")
    assert not cap.truncated


def test_invalid_utf8_is_replaced() -> None:
    assert feed_all(LogCap(100), b"a\xffb\n") == ["a\ufffdb"]


@pytest.mark.parametrize("step", [None, 1, 5])
def test_long_lines_are_split(step: int | None) -> None:
    cap = LogCap(limit=1000, max_line=10)
    assert feed_all(cap, b"x" * 25 + b"\nshort\n", step) == ["x" * 10, "x" * 10, "x" * 5, "short"]


@pytest.mark.parametrize("step", [None, 1, 4])
def test_cap_keeps_whole_lines_then_one_marker(step: int | None) -> None:
    cap = LogCap(limit=1024)
    data = b"".join(b"line %04d\n" % i for i in range(500))  # 10 bytes a line
    out = feed_all(cap, data, step)
    assert out[:-1] == [f"line {i:04d}" for i in range(102)]
    assert out[-1] == MARKER_PREFIX + "log truncated at 1 KiB; the rest of the output was discarded"
    assert cap.truncated
    assert cap.size == 1020 + len(out[-1]) + 1
    assert cap.discarded == len(data) - 1020
    assert cap.feed(b"more\n") == [] and cap.close() == []
    assert cap.discarded == len(data) - 1020 + 5


def test_exact_fit_is_not_truncated() -> None:
    cap = LogCap(limit=1024)
    assert len(feed_all(cap, b"x" * 1023 + b"\n")) == 1 and not cap.truncated


def test_notes_are_never_capped() -> None:
    cap = LogCap(limit=1024)
    feed_all(cap, b"x" * 5000)
    assert cap.truncated
    assert cap.note("timed out\nafter 1 s") == MARKER_PREFIX + "timed out after 1 s"


def test_odd_limits_are_named_in_bytes() -> None:
    out = feed_all(LogCap(limit=1500), b"y\n" * 1000)
    assert out[-1].startswith(MARKER_PREFIX + "log truncated at 1500 bytes")


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        LogCap(0)
