"""A stand-in for af's link to am (AmClient) in in-process tests of af's parts:
it records the calls and answers from a queue of replies or errors. The
end-to-end tests use the real link and a real am."""

from __future__ import annotations

from typing import Any

__all__ = ["RecordingLink"]


class RecordingLink:
    """``up``, ``retry`` and ``call`` as AmClient has them; ``answers`` are used in
    order (an exception is raised), then every call gets ``{"ok": True}``."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.retry = 0.05
        self.calls: list[tuple[str, str, Any]] = []
        self.answers: list[Any] = []

    async def call(self, target: str, method: str, args: Any = None, *, timeout: float) -> Any:
        self.calls.append((target, method, args))
        answer = self.answers.pop(0) if self.answers else {"ok": True, "messages": []}
        if isinstance(answer, BaseException):
            raise answer
        return answer
