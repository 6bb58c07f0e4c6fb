"""Git smart HTTP, read-only: a plain ASGI app in front of `git upload-pack`.

    GET  /{owner}/{repo}(.git)/info/refs?service=git-upload-pack
    POST /{owner}/{repo}(.git)/git-upload-pack

Both run `git upload-pack --stateless-rpc` as a trio subprocess and stream:
the request body (gunzipped when the client sent `Content-Encoding: gzip`)
goes to the process's stdin chunk by chunk while its stdout goes out as the
response, so no pack is ever held in memory. Protocol v2 works by passing the
client's `Git-Protocol` header on as GIT_PROTOCOL, as git's http-backend does.

Who may read is not decided here: `authorize(owner, name, headers, client)`
returns the repository's canonical `owner/name` or raises `GitDenied` (401
with a Basic challenge, 404 when the repository does not exist or is hidden,
503 when am cannot answer). `git-receive-pack` is answered with an `ERR`
packet, which git prints as "remote error: ...": pushes go over SSH.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import trio

from ..logs import EventLog
from . import gitread

__all__ = ["GIT_PATH", "GitDenied", "GitHttp", "pkt_line"]

log = EventLog("aw.git")

GIT_PATH = re.compile(
    r"/(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/"
    r"(?P<action>info/refs|git-upload-pack|git-receive-pack)\Z"
)
CHUNK = 256 * 1024
#: Largest (decompressed) negotiation a client may send; real ones are far smaller.
MAX_REQUEST = 256 * 1024 * 1024
_PROTOCOL_OK = re.compile(r"[A-Za-z0-9=:._-]{1,256}\Z")
# am's name rules (manager/names.py), checked here too so that a path that can
# never name a repository is answered 404 without asking anyone.
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Authorize = Callable[[str, str, dict[str, str], str], Awaitable[str]]


class GitDenied(Exception):
    """Reading is refused; `status` and a message for the git client to show."""

    def __init__(self, status: int, message: str, challenge: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


class GitHttp:
    """The ASGI app for git paths; `matches(path)` says whether a path is one."""

    def __init__(self, repo_root: str, authorize: Authorize, realm: str = "Applikant") -> None:
        self.repo_root = repo_root
        self.authorize = authorize
        self.realm = realm

    @staticmethod
    def matches(path: str) -> bool:
        return GIT_PATH.match(path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = GIT_PATH.match(scope["path"])
        assert m is not None
        action, method = m["action"], scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        service = (query.get("service") or [""])[0]
        if action == "git-receive-pack" or service == "git-receive-pack":
            await self._refuse_push(send, action)
            return
        if action == "info/refs" and method not in ("GET", "HEAD"):
            await _text(send, 405, "use GET for info/refs\n")
            return
        if action == "git-upload-pack" and method != "POST":
            await _text(send, 405, "use POST for git-upload-pack\n")
            return
        if action == "info/refs" and service != "git-upload-pack":
            await _text(
                send,
                403,
                "this server speaks git's smart HTTP protocol only; use git 1.6.6 or newer\n",
            )
            return
        if (
            not (_NAME_OK.match(m["owner"]) and _NAME_OK.match(m["name"]))
            or ".." in m["owner"] + m["name"]
        ):
            await _text(send, 404, "repository not found\n")
            return
        client = (scope.get("client") or ("", 0))[0]
        try:
            full_name = await self.authorize(m["owner"], m["name"], headers, client)
            path = gitread.repo_path(self.repo_root, full_name)
        except GitDenied as exc:
            extra = (
                [(b"www-authenticate", f'Basic realm="{self.realm}"'.encode())]
                if exc.challenge
                else []
            )
            await _text(send, exc.status, exc.message + "\n", extra)
            return
        except ValueError:
            await _text(send, 404, "repository not found\n")
            return
        env = gitread.git_env()
        protocol = headers.get("git-protocol", "")
        if protocol and _PROTOCOL_OK.match(protocol):
            env["GIT_PROTOCOL"] = protocol
        if action == "info/refs":
            await self._advertise(send, path, env, protocol)
        else:
            ctype = headers.get("content-type", "")
            if ctype != "application/x-git-upload-pack-request":
                await _text(
                    send, 415, "expected Content-Type application/x-git-upload-pack-request\n"
                )
                return
            encoding = headers.get("content-encoding", "").lower()
            if encoding not in ("", "identity", "gzip", "x-gzip"):
                await _text(send, 415, f"unsupported Content-Encoding {encoding[:40]}\n")
                return
            await self._upload_pack(
                receive, send, path, env, gzip=encoding in ("gzip", "x-gzip"), full_name=full_name
            )

    async def _refuse_push(self, send: Send, action: str) -> None:
        message = (
            "ERR pushes are not accepted over HTTP; push over SSH instead "
            "(see the repository page for its SSH URL)"
        )
        if action == "info/refs":
            body = pkt_line("# service=git-receive-pack\n") + b"0000" + pkt_line(message + "\n")
            await _send_all(send, 200, body, "application/x-git-receive-pack-advertisement")
        else:
            await _text(send, 403, message[4:] + "\n")

    async def _advertise(self, send: Send, path: str, env: dict[str, str], protocol: str) -> None:
        argv = ["git", "upload-pack", "--stateless-rpc", "--advertise-refs", path]
        # Protocol v2 starts with the capability advertisement, v0 with the service line.
        head = b"" if "version=2" in protocol else pkt_line("# service=git-upload-pack\n") + b"0000"
        await self._run(
            argv,
            env,
            None,
            send,
            "application/x-git-upload-pack-advertisement",
            head,
            full_name=path,
        )

    async def _upload_pack(
        self,
        receive: Receive,
        send: Send,
        path: str,
        env: dict[str, str],
        gzip: bool,
        full_name: str,
    ) -> None:
        argv = ["git", "upload-pack", "--stateless-rpc", path]
        await self._run(
            argv,
            env,
            (receive, gzip),
            send,
            "application/x-git-upload-pack-result",
            b"",
            full_name=full_name,
        )

    async def _run(
        self,
        argv: list[str],
        env: dict[str, str],
        body: tuple[Receive, bool] | None,
        send: Send,
        content_type: str,
        head: bytes,
        full_name: str,
    ) -> None:
        proc = await trio.lowlevel.open_process(
            argv, stdin=-1 if body else -3, stdout=-1, stderr=-1, env=env
        )
        errors = bytearray()
        state = {"too_large": False}
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, proc.stderr, errors)
                if body is not None:
                    nursery.start_soon(_feed, body[0], proc.stdin, body[1], proc, state)
                assert proc.stdout is not None
                first = await proc.stdout.receive_some(CHUNK)
                if not first:
                    await proc.wait()
                    if state["too_large"]:
                        await _text(send, 413, "request too large\n")
                        return
                    if proc.returncode != 0:
                        log.warning(
                            "upload_pack_failed",
                            repo=full_name,
                            code=proc.returncode,
                            stderr=bytes(errors[:400]).decode("utf-8", "replace"),
                        )
                        await _text(send, 500, "git upload-pack failed on the server\n")
                        return
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", content_type.encode()),
                            (b"cache-control", b"no-cache, max-age=0, must-revalidate"),
                            (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"),
                            (b"pragma", b"no-cache"),
                        ],
                    }
                )
                chunk: bytes | bytearray = head + first
                while chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    chunk = await proc.stdout.receive_some(CHUNK)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if proc.returncode is None:
                proc.kill()
            with trio.CancelScope(shield=True):
                await proc.wait()


async def _drain(stream: Any, into: bytearray) -> None:
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        if len(into) < 65536:
            into += chunk


async def _feed(
    receive: Receive, stdin: Any, gzip: bool, proc: Any, state: dict[str, bool]
) -> None:
    """Copy the request body into upload-pack's stdin, gunzipping on the way."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    total = 0
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                proc.kill()
                return
            data = message.get("body", b"")
            if inflate is not None and data:
                while data:
                    out = inflate.decompress(data, CHUNK)
                    total += len(out)
                    if total > MAX_REQUEST:
                        break
                    await stdin.send_all(out)
                    data = inflate.unconsumed_tail
            elif data:
                total += len(data)
                if total <= MAX_REQUEST:
                    await stdin.send_all(data)
            if total > MAX_REQUEST:
                state["too_large"] = True
                proc.kill()
                return
            if not message.get("more_body", False):
                break
        await stdin.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        # upload-pack stopped reading (it answered or failed): its output says which.
        return
    except zlib.error:
        proc.kill()


async def _send_all(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-cache"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _text(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    await _send_all(send, status, text.encode(), "text/plain; charset=utf-8", extra)
