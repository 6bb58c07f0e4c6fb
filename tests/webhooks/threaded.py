"""The test receiver (receiver.py) in a thread with its own trio run, for tests
whose other calls block (GitSite, httpx.Client)."""

from __future__ import annotations

import threading

import trio

from .receiver import Receiver, Seen, free_port, start_receiver


class ThreadedReceiver:
    """tests/webhooks/receiver.py in a thread of its own (the site's calls block)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.receiver: Receiver | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        async with trio.open_nursery() as nursery:
            self.receiver = await start_receiver(nursery, self.port)
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self.receiver.stop.wait()

    def __enter__(self) -> ThreadedReceiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.receiver is not None and self._token is not None
        trio.from_thread.run_sync(self.receiver.stop.set, trio_token=self._token)
        self._thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self, path: str, event: str | None = None) -> list[Seen]:
        assert self.receiver is not None
        return [
            s
            for s in list(self.receiver.seen)
            if s.path == path and (event is None or s.headers.get("x-applikant-event") == event)
        ]
