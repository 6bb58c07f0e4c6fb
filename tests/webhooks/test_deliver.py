"""One attempt against a real receiver on loopback: headers, signature, and
every way a receiver can fail."""

from __future__ import annotations

import json
from functools import partial

import httpx
import pytest
import trio

from applikant.webhooks import (
    USER_AGENT,
    DeliverySettings,
    Outcome,
    PendingDelivery,
    attempt,
    encode_body,
    make_client,
    verify,
)

from .receiver import SECRET, free_port, start_receiver

PAYLOAD = {"event": "push", "repo": "alice/demo", "ref": "refs/heads/main", "note": "ümlaut"}


def delivery(
    url: str, *, attempts: int = 0, event: str = "push", secret: str = SECRET
) -> PendingDelivery:
    return PendingDelivery(
        id="5f0c8f7e-6a55-4d4b-a6f1-1d7b5c0b9c11",
        hook_id="hook-1",
        url=url,
        secret=secret,
        event=event,
        body=encode_body(PAYLOAD),
        attempts=attempts,
    )


async def test_headers_signature_and_body(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client() as client:
        result = await attempt(client, delivery(receiver.url("/ok"), attempts=2))
    assert result.outcome is Outcome.DELIVERED and result.ok
    assert (result.number, result.status_code, result.response) == (3, 200, "thanks")
    assert result.duration >= 0
    [seen] = receiver.seen
    assert seen.signed
    assert json.loads(seen.body) == PAYLOAD
    assert seen.body == encode_body(PAYLOAD).encode()
    h = seen.headers
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == USER_AGENT == "Applikant-Hookshot/1"
    assert h["x-applikant-event"] == "push"
    assert h["x-applikant-delivery"] == "5f0c8f7e-6a55-4d4b-a6f1-1d7b5c0b9c11"
    assert h["x-applikant-signature-256"].startswith("sha256=")
    assert verify(SECRET, seen.body, h["x-applikant-signature-256"])


async def test_wrong_secret_is_refused_by_the_receiver(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client() as client:
        result = await attempt(client, delivery(receiver.url("/ok"), secret="other"))
    assert (result.outcome, result.status_code, result.response) == (
        Outcome.HTTP_ERROR,
        401,
        "bad signature",
    )
    assert not receiver.seen[0].signed


async def test_server_error_is_recorded(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client() as client:
        result = await attempt(client, delivery(receiver.url("/flaky/1")))
    assert (result.outcome, result.status_code, result.response) == (
        Outcome.HTTP_ERROR,
        500,
        "down on purpose",
    )


async def test_hanging_url_times_out(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    receiver = await start_receiver(nursery)
    settings = DeliverySettings(read_timeout=10, total=20)
    start = trio.current_time()
    async with make_client(settings) as client:
        result = await attempt(client, delivery(receiver.url("/hang")), settings=settings)
    assert result.outcome is Outcome.TIMEOUT and result.status_code is None
    assert result.error == "timed out (ReadTimeout)"
    assert 10 <= trio.current_time() - start < 11
    settings = DeliverySettings(read_timeout=100, total=20)
    start = trio.current_time()
    async with make_client(settings) as client:
        result = await attempt(client, delivery(receiver.url("/hang")), settings=settings)
    assert result.error == "timed out (the whole attempt)"
    assert 20 <= trio.current_time() - start < 21


async def test_endless_redirects_cost_one_request(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client() as client:
        result = await attempt(client, delivery(receiver.url("/redirect")))
    assert (result.outcome, result.status_code) == (Outcome.REDIRECT, 302)
    assert result.location == receiver.url("/redirect")
    assert result.error == "redirects are not followed"
    assert receiver.hits == {"/redirect": 1}


async def test_receiver_down_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/ok"
    async with make_client() as client:
        result = await attempt(client, delivery(url))
    assert result.outcome is Outcome.CONNECTION_ERROR and result.status_code is None
    assert result.error


async def test_unknown_host_is_a_connection_error() -> None:
    async with make_client(DeliverySettings(connect_timeout=5)) as client:
        result = await attempt(client, delivery("http://no-such-host.invalid/"))
    assert result.outcome in (Outcome.CONNECTION_ERROR, Outcome.TIMEOUT)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://user:pw@example.org/",
    ],
)
async def test_url_that_is_not_acceptable_is_not_posted(url: str) -> None:
    async with make_client() as client:
        result = await attempt(client, delivery(url))
    assert result.outcome is Outcome.INVALID_URL and result.error


async def test_answer_kept_to_a_bounded_snippet(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    settings = DeliverySettings(max_response=100)
    async with make_client(settings) as client:
        result = await attempt(client, delivery(receiver.url("/big")), settings=settings)
    assert result.outcome is Outcome.DELIVERED and result.response == "x" * 100


async def test_garbage_answer_is_a_connection_error() -> None:
    # A "server" that answers with something that is not HTTP.
    async def garbage(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"SSH-2.0-OpenSSH\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, garbage, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        async with make_client() as client:
            result = await attempt(client, delivery(f"http://127.0.0.1:{port}/"))
        nursery.cancel_scope.cancel()
    assert result.outcome is Outcome.CONNECTION_ERROR


def test_client_follows_no_redirects_and_ignores_the_environment() -> None:
    client = make_client()
    assert client.follow_redirects is False
    assert client.trust_env is False
    assert isinstance(client.timeout, httpx.Timeout)
