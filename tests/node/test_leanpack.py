"""leanpack, the pure-Python msgpack of `as` and `ah`: the same bytes as msgpack
for everything the node layer sends, the same values back, and the same refusals
(hypothesis against msgpack itself)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from applikant.node import leanpack

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=300),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=20),
        st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), inner, max_size=20),
    ),
    max_leaves=40,
)


@FAST
@given(values)
def test_same_bytes_and_values_as_msgpack(value: Any) -> None:
    packed = leanpack.packb(value)
    assert packed == msgpack.packb(value, use_bin_type=True)
    assert leanpack.unpackb(packed) == msgpack.unpackb(packed, raw=False, strict_map_key=True)


@pytest.mark.parametrize("n", [0, 15, 16, 31, 32, 255, 256, 65535, 65536, 70000])
def test_every_length_form(n: int) -> None:
    for value in ("x" * n, b"x" * n, [1] * n, {str(i): i for i in range(min(n, 70000))}):
        packed = leanpack.packb(value)
        assert packed == msgpack.packb(value, use_bin_type=True)
        assert leanpack.unpackb(packed) == value


def test_float32_and_subclasses() -> None:
    assert leanpack.unpackb(msgpack.packb(1.5, use_single_float=True)) == 1.5
    assert leanpack.packb((1, 2)) == msgpack.packb([1, 2])
    assert leanpack.packb(bytearray(b"ab")) == msgpack.packb(b"ab", use_bin_type=True)

    class Name(str):
        pass

    assert leanpack.packb(Name("x")) == msgpack.packb("x")


@pytest.mark.parametrize("value", [object(), {1, 2}, 2**64, -(2**63) - 1, [object()]])
def test_what_msgpack_refuses_is_refused(value: Any) -> None:
    with pytest.raises((TypeError, OverflowError)):
        msgpack.packb(value, use_bin_type=True)
    with pytest.raises((TypeError, OverflowError)):
        leanpack.packb(value)


@FAST
@given(st.binary(max_size=64))
def test_garbage_is_a_value_error_or_the_same_value(data: bytes) -> None:
    try:
        want = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception:
        with pytest.raises(ValueError):
            leanpack.unpackb(data)
    else:
        try:
            assert leanpack.unpackb(data) == want
        except ValueError:
            assert (
                b"\xc7" in data
                or b"\xd4" in data
                or any(  # extension types: refused here
                    0xC7 <= b <= 0xC9 or 0xD4 <= b <= 0xD8 for b in data
                )
            )


@pytest.mark.parametrize(
    "data",
    [b"", b"\x92\x01", b"\x01\x02", b"\x81\x01\x02", b"\xc1", b"\xd4\x01\x00", b"\xdb\xff\xff"],
)
def test_truncated_trailing_and_refused_forms(data: bytes) -> None:
    with pytest.raises(ValueError):
        leanpack.unpackb(data)


def test_as_and_ah_import_no_msgpack() -> None:
    code = (
        "import sys\n"
        "from applikant.frontend import afclient\n"
        "from applikant.node import protocol\n"
        "assert protocol._packb.__module__ == 'applikant.node.leanpack', protocol._packb\n"
        "print(','.join(m for m in ('msgpack', 'datetime') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
