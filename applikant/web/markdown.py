"""Markdown as people write it on forges (GitHub-flavoured), rendered safely.

- GFM: tables, strikethrough, autolinks (linkify), task lists (disabled
  checkboxes), fenced code highlighted by `highlight.block`, heading anchors.
- Raw HTML is never passed through (it is shown as text), and links are
  validated by markdown-it: no `javascript:`, `vbscript:`, `file:`, nor `data:`
  except for images.
- Heading ids carry a `user-content-` prefix (as on GitHub), so a README
  heading cannot take the id of one of the page's own elements; links to
  `#section` inside the document are rewritten to match.
- With a `Base` (the repository, the ref and the file's directory), relative
  links and images resolve against that directory: images through the raw
  endpoint, links through the file and tree views. `/x` means the repository's
  root, and a path that climbs out of it (`../../..`) goes nowhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.anchors.index import slugify
from mdit_py_plugins.tasklists import tasklists_plugin

from . import highlight
from .lru import Lru

__all__ = ["PREFIX", "Base", "is_markdown", "render"]

PREFIX = "user-content-"
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_EXTENSIONS = (".md", ".markdown", ".mdown", ".mkd")


@dataclass(frozen=True)
class Base:
    """Where a document lives: `/{repo}/...?ref={ref}`, in directory `directory`."""

    repo: str
    ref: str
    directory: str = ""


def is_markdown(path: str) -> bool:
    return path.lower().endswith(_EXTENSIONS)


def _fence(content: str, lang: str, _attrs: object) -> str:
    body = highlight.block(content, lang)
    if not body:
        return ""  # markdown-it escapes and wraps it itself
    language = quote(lang.strip()[:40], safe="")
    return f'<pre class="hl"><code class="language-{language}">{body}</code></pre>\n'


def _make() -> MarkdownIt:
    md = MarkdownIt("gfm-like", {"html": False, "linkify": True, "highlight": _fence})
    md.use(tasklists_plugin)
    md.use(
        anchors_plugin,
        min_level=1,
        max_level=6,
        slug_func=lambda text: PREFIX + slugify(text),
        permalink=True,
        permalinkSymbol="#",
        permalinkBefore=True,
    )
    return md


_md = _make()


def _target(url: str, base: Base, image: bool) -> str:
    """Where a relative `url` of a document at `base` points (see the module docstring)."""
    if url.startswith("#"):
        return "#" + PREFIX + url[1:] if len(url) > 1 and not url.startswith("#" + PREFIX) else url
    if not url or _SCHEME.match(url) or url.startswith("//"):
        return url
    path, hash_, fragment = url.partition("#")
    path = path.partition("?")[0]
    if not path:
        return url
    is_dir = path.endswith("/")
    parts: list[str] = [] if path.startswith("/") else base.directory.split("/")
    resolved_parts: list[str] = []
    for part in [*parts, *path.split("/")]:
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved_parts:
                return "#"  # out of the repository: nowhere to go
            resolved_parts.pop()
        else:
            resolved_parts.append(part)
    resolved = "/".join(resolved_parts)
    ref = quote(base.ref, safe="")
    where = quote(resolved, safe="/")
    if image:
        return f"/{base.repo}/raw?ref={ref}&path={where}"
    view = "tree" if is_dir or not resolved else "blob"
    anchor = f"#{PREFIX}{fragment}" if hash_ and fragment else ""
    return f"/{base.repo}/{view}?ref={ref}&path={where}{anchor}"


def _rewrite(tokens: list[Token], base: Base | None) -> None:
    for token in tokens:
        if token.children:
            _rewrite(token.children, base)
        if token.type == "link_open":
            href = str(token.attrGet("href") or "")
            if token.attrGet("class") == "header-anchor":
                continue
            if base is None:
                if href.startswith("#") and len(href) > 1 and not href.startswith("#" + PREFIX):
                    token.attrSet("href", "#" + PREFIX + href[1:])
                continue
            token.attrSet("href", _target(href, base, image=False))
        elif token.type == "image" and base is not None:
            token.attrSet("src", _target(str(token.attrGet("src") or ""), base, image=True))
            token.attrSet("loading", "lazy")


_cache: Lru[tuple[str, Base | None], str] = Lru(16 * 1024 * 1024)


def render(text: str, base: Base | None = None, key: str = "") -> str:
    """HTML for the Markdown `text` (see the module docstring); cached under `key`
    (the blob's id: the same text at the same place renders the same)."""
    if key:
        found = _cache.get((key, base))
        if found is not None:
            return found
    env: dict[str, Any] = {}
    tokens = _md.parse(text, env)
    _rewrite(tokens, base)
    html = str(_md.renderer.render(tokens, _md.options, env))
    if key:
        _cache.put((key, base), html, len(html) + 64)
    return html
