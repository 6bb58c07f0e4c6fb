"""The node layer through real processes on loopback: portmapper, nodes, CLI.

Seconds per test (processes start, real heartbeats run out): marked slow. The
same behaviours are tested in milliseconds on the mock clock (test_node_memory,
test_link) and over real sockets in one process (test_node)."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import msgpack
import pytest

from applikant.node import blocking
from applikant.node.errors import CallTimeout, NodeDown, NoSuchName, Refused, RemoteError
from applikant.node.settings import DistSettings
from harness.cluster import Cluster

pytestmark = pytest.mark.slow


def settings(c: Cluster, **kw: object) -> DistSettings:
    return DistSettings(portmapper_port=c.pm_port, **kw)


def ecall(
    c: Cluster,
    peer: str,
    target: str,
    method: str,
    args: object = None,
    cookie: str | None = None,
    **kw: object,
) -> object:
    return blocking.call(
        c.node(peer),
        (cookie or c.cookie).encode(),
        target,
        method,
        args,
        settings=settings(c),
        **kw,
    )


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def global_names(c: Cluster, node: str) -> dict[str, str]:
    r = c.cli("global-names", "--node", c.node(node), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_portmapper_lists_nodes_and_forgets_them_with_their_connection(cluster: Cluster) -> None:
    cluster.start_portmapper()
    a = cluster.start_node("a")
    r = cluster.cli("names", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"a": a.port}
    a.signal(signal.SIGKILL)
    a.popen.wait()
    wait_for(lambda: json.loads(cluster.cli("names", "--json").stdout) == {})


def test_call_through_one_node_to_a_global_name_on_another(cluster: Cluster) -> None:
    cluster.start_portmapper()
    cluster.start_node("a", plain=True)
    cluster.start_node("b", "svc", connect=("a@localhost",))
    wait_for(lambda: global_names(cluster, "a") == {"svc": "b@localhost"})
    # An ephemeral node connected to a only: a forwards to b over the mesh.
    assert ecall(cluster, "a", "svc", "echo", {"x": [1, "two", b"3"]}) == {"x": [1, "two", b"3"]}
    r = cluster.cli("nodes", "--node", "a@localhost", "--json")
    assert json.loads(r.stdout) == {"node": "a@localhost", "nodes": ["b@localhost"]}


def test_mesh_is_completed_transitively_and_hidden_nodes_stay_out(cluster: Cluster) -> None:
    cluster.start_portmapper()
    cluster.start_node("a", "sa")
    cluster.start_node("b", "sb", connect=("a@localhost",))
    cluster.start_node("c", "sc", connect=("a@localhost",))  # c never dials b itself
    want = {"sa": "a@localhost", "sb": "b@localhost", "sc": "c@localhost"}
    for n in "abc":
        wait_for(lambda n=n: global_names(cluster, n) == want)
    nodes = json.loads(cluster.cli("nodes", "--node", "b@localhost", "--json").stdout)["nodes"]
    assert nodes == ["a@localhost", "c@localhost"]  # the CLI's own hidden node is not listed


def test_errors_are_typed_and_carry_no_traceback(cluster: Cluster) -> None:
    cluster.start_portmapper()
    a = cluster.start_node("a", "svc")
    with pytest.raises(NoSuchName, match="nosuch"):
        ecall(cluster, "a", "nosuch", "echo")
    with pytest.raises(RemoteError) as info:
        ecall(cluster, "a", "svc", "crash")
    assert info.value.kind == "internal"
    assert "Traceback" not in info.value.message and "deliberate" not in info.value.message
    assert "deliberate crash" in a.log_text()  # the operator sees it in the node's log
    with pytest.raises(RemoteError) as info:
        ecall(cluster, "a", "svc", "fail", {"kind": "forbidden", "message": "not you"})
    assert (info.value.kind, info.value.message) == ("forbidden", "not you")
    with pytest.raises(RemoteError) as info:
        ecall(cluster, "a", "svc", "nosuchmethod")
    assert info.value.kind == "no_such_method"
    with pytest.raises(NodeDown, match="zz@localhost"):
        ecall(cluster, "zz", "svc", "echo")


def test_cli_says_plainly_when_nothing_answers(cluster: Cluster) -> None:
    r = cluster.cli("names")
    assert r.returncode == 1 and "no portmapper answers" in r.stderr
    cluster.start_portmapper()
    r = cluster.cli("ping", "ghost@localhost")
    assert r.returncode == 1 and "ghost@localhost" in r.stderr and "Traceback" not in r.stderr
    cluster.start_node("a")
    r = cluster.cli("ping", "a@localhost")
    assert r.returncode == 0 and "pong" in r.stdout
    r = cluster.cli("ping", "not-a-node-name")
    assert r.returncode == 1 and "is not a node name" in r.stderr


def test_wrong_cookie_is_refused_and_logged_with_the_address(cluster: Cluster) -> None:
    cluster.start_portmapper()
    a = cluster.start_node("a")
    with pytest.raises(Refused, match="wrong cookie"):
        ecall(cluster, "a", "echo", "echo", cookie="not-the-cookie")
    log = wait_for(lambda: "event=wrong_cookie" in a.log_text() and a.log_text())
    # (over TCP the peer's host:port; the caller on this host came through a's
    # Unix socket, where the address is the caller's uid)
    assert f"address=local:uid={os.getuid()}" in log or "address=127.0.0.1:" in log, log[-600:]
    r = cluster.cli("ping", "a@localhost", env={"APPLIKANT_COOKIE": "bad"})
    assert r.returncode == 1 and "wrong cookie" in r.stderr
    assert ecall(cluster, "a", "echo", "echo", 1) == 1  # still serving


def test_second_node_with_the_same_name_is_refused(cluster: Cluster) -> None:
    cluster.start_portmapper()
    cluster.start_node("a")
    dup = cluster.start_node("a", wait=False)
    assert dup.popen.wait(15) == 1
    assert "already registered" in dup.log_text()


def test_garbage_oversize_and_silence_do_not_take_a_node_down(cluster: Cluster) -> None:
    cluster.start_portmapper()
    a = cluster.start_node("a")
    port = a.port
    # garbage before the handshake
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100) == b""  # closed on us
    # an oversized handshake frame
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(struct.pack(">I", 10_000_000) + b"x" * 100)
        s.settimeout(5)
        assert s.recv(100) == b""
    # a truncated frame then close
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(struct.pack(">I", 50) + msgpack.packb({"t": "hel"}))
    # a peer that connects and says nothing: closed after the handshake deadline
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        start = time.monotonic()
        assert s.recv(100) == b""
        assert time.monotonic() - start < 9
    # garbage after a good handshake, on a live link
    eph = blocking.EphemeralNode(
        cluster.node("a"), cluster.cookie.encode(), settings=settings(cluster)
    )
    eph._sock.sendall(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
    with pytest.raises(NodeDown):
        eph.call("echo", "echo", 1, timeout=5)
    eph.close()
    assert a.alive()
    assert ecall(cluster, "a", "echo", "echo", "still here") == "still here"
    log = a.log_text()
    assert "handshake_failed" in log and "protocol_error" in log


def test_frame_limit_after_handshake(cluster: Cluster) -> None:
    cluster.config.write_text(cluster.config.read_text() + "max_frame = 100000\n")
    cluster.start_portmapper()
    a = cluster.start_node("a")
    assert len(ecall(cluster, "a", "echo", "echo", b"x" * 90_000)) == 90_000
    eph = blocking.EphemeralNode(
        cluster.node("a"), cluster.cookie.encode(), settings=settings(cluster)
    )
    eph._proto._max_frame = 10**9  # our side would refuse to send it
    with pytest.raises(NodeDown):
        eph.call("echo", "echo", b"x" * 200_000, timeout=5)
    eph.close()
    assert "exceeds the limit" in a.log_text()
    assert ecall(cluster, "a", "echo", "echo", 2) == 2


def test_killed_node_goes_down_and_its_names_vanish(cluster: Cluster) -> None:
    cluster.start_portmapper()
    cluster.start_node("a", "sa")
    b = cluster.start_node("b", "sb", connect=("a@localhost",))
    wait_for(lambda: global_names(cluster, "a") == {"sa": "a@localhost", "sb": "b@localhost"})
    b.signal(signal.SIGKILL)
    wait_for(lambda: global_names(cluster, "a") == {"sa": "a@localhost"}, timeout=5)


def test_frozen_node_is_declared_down_after_the_tick_time(tmp_path) -> None:
    c = Cluster(tmp_path, tick_time=2.0)
    try:
        c.start_portmapper()
        c.start_node("a", "sa")
        b = c.start_node("b", "sb", connect=("a@localhost",))
        wait_for(lambda: "sb" in global_names(c, "a"))
        b.signal(signal.SIGSTOP)
        start = time.monotonic()
        wait_for(lambda: "sb" not in global_names(c, "a"), timeout=10, interval=0.1)
        assert time.monotonic() - start <= 2 * 2.0 + 1.0
        assert "peer_silent" in c.procs[1].log_text()
    finally:
        c.stop()


def test_peer_dying_mid_call_gives_node_down_not_a_hang(cluster: Cluster) -> None:
    cluster.start_portmapper()
    cluster.start_node("a", plain=True)
    b = cluster.start_node("b", "slow", connect=("a@localhost",))
    wait_for(lambda: "slow" in global_names(cluster, "a"))
    code = (
        "import sys, time; from applikant.node import blocking; "
        "from applikant.node.settings import DistSettings as D; t=time.monotonic()\n"
        "try:\n blocking.call('a@localhost', sys.argv[1].encode(), 'slow', 'sleep', 60, "
        "settings=D(portmapper_port=int(sys.argv[2])), timeout=60)\n"
        "except Exception as e: print(type(e).__name__, e, round(time.monotonic()-t, 1))"
    )
    caller = subprocess.Popen(
        [sys.executable, "-c", code, cluster.cookie, str(cluster.pm_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    b.signal(signal.SIGKILL)
    out, _ = caller.communicate(timeout=20)
    assert out.startswith("NodeDown"), out


def test_node_registers_again_when_its_portmapper_restarts(cluster: Cluster) -> None:
    pm = cluster.start_portmapper()
    a = cluster.start_node("a")
    pm.stop()
    cluster.start_portmapper()
    start = time.monotonic()
    wait_for(
        lambda: json.loads(cluster.cli("names", "--json").stdout or "{}") == {"a": a.port},
        interval=0.02,
    )
    assert time.monotonic() - start < 1.0 + 1.5  # re-registers within 1 s (+ CLI start-up)
    assert "portmapper_reregistered" in a.log_text()


def test_partitions_healing_with_one_name_keep_a_deterministic_winner(cluster: Cluster) -> None:
    cluster.start_portmapper()
    first = cluster.start_node("a", "dup")  # registered first: the older claim wins
    time.sleep(0.05)
    second = cluster.start_node("b", "dup")
    assert global_names(cluster, "a") == {"dup": "a@localhost"}
    assert global_names(cluster, "b") == {"dup": "b@localhost"}
    r = cluster.cli("ping", "b@localhost")  # a hidden node joins nothing
    assert r.returncode == 0
    assert global_names(cluster, "b") == {"dup": "b@localhost"}
    # heal: c dials both sides, the mesh completes, the two claims meet
    bridge = cluster.start_node("c", plain=True, connect=("a@localhost", "b@localhost"))
    assert bridge.alive()
    assert cluster.read_line(second, "LOST").split()[1:] == ["dup", "a@localhost"]
    for n in "abc":
        wait_for(lambda n=n: global_names(cluster, n) == {"dup": "a@localhost"})
    assert first.alive()


def _back_within(c: Cluster, via: str, limit: float) -> float:
    """Seconds until a call through `via` to am's service works again."""
    start = time.monotonic()
    while True:
        try:
            assert ecall(c, via, "am_svc", "echo", "back", timeout=1) == "back"
            return time.monotonic() - start
        except (NodeDown, NoSuchName, CallTimeout):
            if time.monotonic() - start > limit:
                raise
            time.sleep(0.02)


