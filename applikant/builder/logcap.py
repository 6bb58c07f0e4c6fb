"""Turning a build's output into capped log lines, with no I/O (fed bytes,
returns lines), in the manner of h11.

Rules:
- A line ends at "\\n"; a trailing "\\r" is dropped (CRLF output). Bytes are
  decoded as UTF-8, invalid sequences replaced, so a line is always a `str`.
- A line longer than `max_line` bytes is cut into pieces of at most that size.
- The kept log is at most `limit` bytes, counting every line with its newline.
  The first line that does not fit is replaced by one marker line (starting
  with `MARKER_PREFIX`) saying so, which is the last line from the build; all
  later output is counted in `discarded` and dropped. The marker itself may
  pass the limit by its own few bytes.
- `note()` lines (the runner's own, e.g. "timed out") also start with
  MARKER_PREFIX and are always kept: they are few and short.
"""

from __future__ import annotations

__all__ = ["MARKER_PREFIX", "LogCap"]

MARKER_PREFIX = "applikant: "


def _human(n: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


class LogCap:
    def __init__(self, limit: int, max_line: int = 16 * 1024) -> None:
        if limit < 1 or max_line < 1:
            raise ValueError("limit and max_line must be positive")
        self.limit = limit
        self.max_line = max_line
        self.size = 0  # bytes of the lines returned so far, newlines included
        self.truncated = False
        self.discarded = 0  # bytes of output dropped after the cap
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray) -> list[str]:
        """The complete lines that `data` finishes, after the cap."""
        if self.truncated:
            self.discarded += len(data)
            return []
        self._buf += data
        out: list[str] = []
        while True:
            nl = self._buf.find(b"\n", 0, self.max_line + 1)
            if nl >= 0:
                raw = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
            elif len(self._buf) > self.max_line:
                raw = bytes(self._buf[: self.max_line])
                del self._buf[: self.max_line]
            else:
                break
            if not self._keep(raw, out):
                break
        return out

    def close(self) -> list[str]:
        """The last, unterminated line, if any: call once when output ended."""
        if self.truncated or not self._buf:
            return []
        out: list[str] = []
        raw = bytes(self._buf)
        self._buf.clear()
        self._keep(raw, out)
        return out

    def note(self, text: str) -> str:
        """A line of the runner's own, counted in `size` but never capped."""
        line = MARKER_PREFIX + text.replace("\n", " ")
        self.size += len(line.encode()) + 1
        return line

    def _keep(self, raw: bytes, out: list[str]) -> bool:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        cost = len(raw) + 1
        if self.size + cost > self.limit:
            self.truncated = True
            self.discarded += cost + len(self._buf)
            self._buf.clear()
            out.append(
                self.note(
                    f"log truncated at {_human(self.limit)}; the rest of the output was discarded"
                )
            )
            return False
        self.size += cost
        out.append(raw.decode("utf-8", errors="replace"))
        return True
