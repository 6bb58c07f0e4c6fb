"""Calls per second between two long-lived node processes over loopback:
sequential, 16 concurrent callers, 1 KB and 64 KB payloads (and MB/s); with
--tls, the same over TLS in the same run and the TLS/plain ratio at 1 KB.
Nodes of one host link over a Unix socket (`transport`; node/localsock.py);
--tcp adds the same figures over loopback TCP, as between hosts (`tcp_*`);
--tls implies it, for TLS runs over TCP and its ratio is to plain TCP.

Beside each rate, the CPU time per call of the caller (`*_cpu_us`) and of the
node that serves it (`*_server_cpu_us`, from its `node.info`): on a machine
shared with other work the rates swing with the load, the CPU cost much less.
`frame_auth` says whether the link's frames were authenticated (and
`frame_auth_suite` with what): they always are since protocol version 2."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

import trio

from applikant import procs

from . import common

SECONDS = 2.0  # per measurement


async def _server_usage(node) -> tuple[float, int]:
    info = await node.call("node", "info", node="server@localhost")
    return float(info["cpu_s"]), int(info["page_faults"])


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


async def _measure(node, payload: bytes, callers: int) -> tuple[float, ...]:
    """Calls per second of `callers` tasks calling echo for SECONDS, the CPU
    microseconds per call of this process and of the server's, and the page
    faults per call of each (memory the allocator gave back and takes again)."""
    count = 0
    deadline = trio.current_time() + SECONDS

    async def caller() -> None:
        nonlocal count
        while trio.current_time() < deadline:
            await node.call("echo", "echo", payload)
            count += 1

    server, server_faults = await _server_usage(node)
    start, cpu, faults = time.perf_counter(), time.process_time(), _faults()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    rate = count / (time.perf_counter() - start)
    ours = (time.process_time() - cpu) * 1e6 / count
    ours_faults = (_faults() - faults) / count
    server_end, server_faults_end = await _server_usage(node)
    return (
        rate,
        ours,
        (server_end - server) * 1e6 / count,
        ours_faults,
        (server_faults_end - server_faults) / count,
    )


async def client(name: str) -> None:
    """Runs in its own process: a node that calls the echo node and prints results."""
    from applikant import envconfig
    from applikant.node.node import open_node

    raw = envconfig.load_raw()
    async with open_node(name, envconfig.cookie(raw), envconfig.dist_settings(raw)) as node:
        link = await node.connect("server@localhost")
        await node.sync()
        await _measure(node, b"x", 4)  # warm up
        result: dict[str, float | str] = {
            "frame_auth_suite": link.proto.suite,
            "transport": "unix" if link.address.startswith("unix:") else "tcp",
        }
        for key, payload, callers in (
            ("seq_calls_per_s", 10, 1),
            ("conc16_calls_per_s", 10, 16),
            ("calls_per_s_1k", 1024, 1),
            ("conc16_calls_per_s_1k", 1024, 16),
            ("calls_per_s_64k", 65536, 1),
        ):
            rate, cpu_us, server_us, faults, server_faults = await _measure(
                node, b"x" * payload, callers
            )
            result[key] = rate
            result[key.replace("calls_per_s", "cpu_us")] = cpu_us
            result[key.replace("calls_per_s", "server_cpu_us")] = server_us
            if payload == 65536:
                result["page_faults_64k"] = faults
                result["server_page_faults_64k"] = server_faults
        result["mb_per_s_64k"] = float(result["calls_per_s_64k"]) * 65536 / 1e6
        print(json.dumps(result), flush=True)


def run_pair(tls_dir: str | None, tcp: bool = False) -> dict[str, Any]:
    extra = 'local_socket_dir = ""\n' if tcp else ""
    if tls_dir:
        extra += (
            f'\n[dist.tls]\nenabled = true\nca = "{tls_dir}/ca/ca.pem"\n'
            f'cert = "{tls_dir}/localhost.pem"\nkey = "{tls_dir}/localhost.key"\n'
        )
    with common.cluster_dir(extra) as (d, env, pm_port), common.portmapper(d, env, pm_port):
        server = procs.Proc(
            procs.python_module("applikant.node.echo", "server@localhost"),
            env=env,
            log_path=str(d / "server.log"),
            stdout=subprocess.PIPE,
        )
        with server:
            assert server.popen.stdout is not None
            server.popen.stdout.readline()  # READY
            out = subprocess.run(
                [sys.executable, "-m", "bench.dist", "--client", "client@localhost"],
                env={**__import__("os").environ, **env},
                capture_output=True,
                text=True,
                check=True,
            )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--tls", action="store_true", help="also measure over TLS")
    p.add_argument(
        "--tcp", action="store_true", help="also measure over loopback TCP (as between hosts)"
    )
    p.add_argument("--client", help=argparse_hidden())
    args = p.parse_args()
    if args.client:
        trio.run(client, args.client)
        return
    plain = run_pair(None)
    suite = plain.pop("frame_auth_suite")
    transport = plain.pop("transport")
    result: dict[str, Any] = {k: round(v, 1) for k, v in plain.items()}
    result["frame_auth"] = bool(suite)
    result["frame_auth_suite"] = suite
    result["transport"] = transport
    rows = [
        ("frame authentication", suite or "none"),
        ("transport", f"{transport} (nodes of one host: Unix socket unless [dist] says otherwise)"),
        (
            "sequential calls/s",
            f"{plain['seq_calls_per_s']:,.0f}  (target >= 10,000; OTP 25: 14,500)",
        ),
        (
            "16 concurrent calls/s",
            f"{plain['conc16_calls_per_s']:,.0f}  (target >= 30,600: OTP 25)",
        ),
        ("sequential 1 KB calls/s", f"{plain['calls_per_s_1k']:,.0f}"),
        ("16 concurrent 1 KB calls/s", f"{plain['conc16_calls_per_s_1k']:,.0f}"),
        ("sequential 64 KB MB/s", f"{plain['mb_per_s_64k']:,.0f}  (target >= 460; OTP 25: 460)"),
        (
            "caller CPU per call, µs",
            f"{plain['seq_cpu_us']:.0f} sequential, {plain['conc16_cpu_us']:.0f} 16 concurrent, "
            f"{plain['cpu_us_64k']:.0f} at 64 KB",
        ),
        (
            "server CPU per call, µs",
            f"{plain['seq_server_cpu_us']:.0f} sequential, "
            f"{plain['conc16_server_cpu_us']:.0f} 16 concurrent, "
            f"{plain['server_cpu_us_64k']:.0f} at 64 KB",
        ),
        (
            "page faults per 64 KB call",
            f"{plain['page_faults_64k']:.1f} caller, {plain['server_page_faults_64k']:.1f} server",
        ),
    ]
    tcp: dict[str, Any] = {}
    if args.tcp or args.tls:  # (TLS runs over TCP: its ratio is to plain TCP)
        tcp = run_pair(None, tcp=True)
        tcp.pop("frame_auth_suite")
        assert tcp.pop("transport") == "tcp"
        for k, v in tcp.items():
            result[f"tcp_{k}"] = round(v, 1)
        rows += [
            ("TCP sequential calls/s", f"{tcp['seq_calls_per_s']:,.0f}"),
            ("TCP 16 concurrent calls/s", f"{tcp['conc16_calls_per_s']:,.0f}"),
            ("TCP 64 KB MB/s", f"{tcp['mb_per_s_64k']:,.0f}"),
            (
                "TCP CPU per call, µs",
                f"{tcp['seq_cpu_us']:.0f} caller + {tcp['seq_server_cpu_us']:.0f} server",
            ),
        ]
    if args.tls:
        import tempfile

        from applikant.node import certs

        with tempfile.TemporaryDirectory() as tmp:
            certs.make_ca(f"{tmp}/ca")
            certs.make_cert(f"{tmp}/ca", "localhost", tmp)
            tls = run_pair(tmp)
        tls.pop("frame_auth_suite")
        tls.pop("transport")
        for k, v in tls.items():
            result[f"tls_{k}"] = round(v, 1)
        result["tls_ratio_1k"] = round(tls["calls_per_s_1k"] / tcp["calls_per_s_1k"], 3)
        rows += [
            ("TLS sequential 1 KB calls/s", f"{tls['calls_per_s_1k']:,.0f}"),
            ("TLS 16 concurrent calls/s", f"{tls['conc16_calls_per_s']:,.0f}"),
            ("TLS 64 KB MB/s", f"{tls['mb_per_s_64k']:,.0f}"),
            ("TLS / plain TCP at 1 KB", f"{result['tls_ratio_1k']:.2f}  (target >= 0.70)"),
        ]
    common.report(rows, result, args.json)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
