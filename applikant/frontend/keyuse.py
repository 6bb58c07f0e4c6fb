"""When each SSH key was last used: af notes the key of every session it lets
in (``af_auth.check_access``; the forced command names the key), and tells am
in batches (``am_user_db.touch_keys``), at most once every ``every`` seconds.

A busy host (a CI fetching every few seconds) thus costs am one small write
per interval, not one per fetch. The times are those of the flushes, so
"last used" is right to within ``every`` seconds. What could not be told
(am away) is kept for the next flush; it is a convenience, never a reason to
slow a login, so nothing waits for it.
"""

from __future__ import annotations

import trio

from applikant.amclient import AmClient, AmRefused, AmUnavailable
from applikant.logs import EventLog

__all__ = ["FLUSH_EVERY", "KeyUse"]

log = EventLog("af")

FLUSH_EVERY = 5.0  # seconds
BATCH_MAX = 1000  # fingerprints per call (am's limit)


class KeyUse:
    """The keys used since the last flush; `run` flushes them, for ever."""

    def __init__(self, link: AmClient, every: float = FLUSH_EVERY) -> None:
        self.link = link
        self.every = every
        self.pending: set[str] = set()
        self.flushed = 0  # keys told to am so far (status, tests)

    def used(self, fingerprint: str) -> None:
        """Note a key that was just let in (no I/O: a set insert)."""
        self.pending.add(fingerprint)

    async def flush(self) -> int:
        """Tell am about the keys noted so far; how many it was told."""
        told = 0
        while self.pending and self.link.up:
            batch = sorted(self.pending)[:BATCH_MAX]
            try:
                await self.link.call(
                    "am_user_db", "touch_keys", {"fingerprints": batch}, timeout=5.0
                )
            except AmUnavailable:
                return told  # kept for the next flush
            except AmRefused as exc:
                log.warning("key_use_not_recorded", keys=len(batch), reason=exc.message)
            self.pending.difference_update(batch)
            told += len(batch)
        self.flushed += told
        return told

    async def run(self) -> None:
        while True:
            await trio.sleep(self.every)
            await self.flush()
