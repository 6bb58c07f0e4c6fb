"""msgpack in pure Python, for the ephemeral path only (`as`, `ah`).

Importing the msgpack package costs about 7 ms of CPU (it pulls in `datetime`
and `collections` for its extension types): a third of what `as` may spend on a
whole `git fetch`. Its messages are a handful of small maps, which this encodes
and decodes in microseconds. Same bytes as `msgpack.packb(obj, use_bin_type=True)`
and the same values as `msgpack.unpackb(data, raw=False, strict_map_key=True)`
for the types the node layer sends (None, bool, int, float, str, bytes, list,
tuple, dict); extension types are refused. Tested against msgpack itself
(tests/node/test_leanpack.py). The daemons and the CLI use msgpack (lean.codec).
"""

from __future__ import annotations

from _struct import Struct  # struct.py only re-exports _struct: a module less for as
from _struct import error as StructError  # type: ignore[attr-defined]  # (not in typeshed)

TYPE_CHECKING = False  # typing itself is not imported: `as` and `ah` start faster without it
if TYPE_CHECKING:
    from typing import Any

_B = Struct(">B")
_H = Struct(">H")
_I = Struct(">I")
_Q = Struct(">Q")
_b = Struct(">b")
_h = Struct(">h")
_i = Struct(">i")
_q = Struct(">q")
_f = Struct(">f")
_d = Struct(">d")


def packb(obj: Any) -> bytes:
    """`obj` as msgpack bytes; TypeError or OverflowError if it cannot be."""
    out: list[bytes] = []
    _pack(obj, out.append)
    return b"".join(out)


def _pack(obj: Any, put: Any) -> None:
    t = type(obj)
    if obj is None:
        put(b"\xc0")
    elif t is bool:
        put(b"\xc3" if obj else b"\xc2")
    elif t is int:
        if 0 <= obj < 0x80:
            put(_B.pack(obj))
        elif -32 <= obj < 0:
            put(_b.pack(obj))
        elif obj >= 0:
            if obj <= 0xFF:
                put(b"\xcc" + _B.pack(obj))
            elif obj <= 0xFFFF:
                put(b"\xcd" + _H.pack(obj))
            elif obj <= 0xFFFFFFFF:
                put(b"\xce" + _I.pack(obj))
            elif obj <= 0xFFFFFFFFFFFFFFFF:
                put(b"\xcf" + _Q.pack(obj))
            else:
                raise OverflowError("int too big to pack")
        elif obj >= -0x80:
            put(b"\xd0" + _b.pack(obj))
        elif obj >= -0x8000:
            put(b"\xd1" + _h.pack(obj))
        elif obj >= -0x80000000:
            put(b"\xd2" + _i.pack(obj))
        elif obj >= -0x8000000000000000:
            put(b"\xd3" + _q.pack(obj))
        else:
            raise OverflowError("int too small to pack")
    elif t is float:
        put(b"\xcb" + _d.pack(obj))
    elif t is str:
        data = obj.encode()
        n = len(data)
        if n < 32:
            put(_B.pack(0xA0 | n))
        elif n <= 0xFF:
            put(b"\xd9" + _B.pack(n))
        elif n <= 0xFFFF:
            put(b"\xda" + _H.pack(n))
        else:
            put(b"\xdb" + _I.pack(n))
        put(data)
    elif t is bytes or t is bytearray or t is memoryview:
        data = bytes(obj)
        n = len(data)
        if n <= 0xFF:
            put(b"\xc4" + _B.pack(n))
        elif n <= 0xFFFF:
            put(b"\xc5" + _H.pack(n))
        else:
            put(b"\xc6" + _I.pack(n))
        put(data)
    elif t is list or t is tuple:
        n = len(obj)
        put(
            _B.pack(0x90 | n)
            if n < 16
            else b"\xdc" + _H.pack(n)
            if n <= 0xFFFF
            else b"\xdd" + _I.pack(n)
        )
        for item in obj:
            _pack(item, put)
    elif t is dict:
        n = len(obj)
        put(
            _B.pack(0x80 | n)
            if n < 16
            else b"\xde" + _H.pack(n)
            if n <= 0xFFFF
            else b"\xdf" + _I.pack(n)
        )
        for key, value in obj.items():
            _pack(key, put)
            _pack(value, put)
    else:
        bases: tuple[Any, ...] = (int, float, str, bytes, list, tuple, dict)
        for base in bases:  # subclasses (an IntEnum, a str subclass), as msgpack takes them
            if isinstance(obj, base):
                _pack(base(obj), put)
                return
        raise TypeError(f"can not serialize {t.__name__!r} object")


