"""Authenticated frames: the keys a handshake derives, and a tag on every frame after it.

Once the handshake has proved the cookie both ways, each direction of the link
gets its own key, derived from the cookie and the whole handshake (both fresh
challenges, both names, the suite): no two links, and no two directions of one
link, share a key. Every frame then carries a 16-byte tag over its body and its
sequence number (counted from 0 in each direction, never sent). A frame injected,
replayed, reordered or missing fails its tag, and the link ends: only a holder of
the cookie who took part in this handshake can make a frame the peer takes.

Two suites; the client offers, the server takes the first of the client's it knows:

- "aes-gcm": AES-256-GCM with an empty plaintext (GMAC) over the body, the
  sequence number as the nonce. OpenSSL through `cryptography` (a dependency),
  several GB/s: what long-lived nodes offer first.
- "hmac-sha256": HMAC-SHA256 over the sequence number and the body, cut to 16
  bytes. The builtin SHA-256 (lean.py): `as` and `ah` offer only this one, and
  import nothing more for it (`cryptography` alone would cost ~17 ms).

Authentication, not secrecy: links between hosts use TLS for that.
"""

from __future__ import annotations

from _struct import Struct  # struct.py only re-exports _struct: a module less for as

from .lean import compare_digest, sha256

TYPE_CHECKING = False  # typing itself is not imported: `as` and `ah` start faster without it
if TYPE_CHECKING:
    from typing import Any

TAG_BYTES = 16
KEEP_SCRATCH = 1 << 20  # sign_joined keeps its buffer up to this size
AES_GCM = "aes-gcm"
HMAC_SHA256 = "hmac-sha256"
SUITES = (AES_GCM, HMAC_SHA256)  # every suite this version knows, best first
LEAN_SUITES = (HMAC_SHA256,)  # what an ephemeral node offers: no extra import

_SEQ = Struct(">Q")
_nonce = Struct(">4xQ").pack  # 12 bytes: 4 zero bytes, then the sequence number
_TRANS_5C = bytes(x ^ 0x5C for x in range(256))
_TRANS_36 = bytes(x ^ 0x36 for x in range(256))


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """RFC 2104 HMAC-SHA256 (the same bytes as hmac.new(key, msg, "sha256"); tested so)."""
    if len(key) > 64:
        key = sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = sha256(key.translate(_TRANS_36) + msg).digest()
    return sha256(key.translate(_TRANS_5C) + inner).digest()


def derive_keys(cookie: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    """(client-to-server key, server-to-client key) for one link: HKDF's extract and
    expand steps with HMAC-SHA256, over the cookie and the handshake's transcript."""
    prk = hmac_sha256(cookie, b"applikant link keys\0" + transcript)
    return (
        hmac_sha256(prk, b"client to server\x01"),
        hmac_sha256(prk, b"server to client\x01"),
    )


class FrameMac:
    """One direction of one link: `sign` tags the next frame sent, `verify` checks
    the next frame received; each counts its own sequence number."""

    __slots__ = ("_gmac", "_scratch", "_tag", "seq", "suite")

    def __init__(self, suite: str, key: bytes) -> None:
        # AES-GCM's encrypt is called straight from sign and verify (on every frame
        # of a long-lived link: one Python call less); other suites through _tag.
        self._gmac: Any = None
        self._tag: Any = None
        if suite == AES_GCM:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._gmac = AESGCM(key).encrypt  # GMAC: no plaintext, the body as AAD
        elif suite == HMAC_SHA256:
            self._tag = _hmac(key)
        else:
            raise ValueError(f"unknown frame authentication suite {suite!r}")
        self.suite = suite
        self.seq = 0
        self._scratch: bytearray | None = None  # (sign_joined's, reused)

    def sign(self, body: Any) -> bytes:
        """The tag of the next frame's body (bytes or a memoryview)."""
        seq = self.seq
        self.seq = seq + 1
        if self._gmac is not None:
            gmac: bytes = self._gmac(_nonce(seq), b"", body)
            return gmac
        tag: bytes = self._tag(seq, body)
        return tag

    def sign_joined(self, head: bytes, tail: bytes) -> bytes:
        """sign(head + tail), without a fresh string of that size: the body of a
        large frame, whose payload goes out as a piece of its own. GMAC needs
        its input in one piece: the two are copied into a buffer kept for the
        next (a fresh one each time would fault its pages in)."""
        seq = self.seq
        self.seq = seq + 1
        if self._gmac is None:
            tag: bytes = self._tag(seq, head, tail)
            return tag
        cut = len(head)
        size = cut + len(tail)
        scratch = self._scratch
        if scratch is None or len(scratch) < size:
            scratch = bytearray(size)
            if size <= KEEP_SCRATCH:
                self._scratch = scratch
        view = memoryview(scratch)
        view[:cut] = head
        view[cut:size] = tail
        gmac: bytes = self._gmac(_nonce(seq), b"", view[:size])
        return gmac

    def verify(self, body: Any, tag: Any) -> bool:
        """Whether `tag` is the next frame's tag for `body` (constant-time compare);
        the sequence number moves on only when it is."""
        seq = self.seq
        if self._gmac is not None:
            want = self._gmac(_nonce(seq), b"", body)
        else:
            want = self._tag(seq, body)
        if not compare_digest(want, tag):
            return False
        self.seq = seq + 1
        return True


def _hmac(key: bytes) -> Any:
    # The padded key's two hash states, computed once: each tag is then two copies
    # and three updates (RFC 2104's "precomputed" form).
    if len(key) > 64:
        key = sha256(key).digest()
    padded = key.ljust(64, b"\0")
    inner0 = sha256(padded.translate(_TRANS_36))
    outer0 = sha256(padded.translate(_TRANS_5C))
    seq_bytes = _SEQ.pack

    def tag(seq: int, body: Any, tail: Any = b"") -> bytes:
        inner = inner0.copy()
        inner.update(seq_bytes(seq))
        inner.update(body)
        if tail:
            inner.update(tail)
        outer = outer0.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]

    return tag
