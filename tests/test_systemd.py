"""The systemd units: verified by systemd-analyze, hardened, and each ExecStart,
run as written (with a test config), signals READY and stops cleanly on SIGTERM."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from applikant import procs
from harness.cluster import Cluster
from harness.notify import NotifySocket

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
UNITS = [
    "applikant-portmapper.service",
    "applikant-am.service",
    "applikant-af.service",
    "applikant-aw.service",
    "applikant-ab.service",
]
# ab runs as root with the few capabilities builds need (see its unit).
AB_CAPS = "CAP_SETUID CAP_SETGID CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_KILL"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "Type": "notify",
    "Restart": "on-failure",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}


def render(tmp: Path, data_dir: Path) -> Path:
    """Units as `make install` writes them, with this checkout's venv as BINDIR."""
    subprocess.run(
        [
            "make",
            "-s",
            "install-units",
            f"DESTDIR={tmp}",
            "UNITDIR=/units",
            f"BINDIR={Path(sys.executable).parent}",
            f"DATADIR={data_dir}",
            "SYSCONFDIR=/etc/applikant",
            "SERVICE_USER=root",
        ],
        cwd=ROOT,
        check=True,
    )
    return tmp / "units"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = render(tmp_path, tmp_path)
    for name in [*UNITS, "applikant.target"]:
        r = subprocess.run(
            ["systemd-analyze", "verify", str(units / name)],
            capture_output=True,
            text=True,
            cwd=units,
        )
        assert r.returncode == 0, (name, r.stderr)
        assert "applikant" not in r.stderr, (name, r.stderr)  # no warnings about our units


def test_units_are_hardened_and_ordered(tmp_path: Path) -> None:
    units = render(tmp_path, tmp_path / "data")
    for name in UNITS:
        service = unit(units / name)["Service"]
        for key, value in HARDENING.items():
            if name == "applikant-ab.service" and key == "CapabilityBoundingSet":
                value = AB_CAPS
            assert service.get(key) == value, (name, key)
        assert service["ReadWritePaths"].split()[0] == str(tmp_path / "data")
        assert service["ExecStart"].startswith(str(Path(sys.executable).parent))
    for name in UNITS[1:]:
        u = unit(units / name)["Unit"]
        assert "applikant-portmapper.service" in u["After"]
        assert "applikant-am.service" not in u.get("Requires", "")  # they retry am instead
    target = unit(units / "applikant.target")["Unit"]["Wants"].split()
    assert sorted(target) == sorted(UNITS)


@pytest.mark.parametrize("name", UNITS)
def test_exec_start_signals_ready_and_stops_on_sigterm(
    name: str, cluster: Cluster, tmp_path: Path
) -> None:
    units = render(tmp_path / "render", tmp_path)
    service = unit(units / name)["Service"]
    argv = shlex.split(service["ExecStart"])
    if name != "applikant-portmapper.service":
        cluster.start_portmapper()
    if name == "applikant-aw.service":
        port = procs.free_port()
        cluster.config.write_text(
            cluster.config.read_text() + f'\n[aw]\nlisten = "127.0.0.1:{port}"\n'
        )
    notify = NotifySocket(tmp_path)
    proc = procs.Proc(
        argv,
        env={**cluster.env, "NOTIFY_SOCKET": notify.path},
        log_path=str(tmp_path / f"{name}.log"),
    )
    try:
        notify.wait_for("READY=1", timeout=30)
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(15) == 0, proc.log_text()
        notify.wait_for("STOPPING=1")
    finally:
        proc.stop()
        notify.close()
