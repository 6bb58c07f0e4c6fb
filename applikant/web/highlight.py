"""Syntax highlighting with Pygments, one line at a time for line-numbered views.

`lines(text, filename)` returns the highlighted lines of a file as Markup, each
one balanced on its own (Pygments closes and reopens its spans at every line
break), so a page can put every line in its own table row with a number and an
anchor. Files longer than `MAX_CHARS` or with lines longer than `MAX_LINE`, and
files no lexer claims by name, come back escaped but not coloured: a huge or
minified file costs no more than its escaping. Results are cached by the
caller's key (a blob id is immutable), so a file viewed twice is highlighted once.

`css()` is the stylesheet for the token classes: a light style, and a dark one
under `prefers-color-scheme: dark`.
"""

from __future__ import annotations

import functools
import html

from markupsafe import Markup
from pygments import highlight as _pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.util import ClassNotFound

from .lru import Lru

__all__ = ["MAX_CHARS", "block", "code_rows", "css", "lexer_for", "lines"]

MAX_CHARS = 512 * 1024
MAX_LINE = 5000
_FORMATTER = HtmlFormatter(nowrap=True)
_cache: Lru[tuple[str, str], list[Markup]] = Lru(max_cost=64 * 1024 * 1024)
# Names that Pygments does not know by extension but people expect coloured.
_EXTRA = {"Makefile": "make", "Dockerfile": "docker", "Containerfile": "docker"}


@functools.lru_cache(maxsize=512)
def _lexer_by_filename(name: str) -> Lexer | None:
    try:
        if name in _EXTRA:
            return get_lexer_by_name(_EXTRA[name], stripnl=False, ensurenl=False)
        return get_lexer_for_filename(name, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


@functools.lru_cache(maxsize=256)
def _lexer_by_language(lang: str) -> Lexer | None:
    try:
        return get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def lexer_for(filename: str = "", language: str = "") -> Lexer | None:
    """The lexer for a fenced block's language or a file's name; None for plain text."""
    if language:
        return _lexer_by_language(language.strip().lower()[:40])
    return _lexer_by_filename(filename.rpartition("/")[2][:255])


def _plain(text: str) -> list[Markup]:
    return [Markup(html.escape(line, quote=False)) for line in text.split("\n")]


def _split(text: str, lexer: Lexer | None) -> list[Markup]:
    if lexer is None or len(text) > MAX_CHARS or any(len(s) > MAX_LINE for s in text.split("\n")):
        return _plain(text)
    out = _pygments_highlight(text, lexer, _FORMATTER)
    if out.endswith("\n") and not text.endswith("\n"):
        out = out[:-1]
    return [Markup(line) for line in out.split("\n")]


def lines(text: str, filename: str = "", *, key: str = "") -> list[Markup]:
    """The lines of `text` (split on "\\n", a final newline ends the last line),
    highlighted for `filename`; cached under `key` when one is given."""
    if text.endswith("\n"):
        text = text[:-1]
    if key:
        found = _cache.get((key, filename))
        if found is not None:
            return found
    result = _split(text, lexer_for(filename))
    if key:
        _cache.put((key, filename), result, cost=len(text) * 2 + 64)
    return result


_rows_cache: Lru[tuple[str, str], Markup] = Lru(max_cost=64 * 1024 * 1024)


def code_rows(text: str, filename: str = "", *, key: str = "") -> tuple[int, Markup]:
    """(line count, the table rows of a line-numbered file view): each row `L<n>`
    with its number as a link. Built here rather than in a template loop: a file
    of thousands of lines is one string join; cached under `key`."""
    if key:
        found = _rows_cache.get((key, filename))
        if found is not None:
            return found.count("<tr "), found
    highlighted = lines(text, filename, key=key)
    rows = Markup("").join(
        Markup(
            '<tr id="L{0}"><td class="ln"><a href="#L{0}">{0}</a></td><td class="src">{1}</td></tr>\n'
        ).format(n, line)
        for n, line in enumerate(highlighted, 1)
    )
    if key:
        _rows_cache.put((key, filename), rows, len(rows) + 64)
    return len(highlighted), rows


def block(text: str, language: str) -> str:
    """A fenced code block's inside, highlighted ('' when the language is unknown)."""
    lexer = lexer_for(language=language) if language else None
    if lexer is None or len(text) > MAX_CHARS:
        return ""
    return str(_pygments_highlight(text, lexer, _FORMATTER))


@functools.lru_cache(maxsize=1)
def css() -> str:
    """Token colours: light by default, dark when the reader's system asks for it."""
    # Only the token rules: backgrounds and line numbers follow the page's own theme.
    light, dark = (
        "\n".join(
            rule
            for rule in HtmlFormatter(style=style).get_style_defs(".hl").splitlines()
            if rule.startswith(".hl .")
        )
        for style in ("default", "github-dark")
    )
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"
