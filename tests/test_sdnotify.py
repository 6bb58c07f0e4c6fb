"""Daemons tell systemd READY once they listen, STOPPING on SIGTERM, and exit 0."""

from __future__ import annotations

import signal
from pathlib import Path

from applikant import procs
from harness.cluster import Cluster
from harness.notify import NotifySocket


def test_portmapper_signals_ready_and_stops_cleanly(cluster: Cluster, tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path)
    proc = procs.Proc(
        procs.python_module("applikant.cli.main", "start", "portmapper"),
        env={**cluster.env, "NOTIFY_SOCKET": notify.path},
        log_path=str(tmp_path / "pm.log"),
    )
    try:
        notify.wait_for("READY=1")
        procs.wait_port("127.0.0.1", cluster.pm_port, timeout=1)  # it listens when it says so
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
        notify.wait_for("STOPPING=1")
    finally:
        proc.stop()
        notify.close()
