"""Structured logs for operators: one line per event, `key=value` pairs, to stderr.

journald keeps stderr lines as they are; `event=` names what happened and the other
fields say where (node, component) and to whom (user, repo, peer).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

_node = "-"


def set_node(name: str) -> None:
    """Name this process's node in every line it logs from now on."""
    global _node
    _node = name


def _quote(value: Any) -> str:
    s = str(value)
    if not s or any(c in s for c in ' "=\n\t'):
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields = getattr(record, "fields", {})
        parts = [
            f"{ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"node={_quote(_node)}",
            f"component={record.name.removeprefix('applikant.')}",
            f"event={_quote(record.getMessage())}",
        ]
        parts += [f"{k}={_quote(v)}" for k, v in fields.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += " traceback=" + _quote(self.formatException(record.exc_info))
        return line


def setup(level: str = "info") -> None:
    """Send every Applikant log line to stderr, formatted; idempotent."""
    root = logging.getLogger("applikant")
    if not any(getattr(h, "_applikant", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        handler._applikant = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


class EventLog:
    """A component's log: `log.info("nodeup", peer="af@git")`."""

    def __init__(self, component: str) -> None:
        self._log = logging.getLogger(f"applikant.{component}")

    def _emit(self, level: int, event: str, exc: bool, fields: dict[str, Any]) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, event, extra={"fields": fields}, exc_info=exc)

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, False, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, False, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, False, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, False, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """An error with the traceback: for operators' eyes only, never a caller's."""
        self._emit(logging.ERROR, event, True, fields)