def unpackb(data: Any) -> Any:
    """The one object in `data`; ValueError if it is malformed, truncated, has
    data after it, a map key that is not str or bytes, or an extension type."""
    buf = bytes(data)
    try:
        obj, end = _unpack(buf, 0)
    except (IndexError, StructError) as exc:
        raise ValueError("truncated msgpack data") from exc
    if end != len(buf):
        raise ValueError("extra data after the msgpack object")
    return obj


def _unpack(buf: bytes, pos: int) -> tuple[Any, int]:
    b = buf[pos]
    pos += 1
    if b < 0x80:
        return b, pos
    if b >= 0xE0:
        return b - 0x100, pos
    if 0xA0 <= b <= 0xBF:
        return _str(buf, pos, b & 0x1F)
    if 0x90 <= b <= 0x9F:
        return _array(buf, pos, b & 0x0F)
    if 0x80 <= b <= 0x8F:
        return _map(buf, pos, b & 0x0F)
    if b == 0xC0:
        return None, pos
    if b == 0xC2:
        return False, pos
    if b == 0xC3:
        return True, pos
    if b == 0xCC:
        return buf[pos], pos + 1
    if b == 0xCD:
        return _H.unpack_from(buf, pos)[0], pos + 2
    if b == 0xCE:
        return _I.unpack_from(buf, pos)[0], pos + 4
    if b == 0xCF:
        return _Q.unpack_from(buf, pos)[0], pos + 8
    if b == 0xD0:
        return _b.unpack_from(buf, pos)[0], pos + 1
    if b == 0xD1:
        return _h.unpack_from(buf, pos)[0], pos + 2
    if b == 0xD2:
        return _i.unpack_from(buf, pos)[0], pos + 4
    if b == 0xD3:
        return _q.unpack_from(buf, pos)[0], pos + 8
    if b == 0xCA:
        return _f.unpack_from(buf, pos)[0], pos + 4
    if b == 0xCB:
        return _d.unpack_from(buf, pos)[0], pos + 8
    if b == 0xD9:
        return _str(buf, pos + 1, buf[pos])
    if b == 0xDA:
        return _str(buf, pos + 2, _H.unpack_from(buf, pos)[0])
    if b == 0xDB:
        return _str(buf, pos + 4, _I.unpack_from(buf, pos)[0])
    if b == 0xC4:
        return _bin(buf, pos + 1, buf[pos])
    if b == 0xC5:
        return _bin(buf, pos + 2, _H.unpack_from(buf, pos)[0])
    if b == 0xC6:
        return _bin(buf, pos + 4, _I.unpack_from(buf, pos)[0])
    if b == 0xDC:
        return _array(buf, pos + 2, _H.unpack_from(buf, pos)[0])
    if b == 0xDD:
        return _array(buf, pos + 4, _I.unpack_from(buf, pos)[0])
    if b == 0xDE:
        return _map(buf, pos + 2, _H.unpack_from(buf, pos)[0])
    if b == 0xDF:
        return _map(buf, pos + 4, _I.unpack_from(buf, pos)[0])
    raise ValueError(f"msgpack byte 0x{b:02x} is not supported here")


def _str(buf: bytes, pos: int, n: int) -> tuple[str, int]:
    end = pos + n
    if end > len(buf):
        raise ValueError("truncated msgpack data")
    return buf[pos:end].decode(), end


def _bin(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    end = pos + n
    if end > len(buf):
        raise ValueError("truncated msgpack data")
    return buf[pos:end], end


def _array(buf: bytes, pos: int, n: int) -> tuple[list[Any], int]:
    if n > len(buf) - pos:  # each item takes a byte at least
        raise ValueError("truncated msgpack data")
    out = []
    for _ in range(n):
        item, pos = _unpack(buf, pos)
        out.append(item)
    return out, pos


def _map(buf: bytes, pos: int, n: int) -> tuple[dict[Any, Any], int]:
    if 2 * n > len(buf) - pos:
        raise ValueError("truncated msgpack data")
    out = {}
    for _ in range(n):
        key, pos = _unpack(buf, pos)
        if type(key) is not str and type(key) is not bytes:
            raise ValueError(f"{type(key).__name__} is not allowed for map key")
        out[key], pos = _unpack(buf, pos)
    return out, pos
