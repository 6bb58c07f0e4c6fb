"""Node names across hosts: long names through each host's own portmapper, short
names on one host, and a refusal when the two kinds meet."""

from __future__ import annotations

import json
import sys

from harness.wait import wait_until
from tests.multihost.conftest import NetFactory
from tests.multihost.sites import PM_PORT


def test_long_names_across_hosts_through_each_hosts_portmapper(sites: NetFactory) -> None:
    s = sites(["h2", "h3"])
    for h in ("h2", "h3"):
        s.start_portmapper(h)
    a = s.start_probe("h2", s.long("a", "h2"))
    s.start_echo("h3", s.long("b", "h3"), "b-svc")

    # Not connected yet: b's global names are unknown here.
    reply = a.request("call", target="b-svc", method="echo", args={"hi": 1})
    assert reply == {
        "id": reply["id"],
        "ok": False,
        "error": "NoSuchName",
        "message": "no service is registered as b-svc",
    }
    # a knows nothing of b but its name: host h3's portmapper gives the port.
    assert a.ok("connect", peer=s.long("b", "h3")) == [s.long("b", "h3")]
    a.wait_event("nodeup", node=s.long("b", "h3"))
    assert a.ok("sync")["b-svc"] == s.long("b", "h3")
    assert a.ok("call", target="b-svc", method="echo", args={"hi": 1}) == {"hi": 1}
    # Each portmapper knows its own host's nodes only.
    names2 = json.loads(s.cli("h2", "names", "--json").stdout)
    names3 = json.loads(s.cli("h2", "names", s.ip("h3"), "--json").stdout)
    assert set(names2) == {"a"} and set(names3) == {"b"}
    assert names2["a"] == a.port


def test_an_ephemeral_node_on_one_host_calls_a_node_on_another(sites: NetFactory) -> None:
    s = sites(["h2", "h3"])
    for h in ("h2", "h3"):
        s.start_portmapper(h)
    s.start_echo("h3", s.long("b", "h3"), "b-svc")
    r = s.cli("h2", "ping", s.long("b", "h3"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"pong from {s.long('b', 'h3')}"
    r = s.cli("h2", "global-names", "--node", s.long("b", "h3"), "--json")
    assert json.loads(r.stdout) == {"b-svc": s.long("b", "h3")}


def test_short_names_on_one_host(sites: NetFactory) -> None:
    s = sites(["h2"])
    cfg = s.config("h2", "short", bind_host="127.0.0.1")
    s.start_portmapper("h2", bind=None, config=cfg)
    a = s.start_probe("h2", "a@localhost", config=cfg)
    s.start_echo("h2", "b@localhost", "b-svc", config=cfg)
    assert a.ok("connect", peer="b@localhost") == ["b@localhost"]
    a.ok("sync")
    assert a.ok("call", target="b-svc", method="echo", args=[1, 2]) == [1, 2]
    r = s.cli("h2", "ping", "b@localhost", config=cfg)
    assert r.returncode == 0, r.stderr


def test_short_and_long_names_are_refused_together(sites: NetFactory) -> None:
    s = sites(["h2", "h3"])
    for h in ("h2", "h3"):
        s.start_portmapper(h)
    long_a = s.start_probe("h2", s.long("a", "h2"))
    short_c = s.start_probe("h2", "c@localhost")
    s.start_echo("h3", s.long("b", "h3"))

    reply = long_a.request("connect", peer="c@localhost")
    assert not reply["ok"] and reply["error"] == "Refused"
    assert reply["message"] == (
        f"{s.long('a', 'h2')} uses long names and c@localhost uses "
        "short names; short and long names are never mixed in one "
        "cluster"
    )
    reply = short_c.request("connect", peer=s.long("b", "h3"))
    assert not reply["ok"] and reply["error"] == "Refused"
    assert "never mixed" in reply["message"]
    assert long_a.ok("nodes") == [] and short_c.ok("nodes") == []


def test_portmapper_must_listen_beyond_loopback_for_other_hosts(sites: NetFactory) -> None:
    """The default portmapper (127.0.0.1) cannot be found from another host; one on
    0.0.0.0 can, and still takes registrations from loopback only."""
    s = sites(["h2", "h3"])
    s.start_portmapper("h2")
    pm3 = s.start_portmapper("h3", bind=None)  # the config's portmapper_host, 127.0.0.1
    s.start_echo("h3", s.long("b", "h3"))
    r = s.cli("h2", "ping", s.long("b", "h3"))
    assert r.returncode == 1
    assert f"no portmapper answers at {s.ip('h3')}:{PM_PORT} (Connection refused)" in r.stderr

    pm3.stop()
    s.start_portmapper("h3", bind="0.0.0.0")
    # The node registers again by itself with the new portmapper.
    wait_until(
        lambda: s.cli("h2", "ping", s.long("b", "h3")).returncode == 0,
        what="b reachable through h3's portmapper on 0.0.0.0",
    )
    # A registration from another host, or from the host's own address, is refused.
    register = (
        "import socket; from applikant.node.protocol import encode_frame; "
        f"s = socket.create_connection(('{s.ip('h3')}', {PM_PORT})); "
        "s.sendall(encode_frame({'op': 'register', 'name': 'x', 'port': 9100})); "
        "print(s.recv(200))"
    )
    for host in ("h2", "h3"):
        out = s.python(host, register).stdout
        assert "registrations are accepted from loopback only" in out, out


def test_start_portmapper_from_the_config_alone_on_every_address(sites: NetFactory) -> None:
    """What the systemd unit runs (`applikant start portmapper`, no --host) can serve
    other hosts only through portmapper_host = "0.0.0.0"; nodes then register by
    connecting to 0.0.0.0, which Linux delivers over loopback. This pins today's
    behaviour; see the report for a portmapper_listen setting that says it plainly."""
    s = sites(["h2", "h3"])
    s.start_portmapper("h2")
    cfg = s.config("h3", "any", portmapper_host="0.0.0.0")
    proc = s.net.run(
        "h3",
        [sys.executable, "-m", "applikant.cli.main", "start", "portmapper"],
        env=s.env("h3", cfg),
        name="portmapper",
    )
    s.net.wait_listening("h3", PM_PORT, proc=proc)
    s.start_echo("h3", s.long("b", "h3"), "b-svc", config=cfg)
    r = s.cli("h2", "ping", s.long("b", "h3"))
    assert r.returncode == 0, r.stderr
    assert "registered name=b" in proc.log_text()


def test_a_long_named_node_bound_to_loopback_cannot_be_reached_from_elsewhere(
    sites: NetFactory,
) -> None:
    """bind_host defaults to 127.0.0.1: a node named for its host's address must
    listen on it (or 0.0.0.0), or peers find its port and then nothing there.
    The node starts without a warning today (see the report)."""
    s = sites(["h2", "h3"])
    for h in ("h2", "h3"):
        s.start_portmapper(h)
    a = s.start_probe("h2", s.long("a", "h2"))
    c = s.start_probe(
        "h3", s.long("c", "h3"), config=s.config("h3", "loopback", bind_host="127.0.0.1")
    )
    reply = a.request("connect", peer=c.name)
    assert reply["error"] == "NodeDown", reply
    assert reply["message"] == (
        f"cannot reach {c.name}: all attempts to connect to {s.ip('h3')}:{c.port} failed"
    ), reply
