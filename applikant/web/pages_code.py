"""The code browser: a repository's summary, directories, files, raw files,
blame and archives.

    /{owner}/{name}                          summary: clone URLs, root tree, README
    /{owner}/{name}/tree?ref=&path=          a directory, with the last commit of each entry
    /{owner}/{name}/blob?ref=&path=          a file: highlighted with line links, images
                                             shown, Markdown rendered (&plain=1: source)
    /{owner}/{name}/raw?ref=&path=           the file as it is (&download=1: as an attachment)
    /{owner}/{name}/blame?ref=&path=         who last changed each line
    /{owner}/{name}/archive/{ref}.zip        the tree of a ref (.zip, .tar.gz), streamed

Refs and paths come in the query string (a branch name may hold slashes); both
are checked by gitread before git runs. Every route opens the repository
through `repoview.open_repo`, so one the viewer may not read is a 404 here
too. Raw files are served so that nothing in a repository runs in our origin:
text as text/plain, images as images, everything else as a download, always
with `nosniff` and a sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from . import blame as blame_mod
from . import gitread, highlight
from .markdown import Base, is_markdown
from .render import markdown, render
from .repoview import RepoContext, at_ref, open_repo
from .rows import tree_rows
from .together import gather

__all__ = ["routes"]

IMAGES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".ico": "image/x-icon",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
}
RAW_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
README_LIMIT = 256 * 1024


def _crumbs(subpath: str) -> list[tuple[str, str]]:
    parts = subpath.split("/") if subpath else []
    return [(p, "/".join(parts[: i + 1])) for i, p in enumerate(parts)]


def image_type(path: str) -> str:
    dot = path.rfind(".")
    return IMAGES.get(path[dot:].lower(), "") if dot >= 0 else ""


def _query_path(request: Request) -> str:
    return gitread.check_path(request.query_params.get("path", ""))


def _base_context(
    ctx: RepoContext, ref: str, commit: str | None, refs: list[gitread.Ref], subpath: str
) -> dict[str, Any]:
    return ctx.context(
        refs=refs,
        ref=ref,
        commit=commit,
        subpath=subpath,
        crumbs=_crumbs(subpath),
        parent=subpath.rpartition("/")[0],
        http_url=ctx.web.site.http_clone(ctx.full_name),
        ssh_url=ctx.web.site.ssh_clone(ctx.full_name),
    )


# ---- directories ------------------------------------------------------------------


async def repo_home(request: Request) -> Response:
    return await _tree(request, home=True)


async def repo_tree(request: Request) -> Response:
    return await _tree(request, home=False)


async def _tree(request: Request, home: bool) -> Response:
    ctx = await open_repo(request)
    subpath = "" if home else _query_path(request)
    ref, commit, refs = await at_ref(ctx, request.query_params.get("ref", ""), with_refs=True)
    context = _base_context(ctx, ref, commit, refs, subpath)
    context.update(entries=[], last={}, latest=None, readme_html="", readme_text="", readme=None)
    context["rows"] = ""
    context.update(view="tree", home=home, tab="code")
    if commit is None:
        return render(request, "repo.html", **context)
    try:
        listing = await gitread.directory(ctx.git, commit, subpath, 10 if home else 1, README_LIMIT)
    except gitread.GitReadError as exc:
        if exc.status == 404 and subpath:
            found = await gitread.read_object(ctx.git, f"{commit}:{subpath}", 0)
            if found is not None and found[1] == "blob":
                return RedirectResponse(f"/{ctx.full_name}/blob?{request.url.query}", 302)
        raise
    entries, latest, last, readme = (
        listing.entries,
        listing.latest,
        listing.last,
        listing.readme,
    )
    context.update(entries=entries, last=last, latest=latest[0] if latest else None)
    context["rows"] = tree_rows(ctx.full_name, ref, entries, last, commit=commit, subpath=subpath)
    context["commits"] = latest
    if readme is not None and not readme.binary:
        blob = readme
        context["readme"] = blob
        if is_markdown(blob.path):
            context["readme_html"] = markdown(
                blob.text(), Base(ctx.full_name, ref, subpath), key=blob.id
            )
        else:
            context["readme_text"] = blob.text()
    return render(request, "repo.html", **context)


# ---- files ------------------------------------------------------------------------


async def repo_blob(request: Request) -> Response:
    ctx = await open_repo(request)
    subpath = _query_path(request)
    ref, commit, refs = await at_ref(ctx, request.query_params.get("ref", ""), with_refs=True)
    if commit is None:
        raise gitread.GitReadError(404, "this repository is empty")
    if not subpath:
        return RedirectResponse(f"/{ctx.full_name}/tree?ref={quote(ref, safe='')}", 302)
    found, latest = await gather(
        lambda: gitread.read_object(ctx.git, f"{commit}:{subpath}", gitread.BLOB_LIMIT),
        lambda: gitread.log(ctx.git, commit, 1, subpath),
    )
    if found is not None and found[1] == "tree":
        return RedirectResponse(f"/{ctx.full_name}/tree?{request.url.query}", status_code=302)
    if found is None or found[1] != "blob":
        raise gitread.GitReadError(404, f"no file {subpath!r} at this commit")
    oid, _kind, size, data = found
    blob = gitread.Blob(subpath, size, data, size > len(data), oid)
    context = _base_context(ctx, ref, commit, refs, subpath)
    plain = request.query_params.get("plain") == "1"
    context.update(
        blob=blob,
        latest=latest[0] if latest else None,
        image=image_type(subpath),
        line_count=0,
        rows="",
        rendered="",
        markdown_file=is_markdown(subpath),
        plain=plain,
        view="blob",
        tab="code",
    )
    if not blob.binary and not context["image"]:
        text = blob.text()
        if context["markdown_file"] and not plain:
            directory = subpath.rpartition("/")[0]
            context["rendered"] = markdown(text, Base(ctx.full_name, ref, directory), key=oid)
        else:
            key = oid if not blob.truncated else ""
            context["line_count"], context["rows"] = highlight.code_rows(text, subpath, key=key)
    return render(request, "blob.html", **context)


async def repo_raw(request: Request) -> Response:
    """The file as stored, streamed: see the module docstring for how it is served."""
    ctx = await open_repo(request)
    subpath = _query_path(request)
    ref = request.query_params.get("ref", "")
    _ref, commit, _ = await at_ref(ctx, ref)
    if commit is None or not subpath:
        raise gitread.GitReadError(404, "no such file")
    head = await gitread.read_object(ctx.git, f"{commit}:{subpath}", 8000)
    if head is None or head[1] != "blob":
        raise gitread.GitReadError(404, f"no file {subpath!r} at this commit")
    oid, _kind, size, start = head
    etag = f'"{oid}"'
    cache = (
        "private, max-age=31536000, immutable" if gitread.immutable(ref) else "private, no-cache"
    )
    headers = {"etag": etag, "cache-control": cache, "content-security-policy": RAW_POLICY}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    name = subpath.rpartition("/")[2]
    image = image_type(subpath)
    if image:
        media = image
    elif b"\x00" not in start:
        media = "text/plain; charset=utf-8"
    else:
        media = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if not media.startswith(("image/", "audio/", "video/", "application/pdf")):
            media = "application/octet-stream"
    attach = request.query_params.get("download") == "1" or media == "application/octet-stream"
    disposition = "attachment" if attach else "inline"
    headers["content-disposition"] = f"{disposition}; filename*=UTF-8''{quote(name, safe='')}"
    headers["content-length"] = str(size)
    return StreamingResponse(
        gitread.stream(ctx.git, "cat-file", "blob", oid), media_type=media, headers=headers
    )


async def repo_blame(request: Request) -> Response:
    ctx = await open_repo(request)
    subpath = _query_path(request)
    ref, commit, refs = await at_ref(ctx, request.query_params.get("ref", ""), with_refs=True)
    if commit is None or not subpath:
        raise gitread.GitReadError(404, "no such file")
    chunks = await blame_mod.blame(ctx.git, commit, subpath)
    text = "\n".join(line for chunk in chunks for line in chunk.lines)
    binary = "\x00" in text[:8000]
    lines = [] if binary else highlight.lines(text, subpath, key=f"blame:{commit}:{subpath}")
    rows = []
    index = 0
    for chunk in chunks:
        for offset, _line in enumerate(chunk.lines):
            html = lines[index] if index < len(lines) else ""
            rows.append((chunk if offset == 0 else None, chunk.start + offset, html, chunk))
            index += 1
    context = _base_context(ctx, ref, commit, refs, subpath)
    context.update(rows=rows, binary=binary, view="blame", tab="code")
    return render(request, "blame.html", **context)


# ---- archives ---------------------------------------------------------------------

FORMATS = {".zip": ("zip", "application/zip"), ".tar.gz": ("tar.gz", "application/gzip")}


async def repo_archive(request: Request) -> Response:
    ctx = await open_repo(request)
    spec = request.path_params["spec"]
    suffix = next((s for s in FORMATS if spec.endswith(s) and len(spec) > len(s)), "")
    if not suffix:
        raise HTTPException(404, "archives are .zip or .tar.gz, e.g. archive/main.zip")
    ref = spec[: -len(suffix)]
    fmt, media = FORMATS[suffix]
    _ref, commit, _ = await at_ref(ctx, ref)
    if commit is None:
        raise gitread.GitReadError(404, "this repository is empty")
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip("-") or "archive"
    stem = f"{ctx.repo['name']}-{label}"
    headers = {
        "content-disposition": f"attachment; filename*=UTF-8''{quote(stem + suffix, safe='')}",
        "cache-control": "private, no-cache",
    }
    body = gitread.stream(ctx.git, "archive", f"--format={fmt}", f"--prefix={stem}/", commit)
    return StreamingResponse(body, media_type=media, headers=headers)


def routes() -> list[Route]:
    return [
        Route("/{owner}/{name}", repo_home, methods=["GET"]),
        Route("/{owner}/{name}/tree", repo_tree, methods=["GET"]),
        Route("/{owner}/{name}/blob", repo_blob, methods=["GET"]),
        Route("/{owner}/{name}/raw", repo_raw, methods=["GET"]),
        Route("/{owner}/{name}/blame", repo_blame, methods=["GET"]),
        Route("/{owner}/{name}/archive/{spec:path}", repo_archive, methods=["GET"]),
    ]
