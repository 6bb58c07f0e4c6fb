"""End to end, what `as` and `ah` pay on every push: a fresh process starts an
ephemeral node, connects to a running node, resolves a global name through it,
calls it and exits. Beside `python -c pass` in the same run, interleaved.

Wall time is what a user waits; CPU time (user + system of the process) is what
the process costs, and barely moves with the load of a shared machine."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

from applikant import procs

from . import common

CALL = (  # as afclient.py does for `as` and `ah`: the pure-Python codec, then the driver
    "from applikant.node import lean\n"
    "lean.prefer_pure_codec()\n"
    "from applikant.node.blocking import call\n"
    "from applikant.node.settings import DistSettings\n"
    "assert call('bench@localhost', b'{cookie}', 'echo', 'echo', 'hi', prefix='as',"
    " settings=DistSettings(portmapper_port={port})) == 'hi'\n"
)


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def main() -> None:
    p = common.parser(__doc__ or "")
    p.add_argument("--runs", type=int, default=60)
    args = p.parse_args()
    with common.cluster_dir() as (d, env, pm_port), common.portmapper(d, env, pm_port):
        node = procs.Proc(
            procs.python_module("applikant.node.echo", "bench@localhost"),
            env=env,
            log_path=str(d / "node.log"),
            stdout=subprocess.PIPE,
        )
        with node:
            assert node.popen.stdout is not None
            node.popen.stdout.readline()  # READY
            code = CALL.format(cookie=common.COOKIE, port=pm_port)
            call_argv = [sys.executable, "-c", code]
            pass_argv = [sys.executable, "-c", "pass"]
            for _ in range(3):  # warm the page cache
                run_once(call_argv), run_once(pass_argv)
            calls, passes = [], []
            for _ in range(args.runs):
                calls.append(run_once(call_argv))
                passes.append(run_once(pass_argv))
    call_wall, call_cpu = zip(*calls, strict=True)
    pass_wall, pass_cpu = zip(*passes, strict=True)
    result = {
        "runs": args.runs,
        "p50_ms": round(common.percentile(call_wall, 0.5), 2),
        "p90_ms": round(common.percentile(call_wall, 0.9), 2),
        "python_p50_ms": round(common.percentile(pass_wall, 0.5), 2),
        "cpu_p50_ms": round(common.percentile(call_cpu, 0.5), 2),
        "python_cpu_p50_ms": round(common.percentile(pass_cpu, 0.5), 2),
    }
    result["ratio_to_python"] = round(result["p50_ms"] / result["python_p50_ms"], 2)
    result["cpu_ratio_to_python"] = round(result["cpu_p50_ms"] / result["python_cpu_p50_ms"], 2)
    common.report(
        [
            ("runs", str(args.runs)),
            ("ephemeral call p50", f"{result['p50_ms']:.1f} ms"),
            ("ephemeral call p90", f"{result['p90_ms']:.1f} ms"),
            ("python -c pass p50", f"{result['python_p50_ms']:.1f} ms"),
            ("ratio p50 / python", f"{result['ratio_to_python']:.2f}x  (target <= 2.0x)"),
            ("ephemeral call CPU p50", f"{result['cpu_p50_ms']:.1f} ms"),
            ("python -c pass CPU p50", f"{result['python_cpu_p50_ms']:.1f} ms"),
            ("CPU ratio p50 / python", f"{result['cpu_ratio_to_python']:.2f}x"),
        ],
        result,
        args.json,
    )


if __name__ == "__main__":
    main()
