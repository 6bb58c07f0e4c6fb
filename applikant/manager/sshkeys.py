"""Parsing and validation of OpenSSH public key lines.

A key is accepted only when its wire blob decodes completely and agrees with the
type named on the line: sshd would otherwise reject it at login time, long after
the user was told it was fine. The fingerprint is computed exactly as
`ssh-keygen -lf` prints it (`SHA256:` and unpadded base64 of the blob's SHA-256),
which is also what sshd hands an AuthorizedKeysCommand as `%f`.

Accepted: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa of 2048 to 16384 bits,
and the FIDO variants sk-ssh-ed25519@openssh.com and
sk-ecdsa-sha2-nistp256@openssh.com. Refused with a reason: DSA, short RSA,
certificates, key options, private keys, several keys at once, and garbage.
No cryptography library is needed: the checks are structural.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from applikant.manager.errors import BadRequest

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 16384
MAX_KEY_TEXT = 16 * 1024
COMMENT_MAX = 256

# Curve name inside the blob and the length of one coordinate in bytes.
_ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 32, 256),
    "ecdsa-sha2-nistp384": ("nistp384", 48, 384),
    "ecdsa-sha2-nistp521": ("nistp521", 66, 521),
}
_SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"
_SK_ED25519 = "sk-ssh-ed25519@openssh.com"
KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", _SK_ED25519, _SK_ECDSA, *_ECDSA_CURVES})


@dataclass(frozen=True)
class PublicKey:
    """A validated public key: `line` is the normalised `type base64 [comment]`."""

    key_type: str
    bits: int
    fingerprint: str
    comment: str
    blob: bytes

    @property
    def line(self) -> str:
        b64 = base64.b64encode(self.blob).decode("ascii")
        return f"{self.key_type} {b64} {self.comment}".rstrip()


def fingerprint_sha256(blob: bytes) -> str:
    """The fingerprint of a key blob as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


class _Reader:
    """Reads the SSH wire encoding (RFC 4251 strings and mpints) from a blob."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def string(self) -> bytes:
        if self._pos + 4 > len(self._data):
            raise BadRequest("the key data is truncated; copy the whole line of the .pub file")
        (length,) = struct.unpack_from(">I", self._data, self._pos)
        start = self._pos + 4
        if start + length > len(self._data):
            raise BadRequest("the key data is truncated; copy the whole line of the .pub file")
        self._pos = start + length
        return self._data[start : self._pos]

    def mpint(self) -> int:
        raw = self.string()
        if raw and raw[0] & 0x80:
            raise BadRequest("the key data holds a negative number; it is not a valid key")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self._pos != len(self._data):
            raise BadRequest("the key data has trailing bytes; it is not a valid key")


def _bits_of(key_type: str, reader: _Reader) -> int:
    """Decode the rest of the blob for `key_type`; return its size in bits."""
    if key_type in ("ssh-ed25519", _SK_ED25519):
        if len(reader.string()) != 32:
            raise BadRequest("an ed25519 key must hold exactly 32 bytes")
        if key_type == _SK_ED25519:
            reader.string()  # the FIDO application, usually "ssh:"
        reader.end()
        return 256
    if key_type == "ssh-rsa":
        e = reader.mpint()
        n = reader.mpint()
        reader.end()
        if e < 3 or e % 2 == 0:
            raise BadRequest("the RSA key has an invalid public exponent")
        bits = n.bit_length()
        if bits < RSA_MIN_BITS:
            raise BadRequest(
                f"RSA keys must have at least {RSA_MIN_BITS} bits, this one has {bits}; "
                "generate a new key with `ssh-keygen -t ed25519`"
            )
        if bits > RSA_MAX_BITS:
            raise BadRequest(f"RSA keys of more than {RSA_MAX_BITS} bits are not accepted")
        return bits
    # The remaining types are ECDSA; the FIDO variant exists only on nistp256.
    curve, coord_len, bits = _ECDSA_CURVES.get(key_type, ("nistp256", 32, 256))
    blob_curve = reader.string()
    if blob_curve != curve.encode():
        raise BadRequest(f"the key says {key_type} but its data names curve {blob_curve[:32]!r}")
    point = reader.string()
    if len(point) != 1 + 2 * coord_len or point[0] != 4:
        raise BadRequest(f"the {curve} public point is malformed")
    if key_type == _SK_ECDSA:
        reader.string()
    reader.end()
    return bits


def _refuse_obvious_mistakes(text: str) -> None:
    if "PRIVATE KEY" in text:
        raise BadRequest("this looks like a private key; paste the .pub file instead")
    if text.startswith(("---- BEGIN SSH2 PUBLIC KEY", "-----BEGIN")):
        raise BadRequest(
            "this key is in PEM/RFC 4716 form; convert it with `ssh-keygen -i -f FILE` "
            "and paste the one-line OpenSSH form"
        )


def parse_public_key(text: object) -> PublicKey:
    """Parse and validate one OpenSSH public key line.

    Accepts surrounding whitespace and one trailing newline, nothing more: a single
    key per call keeps every key's title, owner and audit entry unambiguous.
    Raises BadRequest with a message meant for the person who pasted the key.
    """
    if not isinstance(text, str):
        raise BadRequest("the key must be text")
    if len(text) > MAX_KEY_TEXT:
        raise BadRequest("the key text is too long for a public key; paste the .pub file")
    _refuse_obvious_mistakes(text)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        raise BadRequest("the key is empty; paste the contents of your .pub file")
    if len(lines) > 1:
        raise BadRequest("paste exactly one key (one line); add several keys one at a time")
    parts = lines[0].split(None, 2)
    key_type = parts[0]
    if key_type == "ssh-dss":
        raise BadRequest(
            "DSA keys are not accepted (OpenSSH disabled them); "
            "generate a new key with `ssh-keygen -t ed25519`"
        )
    if key_type.endswith("-cert-v01@openssh.com"):
        raise BadRequest("SSH certificates are not accepted; paste the plain public key")
    if key_type not in KEY_TYPES:
        if "=" in key_type or "," in key_type or key_type in ("restrict", "no-pty"):
            raise BadRequest("key options are not accepted; paste only 'type key comment'")
        raise BadRequest(
            f"unknown key type {key_type[:40]!r}; accepted are ed25519, ecdsa and RSA keys"
        )
    if len(parts) < 2:
        raise BadRequest("the key line has a type but no key data")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("the key data is not valid base64; copy the line exactly") from None
    reader = _Reader(blob)
    blob_type = reader.string()
    if blob_type != key_type.encode():
        raise BadRequest(
            f"the key line says {key_type} but its data is a {blob_type[:40].decode('ascii', 'replace')} key"
        )
    bits = _bits_of(key_type, reader)
    comment = parts[2].strip() if len(parts) > 2 else ""
    if len(comment) > COMMENT_MAX or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in comment):
        raise BadRequest(f"the key comment must be at most {COMMENT_MAX} printable characters")
    return PublicKey(key_type, bits, fingerprint_sha256(blob), comment, blob)
