"""SSH key parsing against real keys from ssh-keygen, and refusal of everything else."""

from __future__ import annotations

import base64
import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from applikant.manager.errors import BadRequest
from applikant.manager.sshkeys import fingerprint_sha256, parse_public_key
from tests.manager.helpers import RealKeys, random_ed25519_line


def _s(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _line(blob: bytes, key_type: str) -> str:
    return f"{key_type} {base64.b64encode(blob).decode()}"


@pytest.mark.parametrize(
    ("name", "key_type", "bits", "expected_type"),
    [
        ("ed", "ed25519", None, "ssh-ed25519"),
        ("ec256", "ecdsa", 256, "ecdsa-sha2-nistp256"),
        ("ec384", "ecdsa", 384, "ecdsa-sha2-nistp384"),
        ("ec521", "ecdsa", 521, "ecdsa-sha2-nistp521"),
        ("rsa2048", "rsa", 2048, "ssh-rsa"),
        ("rsa4096", "rsa", 4096, "ssh-rsa"),
    ],
)
def test_real_keys_match_ssh_keygen(
    real_keys: RealKeys, name: str, key_type: str, bits: int | None, expected_type: str
) -> None:
    text = real_keys.public(name, key_type, bits)
    key = parse_public_key(text)
    kg_bits, kg_fingerprint, _ = real_keys.keygen_fingerprint(name)
    assert key.fingerprint == kg_fingerprint
    assert key.bits == kg_bits
    assert key.key_type == expected_type
    assert key.comment == f"{name}@test"
    assert key.line == text.strip()


def test_short_rsa_refused(real_keys: RealKeys) -> None:
    text = real_keys.public("rsa1024", "rsa", 1024)
    with pytest.raises(BadRequest, match="at least 2048 bits, this one has 1024"):
        parse_public_key(text)


def test_private_key_refused(real_keys: RealKeys) -> None:
    private = real_keys.make("ed", "ed25519").read_text()
    with pytest.raises(BadRequest, match=r"looks like a private key; paste the \.pub file"):
        parse_public_key(private)


def test_whitespace_and_no_comment_tolerated(real_keys: RealKeys) -> None:
    key_type, b64, _ = real_keys.public("ed", "ed25519").split()
    key = parse_public_key(f"  \n{key_type}   {b64}\n\n")
    assert key.comment == "" and key.line == f"{key_type} {b64}"
    assert key.fingerprint == real_keys.keygen_fingerprint("ed")[1]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("hello world", "unknown key type"),
        ("ssh-ed25519", "no key data"),
        ("ssh-ed25519 !!!notbase64", "not valid base64"),
        ("ssh-ed25519 AAAA", "truncated"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "DSA keys are not accepted"),
        ('command="ls" ssh-ed25519 AAAA', "options are not accepted"),
        ("no-pty,no-port-forwarding ssh-ed25519 AAAA", "options are not accepted"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "certificates"),
        ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAA\n---- END SSH2 PUBLIC KEY ----", "RFC 4716"),
        ("x" * 20000, "too long"),
    ],
)
def test_garbage_refused(text: str, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        parse_public_key(text)


def test_two_keys_refused() -> None:
    with pytest.raises(BadRequest, match="exactly one key"):
        parse_public_key(random_ed25519_line() + "\n" + random_ed25519_line())


def test_type_mismatch_refused(real_keys: RealKeys) -> None:
    _, b64, _ = real_keys.public("ed", "ed25519").split()
    with pytest.raises(BadRequest, match="says ssh-rsa but its data is a ssh-ed25519 key"):
        parse_public_key(f"ssh-rsa {b64}")


def test_ecdsa_curve_mismatch_refused() -> None:
    blob = _s(b"ecdsa-sha2-nistp384") + _s(b"nistp256") + _s(b"\x04" + os.urandom(64))
    with pytest.raises(BadRequest, match="names curve"):
        parse_public_key(_line(blob, "ecdsa-sha2-nistp384"))


def test_ecdsa_bad_point_refused() -> None:
    blob = _s(b"ecdsa-sha2-nistp256") + _s(b"nistp256") + _s(b"\x04" + os.urandom(63))
    with pytest.raises(BadRequest, match="malformed"):
        parse_public_key(_line(blob, "ecdsa-sha2-nistp256"))


def test_ed25519_wrong_length_and_trailing_bytes() -> None:
    with pytest.raises(BadRequest, match="exactly 32 bytes"):
        parse_public_key(_line(_s(b"ssh-ed25519") + _s(os.urandom(31)), "ssh-ed25519"))
    with pytest.raises(BadRequest, match="trailing bytes"):
        parse_public_key(_line(_s(b"ssh-ed25519") + _s(os.urandom(32)) + b"x", "ssh-ed25519"))


def test_rsa_bad_exponent() -> None:
    n = (1 << 2047) | 1
    blob = _s(b"ssh-rsa") + _s(b"\x02") + _s(b"\x00" + n.to_bytes(256, "big"))
    with pytest.raises(BadRequest, match="exponent"):
        parse_public_key(_line(blob, "ssh-rsa"))


def test_security_key_types_accepted() -> None:
    blob = _s(b"sk-ssh-ed25519@openssh.com") + _s(os.urandom(32)) + _s(b"ssh:")
    key = parse_public_key(_line(blob, "sk-ssh-ed25519@openssh.com") + " yubi")
    assert key.bits == 256 and key.fingerprint == fingerprint_sha256(blob)
    blob = (
        _s(b"sk-ecdsa-sha2-nistp256@openssh.com")
        + _s(b"nistp256")
        + _s(b"\x04" + os.urandom(64))
        + _s(b"ssh:")
    )
    assert parse_public_key(_line(blob, "sk-ecdsa-sha2-nistp256@openssh.com")).bits == 256


def test_control_characters_in_comment_refused() -> None:
    with pytest.raises(BadRequest, match="comment"):
        parse_public_key(random_ed25519_line("bad\x1bcomment"))


@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_bad_request(text: str) -> None:
    try:
        parse_public_key(text)
    except BadRequest:
        pass


@given(st.binary(max_size=200))
def test_arbitrary_blobs_only_ever_bad_request(blob: bytes) -> None:
    for key_type in ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256"):
        try:
            parse_public_key(_line(_s(key_type.encode()) + blob, key_type))
        except BadRequest:
            pass
