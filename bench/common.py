"""Shared by the benchmarks: a throwaway cluster config, percentiles, output."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from applikant import procs

COOKIE = "bench-cookie-0123456789abcdef"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", action="store_true", help="one JSON object on the last line")
    return p


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(rows: list[tuple[str, str]], result: dict, as_json: bool) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    if as_json:
        print(json.dumps(result, sort_keys=True))


@contextmanager
def cluster_dir(extra_toml: str = "") -> Iterator[tuple[Path, dict[str, str], int]]:
    """A temp dir with config and cookie; yields (dir, env, portmapper port)."""
    with tempfile.TemporaryDirectory(prefix="applikant-bench-") as tmp:
        d = Path(tmp)
        pm_port = procs.free_port()
        (d / "cookie").write_text(COOKIE)
        os.chmod(d / "cookie", 0o600)
        base = 40000 + (pm_port % 200) * 100
        (d / "applikant.toml").write_text(
            f'[node]\nhost = "localhost"\ndata_dir = "{d}"\ncookie_file = "{d / "cookie"}"\n'
            f"dev_mode = true\n\n[dist]\nportmapper_port = {pm_port}\n"
            f"listen_min = {base}\nlisten_max = {base + 99}\n{extra_toml}"
        )
        env = {"APPLIKANT_CONFIG": str(d / "applikant.toml")}
        yield d, env, pm_port


@contextmanager
def portmapper(d: Path, env: dict[str, str], port: int) -> Iterator[procs.Proc]:
    with procs.Proc(
        procs.python_module("applikant.cli.main", "portmapper", "--port", str(port)),
        env=env,
        log_path=str(d / "portmapper.log"),
    ) as pm:
        procs.wait_port("127.0.0.1", port, proc=pm.popen)
        yield pm
