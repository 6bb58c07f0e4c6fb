"""TLS over a FastSocketStream, with the same fast path: a record the kernel takes
at once costs no trip through trio's run loop.

trio's SSLStream is general (renegotiation, half-closed streams, any transport)
and every send and receive goes through its locks and retries: TLS calls came out
at a fifth of plain ones. This wraps the stdlib's `ssl.SSLObject` between two
memory BIOs, as SSLStream does, and talks to the socket directly: `try_send`
encrypts and hands the records to the kernel without waiting; what the kernel
does not take at once is kept (`backlog`) and goes out first on the next
`send_all`. The handshake runs on the first send or receive (within the caller's
deadline), as SSLStream's does.

Errors: a TLS failure (a bad certificate, a peer that breaks the protocol) is
trio.BrokenResourceError with the ssl.SSLError as its cause, as from SSLStream;
the peer's close (with or without close_notify) is end of file.
"""

from __future__ import annotations

import ssl
from typing import Any

import trio

from .faststream import FastSocketStream

RECEIVE = 65536


class FastSSLStream(trio.abc.Stream):
    def __init__(
        self,
        transport: FastSocketStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        self.transport = transport
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self._shaken = False
        self._sending = False
        self._receiving = False
        self._closed = False
        self.backlog = b""  # records the kernel has not taken yet
        self._records = memoryview(bytearray(RECEIVE))  # what the socket brings, reused
        self._ended = False  # the peer's close_notify (or end of file) was read

    def getpeercert(self) -> dict[str, Any] | None:
        cert: dict[str, Any] | None = self._tls.getpeercert()
        return cert

    def getpeername(self) -> tuple[str, int] | str:
        return self.transport.getpeername()

    async def do_handshake(self) -> None:
        """The TLS handshake (done by the first send or receive otherwise)."""
        while not self._shaken:
            try:
                self._tls.do_handshake()
                self._shaken = True
            except ssl.SSLWantReadError:
                await self._send_records()
                await self._receive_records()
            except ssl.SSLError as exc:
                self._send_soon()  # the alert, so that the peer logs why too
                raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
        await self._send_records()

    # ---- sending ----------------------------------------------------------------

    def try_send(self, data: bytes) -> int:
        """Encrypt all of `data` and give the kernel what it takes now; the rest
        of the records wait in `backlog`, which the next send_all sends first.
        0 (nothing taken) while records are waiting already."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        if self.backlog or not self._shaken:
            return 0
        try:
            self._tls.write(data)
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
        records = self._outgoing.read()
        sent = self.transport.try_send(records)
        if sent < len(records):
            self.backlog = records[sent:]
        return len(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        self._sending = True
        try:
            await self._send_all(data)
        finally:
            self._sending = False

    async def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self._shaken:
            await self.do_handshake()
        if self.backlog:
            backlog, self.backlog = self.backlog, b""
            await self.transport.send_all(backlog)
        if data:
            try:
                self._tls.write(data)
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
            await self._send_records()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await self.transport.wait_send_all_might_not_block()

    def _send_soon(self) -> None:
        """Records made while receiving: to the kernel now if it takes them and
        nobody is writing, else first in line for the next send."""
        records = self._outgoing.read()
        if not self.backlog:
            try:
                records = records[self.transport.try_send(records) :]
            except trio.BusyResourceError:
                pass
        self.backlog += records

    async def _send_records(self) -> None:
        records = self._outgoing.read()
        if records:
            await self.transport.send_all(records)

    # ---- receiving --------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        buffer = bytearray(RECEIVE if max_bytes is None else max_bytes)
        count = await self.receive_into(memoryview(buffer))
        del buffer[count:]
        return bytes(buffer)

    async def receive_into(self, buffer: memoryview) -> int:
        """receive_some into `buffer`: the plaintext is decrypted straight into it
        (a driver's own buffer: nothing allocated per read); the number of bytes
        written to its start, 0 at end of file.

        OpenSSL reads one record at a time: the plaintext of the records already
        received after the first goes in too, up to the buffer's size, so that
        what one socket read brought reaches the reader as one read (it answers
        the messages of one read together). An error there is left for the next
        read to raise."""
        size = len(buffer)
        if not size:
            raise ValueError("the buffer must hold at least 1 byte")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        self._check_open()
        self._receiving = True
        try:
            if not self._shaken:
                await self.do_handshake()
            read: Any = self._tls.read  # (with a buffer it returns a count: typeshed says bytes)
            incoming = self._incoming
            while True:
                # Nothing to decrypt: read the socket first, rather than have OpenSSL
                # say so with an SSLWantReadError (raised and caught on every read
                # that waits). Not once the peer's close_notify was read: the next
                # read says end of file at once.
                if (
                    not incoming.pending
                    and not self._ended
                    and not self._tls.pending()
                    and not await self._receive_records()
                ):
                    return 0
                try:
                    count: int = read(size, buffer)
                    if not count:  # (the peer's close_notify)
                        self._ended = True
                        return 0
                    while count < size and incoming.pending:
                        try:
                            more: int = read(size - count, buffer[count:])
                        except ssl.SSLError:
                            break
                        if not more:
                            self._ended = True
                            break
                        count += more
                    if self._outgoing.pending:  # (a TLS 1.3 key update to answer)
                        self._send_soon()
                    return count
                except ssl.SSLWantReadError:
                    if not await self._receive_records():
                        return 0
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    self._ended = True
                    return 0
                except ssl.SSLError as exc:
                    raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
        finally:
            self._receiving = False

    async def _receive_records(self) -> bool:
        """Feed what the socket has to the TLS object; False at end of file."""
        view = self._records
        count = await self.transport.receive_into(view)
        if not count:
            self._incoming.write_eof()
            if not self._shaken:
                raise trio.BrokenResourceError("the peer closed the connection during TLS setup")
            return False
        self._incoming.write(view[:count])
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        if self._shaken and not self.transport._closed:
            try:  # close_notify, if the kernel takes it now
                self._tls.unwrap()
            except ssl.SSLError:
                pass
            try:
                self.transport.try_send(self._outgoing.read())
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
                pass
        await self.transport.aclose()
