"""What a firewall between hosts must allow: the portmapper's port and the
distribution range (listen_min..listen_max), nothing else."""

from __future__ import annotations

import sys

from tests.multihost.conftest import NetFactory
from tests.multihost.sites import PM_PORT


def test_nodes_listen_only_inside_the_range_and_peers_use_nothing_else(sites: NetFactory) -> None:
    s = sites(["h2", "h3"])
    narrow = s.config("h2", "narrow", listen_min=9150, listen_max=9152)
    for h in ("h2", "h3"):
        s.start_portmapper(h)
    probes = [
        s.start_probe("h2", s.long(n, "h2"), f"{n}-svc", config=narrow) for n in ("a", "b", "c")
    ]
    assert sorted(p.port for p in probes) == [9150, 9151, 9152]
    x = s.start_probe("h3", s.long("x", "h3"))
    for p in probes:
        x.ok("connect", peer=p.name)
    x.ok("sync")
    assert x.ok("call", target="c-svc", method="echo", args="ok") == "ok"

    listening = s.net.listening("h2")
    pids = {p.proc.pid for p in probes}
    assert sorted((addr, port) for addr, port, pid in listening if pid in pids) == [
        (s.ip("h2"), 9150),
        (s.ip("h2"), 9151),
        (s.ip("h2"), 9152),
    ]
    assert {(addr, port) for addr, port, pid in listening if pid not in pids} == {
        ("0.0.0.0", PM_PORT)
    }
    # Every connection h3 made to h2 goes to the portmapper or into the range.
    out = s.net.exec("h3", ["ss", "-Htn", "state", "established"]).stdout
    remote_ports = {
        int(line.split()[-1].rpartition(":")[2])
        for line in out.splitlines()
        if s.ip("h2") + ":" in line.split()[-1]
    }
    assert remote_ports and remote_ports <= {PM_PORT, 9150, 9151, 9152}, out

    # A fourth node finds no free port, and says so.
    r = s.net.exec(
        "h2",
        [sys.executable, "-m", "tests.multihost.probe", s.long("d", "h2")],
        env=s.env("h2", narrow),
        input="",
        timeout=30,
    )
    assert r.returncode == 1
    assert f"no free port in 9150-9152 on {s.ip('h2')}" in r.stderr


def test_a_node_on_a_busy_range_port_skips_it(sites: NetFactory) -> None:
    """A port of the range taken by something else is passed over, not fatal."""
    s = sites(["h2"])
    narrow = s.config("h2", "narrow", listen_min=9150, listen_max=9151)
    s.start_portmapper("h2")
    squatter = s.net.run(
        "h2",
        [
            sys.executable,
            "-c",
            (
                "import socket, time; s = socket.socket(); "
                f"s.bind(('{s.ip('h2')}', 9150)); s.listen(); print('READY', flush=True); "
                "time.sleep(60)"
            ),
        ],
        stdout=True,
        name="squatter",
    )
    squatter.wait_line("READY")
    a = s.start_probe("h2", s.long("a", "h2"), config=narrow)
    assert a.port == 9151
