"""The config file without ``tomllib``, for ``as``, ``ah`` and ``keys-for``.

``import tomllib`` costs about 9 ms here (it pulls in ``re``, ``string``,
``typing`` and ``datetime``): a third of what ``ah`` spends on a push, paid by
``as`` and each hook of every push. Applikant's config files (the documented
example, ``applikant init``'s) use a small part of TOML: tables (``[a]``,
``[a.b]``), and ``key = value`` lines whose values are plain strings, integers,
floats and booleans, with comments. :func:`parse` reads exactly that part.

Guarantee: :func:`parse` returns either ``None`` or what ``tomllib.loads``
returns for the same text. Anything it does not fully understand (an escape in
a string, an array, an inline table, a multi-line string, a duplicate key, a
number with ``_``, a date...) gives ``None``, and the caller falls back to
``tomllib``, which parses it or reports the error. No ``re``, no imports.
"""

from __future__ import annotations

__all__ = ["parse"]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_DIGITS = frozenset("0123456789")


def _bare(key: str) -> bool:
    return bool(key) and all(c in _BARE for c in key)


def _value(text: str) -> tuple[bool, object]:
    """(understood, value) for the text after ``=`` (comment included)."""
    text = text.strip(" \t")
    if not text:
        return False, None
    q = text[0]
    if q == "{":  # only the empty inline table; others go to tomllib
        rest = text[1:].lstrip(" \t")
        if rest.startswith("}") and (
            not rest[1:].strip(" \t") or rest[1:].strip(" \t").startswith("#")
        ):
            return True, {}
        return False, None
    if q == "[":
        # A one-line array of plain values; anything subtler (a quoted comma or
        # bracket, nesting, several lines) fails an item below and goes to tomllib.
        close = text.find("]")
        rest = text[close + 1 :].strip(" \t") if close >= 0 else "x"
        if close < 0 or (rest and not rest.startswith("#")):
            return False, None
        items = [item.strip(" \t") for item in text[1:close].split(",")]
        if items and not items[-1]:
            items.pop()  # a trailing comma
        values = []
        for item in items:
            understood, value = _value(item)
            if not understood or isinstance(value, list):
                return False, None
            values.append(value)
        return True, values
    if q in "\"'":
        end = text.find(q, 1)
        if end < 0:
            return False, None
        body, rest = text[1:end], text[end + 1 :].strip(" \t")
        if rest and not rest.startswith("#"):
            return False, None
        if text.startswith(q * 3) or (q == '"' and "\\" in body):
            return False, None  # multi-line strings and escapes: tomllib's job
        if any((c < " " and c != "\t") or c == "\x7f" for c in body):
            return False, None
        return True, body
    hash_at = text.find("#")
    word = (text if hash_at < 0 else text[:hash_at]).strip(" \t")
    if word == "true":
        return True, True
    if word == "false":
        return True, False
    sign = (word[:1] in "+-" and word[:1]) or ""
    digits = word[len(sign) :]
    if digits and all(c in _DIGITS for c in digits):
        if len(digits) > 1 and digits[0] == "0":
            return False, None  # leading zeros are an error in TOML
        return True, int(word)
    int_part, dot, frac = digits.partition(".")
    if dot and int_part and frac and all(c in _DIGITS for c in int_part + frac):
        if len(int_part) > 1 and int_part[0] == "0":
            return False, None
        return True, float(word)
    return False, None


def parse(text: str) -> dict | None:
    """The document as nested dicts, or ``None`` when it leaves the simple subset."""
    root: dict = {}
    table = root
    defined: set[tuple[str, ...]] = set()
    for raw_line in text.split("\n"):
        line = raw_line.rstrip("\r").strip(" \t")
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            if line.startswith("[["):
                return None
            end = line.find("]")
            rest = line[end + 1 :].strip(" \t") if end > 0 else "x"
            if rest and not rest.startswith("#"):
                return None
            parts = tuple(p.strip(" \t") for p in line[1:end].split("."))
            if not all(_bare(p) for p in parts) or parts in defined:
                return None
            defined.add(parts)
            table = root
            for part in parts:
                child = table.setdefault(part, {})
                if not isinstance(child, dict):
                    return None
                table = child
            continue
        key, eq, value_text = line.partition("=")
        key = key.strip(" \t")
        if not eq or not _bare(key) or key in table:
            return None
        ok, value = _value(value_text)
        if not ok:
            return None
        table[key] = value
    return root