@pytest.mark.parametrize("how", ["sigstop", "restart"])
def test_a_peer_that_comes_back_is_linked_again_at_once(tmp_path, how: str) -> None:
    """af holds its link to am; am is stopped past the tick time (SIGSTOP, then
    SIGCONT) or killed and started again. af is linked to it again at once: no
    "already connected" refusal, no simultaneous dials waiting each other out
    (it took 6.4 s). The memory-stream twins on the mock clock (test_connect.py)
    check the one second; here a loaded machine gets slack."""
    c = Cluster(tmp_path, tick_time=1.0)
    try:
        c.start_portmapper()
        am = c.start_node("am", "am_svc")
        af = c.start_node("af", plain=True, connect=("am@localhost",))
        _back_within(c, "af", 30)
        if how == "sigstop":
            am.signal(signal.SIGSTOP)
            wait_for(lambda: "nodedown peer=am@localhost" in af.log_text(), timeout=20)
            time.sleep(3.0)  # af dials the stopped node meanwhile, and times out
            am.signal(signal.SIGCONT)
        else:
            am.signal(signal.SIGKILL)
            am.popen.wait()
            wait_for(lambda: "nodedown peer=am@localhost" in af.log_text(), timeout=20)
            time.sleep(2.0)
            am = c.start_node("am", "am_svc")
        took = _back_within(c, "af", 10)
        print(f"{how}: linked again and answering after {took:.2f} s")
        assert took < 5.0
        for log in (af.log_text(), am.log_text()):
            assert "already connected" not in log
    finally:
        c.stop()
