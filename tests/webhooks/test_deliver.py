"""One attempt against a real receiver on loopback: headers, signature, and
every way a receiver can fail; and where a delivery may not go (loopback,
private and metadata addresses, by name or number, by redirect or DNS)."""

from __future__ import annotations

import json
from functools import partial
from ipaddress import ip_address

import httpx
import pytest
import trio

from applikant.webhooks import (
    COULD_NOT_DELIVER,
    USER_AGENT,
    DeliverySettings,
    HostPolicy,
    Outcome,
    PendingDelivery,
    attempt,
    encode_body,
    make_client,
    verify,
)

from .receiver import SECRET, free_port, start_receiver

#: The receivers of these tests are on loopback, which deliveries may not reach
#: unless a site admin allows it ([webhooks] allowed_hosts).
LOOPBACK = DeliverySettings(policy=HostPolicy.parse(["loopback"]))

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
    async with make_client(LOOPBACK) as client:
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
    async with make_client(LOOPBACK) as client:
        result = await attempt(client, delivery(receiver.url("/ok"), secret="other"))
    assert (result.outcome, result.status_code, result.response) == (
        Outcome.HTTP_ERROR,
        401,
        "bad signature",
    )
    assert not receiver.seen[0].signed


async def test_server_error_is_recorded(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client(LOOPBACK) as client:
        result = await attempt(client, delivery(receiver.url("/flaky/1")))
    assert (result.outcome, result.status_code, result.response) == (
        Outcome.HTTP_ERROR,
        500,
        "down on purpose",
    )


async def test_hanging_url_times_out(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    receiver = await start_receiver(nursery)
    settings = DeliverySettings(read_timeout=10, total=20, policy=LOOPBACK.policy)
    start = trio.current_time()
    async with make_client(settings) as client:
        result = await attempt(client, delivery(receiver.url("/hang")), settings=settings)
    # In the same words as a closed port: the log tells nothing about the port.
    assert result.outcome is Outcome.CONNECTION_ERROR and result.status_code is None
    assert result.error == COULD_NOT_DELIVER
    assert 10 <= trio.current_time() - start < 11
    settings = DeliverySettings(read_timeout=100, total=20, policy=LOOPBACK.policy)
    start = trio.current_time()
    async with make_client(settings) as client:
        result = await attempt(client, delivery(receiver.url("/hang")), settings=settings)
    assert result.error == COULD_NOT_DELIVER
    assert 20 <= trio.current_time() - start < 21


async def test_endless_redirects_cost_one_request(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client(LOOPBACK) as client:
        result = await attempt(client, delivery(receiver.url("/redirect")))
    assert (result.outcome, result.status_code) == (Outcome.REDIRECT, 302)
    assert result.location == receiver.url("/redirect")
    assert result.error == "redirects are not followed"
    assert receiver.hits == {"/redirect": 1}


async def test_receiver_down_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/ok"
    async with make_client(LOOPBACK) as client:
        result = await attempt(client, delivery(url))
    assert result.outcome is Outcome.CONNECTION_ERROR and result.status_code is None
    assert result.error == COULD_NOT_DELIVER


async def test_unknown_host_is_a_connection_error() -> None:
    async with make_client(DeliverySettings(connect_timeout=5)) as client:
        result = await attempt(client, delivery("http://no-such-host.invalid/"))
    assert result.outcome is Outcome.CONNECTION_ERROR
    assert result.error == COULD_NOT_DELIVER


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
    async with make_client(LOOPBACK) as client:
        result = await attempt(client, delivery(url))
    assert result.outcome is Outcome.INVALID_URL and result.error


async def test_answer_kept_to_a_bounded_snippet(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    settings = DeliverySettings(max_response=100, policy=LOOPBACK.policy)
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
        async with make_client(LOOPBACK) as client:
            result = await attempt(client, delivery(f"http://127.0.0.1:{port}/"))
        nursery.cancel_scope.cancel()
    assert result.outcome is Outcome.CONNECTION_ERROR and result.error == COULD_NOT_DELIVER


def test_client_follows_no_redirects_and_ignores_the_environment() -> None:
    client = make_client()
    assert client.follow_redirects is False
    assert client.trust_env is False
    assert isinstance(client.timeout, httpx.Timeout)


# ---- where deliveries may not go ---------------------------------------------------


async def test_loopback_receiver_is_refused_by_default_and_reached_when_allowed(
    nursery: trio.Nursery,
) -> None:
    receiver = await start_receiver(nursery)
    async with make_client() as client:
        result = await attempt(client, delivery(receiver.url("/ok")))
    assert result.outcome is Outcome.BLOCKED and result.status_code is None
    assert result.error.startswith(COULD_NOT_DELIVER) and "loopback" in result.error
    assert receiver.seen == []  # not even a connection
    async with make_client(LOOPBACK) as client:
        result = await attempt(client, delivery(receiver.url("/ok")))
    assert result.outcome is Outcome.DELIVERED and len(receiver.seen) == 1


async def test_a_name_that_resolves_to_loopback_is_refused(nursery: trio.Nursery) -> None:
    receiver = await start_receiver(nursery)
    async with make_client() as client:
        result = await attempt(client, delivery(f"http://localhost:{receiver.port}/ok"))
    assert result.outcome is Outcome.BLOCKED and "loopback" in result.error
    assert receiver.seen == []


@pytest.mark.parametrize(
    "host,kind",
    [
        ("169.254.169.254", "cloud metadata"),
        ("[fd00:ec2::254]", "cloud metadata"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("[fe80::1]", "link-local"),
        ("224.0.0.1", "multicast"),
    ],
)
async def test_inside_addresses_are_refused_before_any_connection(host: str, kind: str) -> None:
    async with make_client(DeliverySettings(connect_timeout=1)) as client:
        result = await attempt(client, delivery(f"http://{host}:8080/"))
    assert result.outcome is Outcome.BLOCKED and kind in result.error


async def test_the_checked_address_is_the_one_connected_to(nursery: trio.Nursery) -> None:
    """DNS is asked once per connection and the answer checked is the address
    connected to (by number): a name that also resolves to a refused address
    reaches only the allowed one, and Host still names the URL's host."""
    inside = await start_receiver(nursery, host="127.0.0.1")
    allowed = await start_receiver(nursery, port=inside.port, host="127.0.0.2")
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list:
        asked.append(host)
        return [ip_address("127.0.0.1"), ip_address("127.0.0.2")]

    settings = DeliverySettings(policy=HostPolicy.parse(["127.0.0.2/32"]))
    async with make_client(settings, resolver=rebinding) as client:
        result = await attempt(client, delivery(f"http://hooks.example.test:{inside.port}/ok"))
    assert result.outcome is Outcome.DELIVERED
    assert asked == ["hooks.example.test"]
    assert inside.seen == [] and len(allowed.seen) == 1
    assert allowed.seen[0].headers["host"] == f"hooks.example.test:{inside.port}"


async def test_a_redirect_to_loopback_is_not_followed(nursery: trio.Nursery) -> None:
    inside = await start_receiver(nursery, host="127.0.0.1")
    outside = await start_receiver(nursery, host="127.0.0.2")
    outside.redirect_to = inside.url("/ok")
    settings = DeliverySettings(policy=HostPolicy.parse(["127.0.0.2"]))
    async with make_client(settings) as client:
        result = await attempt(client, delivery(outside.url("/bounce")))
    assert (result.outcome, result.status_code) == (Outcome.REDIRECT, 302)
    assert result.location == inside.url("/ok")
    assert inside.seen == [] and outside.hits == {"/bounce": 1}


async def test_closed_and_silent_ports_read_alike(autojump_clock: trio.abc.Clock) -> None:
    """A closed port and one that takes the connection and never answers (a
    filtered or non-HTTP port) are recorded in the same words."""

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    settings = DeliverySettings(read_timeout=2, total=5, policy=LOOPBACK.policy)
    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        async with make_client(settings) as client:
            hanging = await attempt(
                client, delivery(f"http://127.0.0.1:{port}/"), settings=settings
            )
            closed = await attempt(client, delivery(f"http://127.0.0.1:{free_port()}/"))
        nursery.cancel_scope.cancel()
    assert (hanging.outcome, hanging.error) == (closed.outcome, closed.error)
    assert closed.error == COULD_NOT_DELIVER


def test_host_policy_entries() -> None:
    from ipaddress import ip_address as ip

    policy = HostPolicy.parse(["ci.internal", "*.corp.example", "10.1.0.0/16", "private"])
    assert policy.refusal("ci.internal", ip("127.0.0.1")) is None
    assert policy.refusal("a.b.corp.example", ip("127.0.0.1")) is None
    assert policy.refusal("corp.example", ip("127.0.0.1")) == "loopback"
    assert policy.refusal("x", ip("10.1.2.3")) is None
    assert policy.refusal("x", ip("192.168.0.1")) is None  # `private`
    assert policy.refusal("x", ip("169.254.169.254")) == "cloud metadata"
    assert HostPolicy().refusal("example.org", ip("93.184.216.34")) is None
    assert HostPolicy.parse(["*"]).refusal("x", ip("127.0.0.1")) is None
    for bad in ["", "http://x/", "a b", "10.0.0.0/33x"]:
        with pytest.raises(ValueError, match="allowed_hosts"):
            HostPolicy.parse([bad])
