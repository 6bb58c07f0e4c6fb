"""The frame authentication suites: the same tags as the reference implementations,
sequence numbers that move on only with a good frame, keys that differ per link
and per direction."""

from __future__ import annotations

import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from applikant.node.frameauth import (
    AES_GCM,
    HMAC_SHA256,
    SUITES,
    TAG_BYTES,
    FrameMac,
    derive_keys,
    hmac_sha256,
)

KEY = bytes(range(32))


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=300), seq=st.integers(0, 2**64 - 1))
def test_hmac_suite_is_truncated_hmac_sha256_over_sequence_and_body(body: bytes, seq: int) -> None:
    mac = FrameMac(HMAC_SHA256, KEY)
    mac.seq = seq
    want = hmac.new(KEY, seq.to_bytes(8, "big") + body, "sha256").digest()[:TAG_BYTES]
    assert mac.sign(body) == want


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=300), seq=st.integers(0, 2**64 - 1))
def test_gcm_suite_is_gmac_with_the_sequence_as_nonce(body: bytes, seq: int) -> None:
    mac = FrameMac(AES_GCM, KEY)
    mac.seq = seq
    want = AESGCM(KEY).encrypt(bytes(4) + seq.to_bytes(8, "big"), b"", body)
    assert mac.sign(body) == want and len(want) == TAG_BYTES


@pytest.mark.parametrize("suite", SUITES)
def test_sequence_numbers_move_on_only_with_a_good_frame(suite: str) -> None:
    sender, receiver = FrameMac(suite, KEY), FrameMac(suite, KEY)
    tags = [sender.sign(b"frame %d" % i) for i in range(3)]
    assert sender.seq == 3
    assert receiver.verify(b"frame 0", tags[0])
    assert not receiver.verify(b"frame 0", tags[0])  # a replay
    assert not receiver.verify(b"frame 2", tags[2])  # one missing
    assert not receiver.verify(b"frame 1", tags[0])  # a tag of another frame
    assert receiver.seq == 1
    assert receiver.verify(memoryview(b"frame 1"), memoryview(tags[1]))  # views work too
    assert receiver.seq == 2


@pytest.mark.parametrize("suite", SUITES)
def test_tags_differ_between_keys(suite: str) -> None:
    assert FrameMac(suite, KEY).sign(b"x") != FrameMac(suite, bytes(32)).sign(b"x")


def test_keys_per_direction_and_per_transcript() -> None:
    c2s, s2c = derive_keys(b"cookie", b"transcript")
    assert c2s != s2c and len(c2s) == len(s2c) == 32
    assert derive_keys(b"cookie", b"transcript") == (c2s, s2c)
    assert derive_keys(b"cookie", b"transcript2")[0] != c2s
    assert derive_keys(b"cookie2", b"transcript")[0] != c2s


def test_unknown_suite_is_refused() -> None:
    with pytest.raises(ValueError, match="suite"):
        FrameMac("none", KEY)


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 200])
def test_hmac_sha256_every_key_length(n: int) -> None:
    key = os.urandom(n)
    assert hmac_sha256(key, b"msg") == hmac.new(key, b"msg", "sha256").digest()
