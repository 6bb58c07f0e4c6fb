"""Partitions between hosts: a host's cable pulled (its switch port down, packets
dropped silently) and plugged back in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.wait import wait_until
from tests.multihost.conftest import NetFactory, tls_of
from tests.multihost.sites import Probe, Sites

TICK = 2.0


def full_mesh(s: Sites, pki: Path | None) -> tuple[Probe, Probe, Probe]:
    """a@h2, b@h3 (serving b-svc) and c@h4, all linked (a dials both; b and c meet
    through a's Peers message), registries in step; over TLS when given a pki."""
    for h in ("h2", "h3", "h4"):
        s.config(h, tls=tls_of(pki, s.ip(h)) if pki is not None else None)
        s.start_portmapper(h)
    a = s.start_probe("h2", s.long("a", "h2"), "a-svc")
    b = s.start_probe("h3", s.long("b", "h3"), "b-svc")
    c = s.start_probe("h4", s.long("c", "h4"), "c-svc")
    a.ok("connect", peer=b.name)
    a.ok("connect", peer=c.name)
    for p in (a, b, c):
        others = sorted(q.name for q in (a, b, c) if q is not p)
        wait_until(lambda p=p, others=others: p.ok("nodes") == others, what=f"{p.name} meshed")
    for p in (a, b, c):
        assert set(p.ok("sync")) == {"a-svc", "b-svc", "c-svc"}
    return a, b, c


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_partition_nodedown_on_both_sides_then_reconnect_and_converge(
    sites: NetFactory, pki: Path, transport: str
) -> None:
    s = sites(["h2", "h3", "h4"], tick_time=TICK)
    a, b, c = full_mesh(s, pki if transport == "tls" else None)
    marks = {p.name: p.mark() for p in (a, b, c)}

    cut_at = time.monotonic()
    s.net.cut("h3")
    # Both sides see the other go down for want of heartbeats, not before the tick
    # time. (How soon after it is the node layer's business, tested on trio's mock
    # clock: here a loaded machine may add seconds.)
    a.wait_event("nodedown", node=b.name, after=marks[a.name])
    c.wait_event("nodedown", node=b.name, after=marks[c.name])
    b.wait_event("nodedown", node=a.name, after=marks[b.name])
    b.wait_event("nodedown", node=c.name, after=marks[b.name])
    down_after = time.monotonic() - cut_at
    assert down_after >= 0.7 * TICK, down_after
    assert "no heartbeat for 2 s" in a.events(marks[a.name])[0]["reason"]

    # Each side goes on without the other; calls across fail closed.
    assert a.ok("names") == {"a-svc": a.name, "c-svc": c.name}
    assert b.ok("names") == {"b-svc": b.name}
    reply = a.request("call", target="b-svc", method="echo", args=1)
    assert reply["error"] == "NoSuchName", reply
    # The same name claimed on both sides: b first, so b's claim is the older.
    b.ok("register", name="dup")
    time.sleep(0.05)
    a.ok("register", name="dup")
    assert a.ok("call", target="dup", method="echo", args="a side") == "a side"
    marks = {p.name: p.mark() for p in (a, b, c)}

    healed_at = time.monotonic()
    s.net.heal("h3")
    # Nobody calls or connects: the nodes dial each other again by themselves.
    a.wait_event("nodeup", node=b.name, after=marks[a.name])
    c.wait_event("nodeup", node=b.name, after=marks[c.name])
    up_after = time.monotonic() - healed_at
    # RECONNECT_MAX is 5 s, plus an attempt that was waiting for its connect timeout.
    assert up_after <= 5 + 2 + 1.5, up_after

    # One winner everywhere (the older claim), and the loser is told.
    lost = a.wait_event("lost", name="dup", after=marks[a.name])
    assert lost["winner"] == b.name
    expected = {"a-svc": a.name, "b-svc": b.name, "c-svc": c.name, "dup": b.name}
    for p in (a, b, c):
        wait_until(lambda p=p: p.ok("sync") == expected, what=f"{p.name} converged")
    assert not [
        e for e in b.events(marks[b.name]) + c.events(marks[c.name]) if e["event"] == "lost"
    ]
    assert a.ok("call", target="dup", method="echo", args="now b") == "now b"
    assert a.ok("call", target="b-svc", method="echo", args=2) == 2
    print(
        f"{transport}: nodedown {down_after:.2f} s after the cut (tick {TICK} s); "
        f"nodeup {up_after:.2f} s after the heal"
    )


def test_a_call_in_flight_when_the_link_is_cut_ends_in_node_down(sites: NetFactory) -> None:
    s = sites(["h2", "h3"], tick_time=TICK)
    for h in ("h2", "h3"):
        s.start_portmapper(h)
    a = s.start_probe("h2", s.long("a", "h2"))
    b = s.start_probe("h3", s.long("b", "h3"), "b-svc")
    a.ok("connect", peer=b.name)
    a.ok("sync")
    a.proc.send(
        json.dumps(
            {
                "id": 99,
                "op": "call",
                "target": "b-svc",
                "method": "sleep",
                "args": 30,
                "timeout": 60,
            }
        )
    )
    time.sleep(0.3)
    s.net.cut("h3")
    # NodeDown from the heartbeat, long before the call's own 60 s timeout (the
    # wait gives up after 30 s).
    line = a.proc.wait_line(lambda x: x.startswith("REPLY ") and '"id": 99' in x)
    reply = json.loads(line[6:])
    assert reply["error"] == "NodeDown" and "no heartbeat" in reply["message"], reply
