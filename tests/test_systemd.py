"""The systemd units: verified by systemd-analyze, hardened (with the exposure the
README states), StateDirectory only where it is DATADIR, and each ExecStart, run
as written (with a test config), signals READY and stops cleanly on SIGTERM.
tests/test_install.py runs the installed units end to end, as their users."""

from __future__ import annotations

import configparser
import re
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
    "PrivateMounts": "yes",
    "CapabilityBoundingSet": "",
    "Type": "notify",
    "Restart": "on-failure",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
}
# Only for the daemons that run as the service user (ab's builds need more).
USER_HARDENING = {
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RemoveIPC": "yes",
    "SystemCallFilter": "@system-service",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0027",
}


def render(tmp: Path, data_dir: Path, user: str = "root") -> Path:
    """Units as `make install` writes them, with this checkout's venv as PREFIX."""
    subprocess.run(
        [
            "make",
            "-s",
            "install-units",
            f"DESTDIR={tmp}",
            "UNITDIR=/units",
            f"PREFIX={Path(sys.executable).parent.parent}",
            f"DATADIR={data_dir}",
            "SYSCONFDIR=/etc/applikant",
            f"SERVICE_USER={user}",
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
    data = tmp_path / "data"
    units = render(tmp_path, data)
    for name in UNITS:
        service = unit(units / name)["Service"]
        for key, value in HARDENING.items():
            if name == "applikant-ab.service" and key == "CapabilityBoundingSet":
                value = AB_CAPS
            assert service.get(key) == value, (name, key)
        if name != "applikant-ab.service":
            for key, value in USER_HARDENING.items():
                assert service.get(key) == value, (name, key)
            assert service["ReadWritePaths"] == str(data)
        assert service["ExecStart"].startswith(str(Path(sys.executable).parent))
        u = unit(units / name)["Unit"]
        # Across hosts every daemon binds this host's own address.
        assert "network-online.target" in u["After"] and "network-online.target" in u["Wants"]
    for name in UNITS[1:]:
        u = unit(units / name)["Unit"]
        assert "applikant-portmapper.service" in u["After"]
        assert "applikant-am.service" not in u.get("Requires", "")  # they retry am instead
    target = unit(units / "applikant.target")["Unit"]["Wants"].split()
    assert sorted(target) == sorted(UNITS)


def test_ab_makes_its_build_user_and_builds_dir_before_its_sandbox(tmp_path: Path) -> None:
    ab = unit(render(tmp_path, tmp_path / "data") / "applikant-ab.service")["Service"]
    assert ab["User"] == "root"
    # Full privileges (+): /etc is read-only to ab itself; the user comes from [builder].
    assert ab["ExecStartPre"] == f"+{Path(sys.executable).parent}/applikant prepare-ab"
    assert "useradd" not in ab["ExecStartPre"]
    # The builds dir is optional (-): the pre-start makes it; ab writes nothing else.
    assert ab["ReadWritePaths"] == f"-{tmp_path / 'data'}-builds"
    assert "StateDirectory" not in ab  # root: systemd would hand DATADIR to root


def test_state_directory_only_when_datadir_is_under_var_lib(tmp_path: Path) -> None:
    default = render(tmp_path / "a", Path("/var/lib/applikant"))
    elsewhere = render(tmp_path / "b", Path("/srv/git"))
    for name in UNITS:
        if name != "applikant-ab.service":
            service = unit(default / name)["Service"]
            assert service["StateDirectory"] == "applikant", name
            assert service["StateDirectoryMode"] == "0700", name  # the data dir is private
        # elsewhere no stray /var/lib/applikant: `applikant init` makes DATADIR.
        assert "StateDirectory" not in unit(elsewhere / name)["Service"], name


def exposures(text: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^\| `(applikant-\w+)\.service` \| ([0-9.]+) ", text, re.M)
    }


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_readme_states_each_units_exposure(tmp_path: Path) -> None:
    units = render(tmp_path, Path("/var/lib/applikant"), user="git")  # the defaults
    stated = exposures((ROOT / "README.md").read_text())
    assert sorted(stated) == sorted(n.removesuffix(".service") for n in UNITS)
    for name in UNITS:
        r = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", str(units / name)],
            capture_output=True,
            text=True,
            cwd=units,
        )
        if r.returncode != 0 and "offline" in r.stderr:
            pytest.skip(f"systemd-analyze security --offline unsupported: {r.stderr.strip()}")
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        assert m, r.stdout[-500:] + r.stderr
        assert float(m.group(1)) == stated[name.removesuffix(".service")], name


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
