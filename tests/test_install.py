"""`make install` puts the package in its own venv under PREFIX, the entry points,
the units and the config example; DESTDIR stages it for packaging."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(700)]  # a venv and pip install each

ROOT = Path(__file__).resolve().parent.parent


def make_install(**variables: str) -> None:
    args = [f"{k}={v}" for k, v in variables.items()]
    r = subprocess.run(
        ["make", "-s", "install", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_install_into_a_prefix_runs(tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    make_install(
        PREFIX=str(prefix), UNITDIR=str(tmp_path / "units"), SYSCONFDIR=str(tmp_path / "etc")
    )
    for script in ("applikant", "applikant-as", "applikant-ah", "applikant-keys-for"):
        assert (prefix / "bin" / script).exists(), script
    r = subprocess.run(
        [str(prefix / "bin" / "applikant"), "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "portmapper" in r.stdout
    r = subprocess.run(
        [str(prefix / "bin" / "applikant-as")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1 and r.stderr.startswith("applikant: ")
    unit = (tmp_path / "units" / "applikant-am.service").read_text()
    assert f"ExecStart={prefix}/bin/applikant start am" in unit
    assert f"APPLIKANT_CONFIG={tmp_path / 'etc'}/applikant.toml" in unit
    assert (tmp_path / "etc" / "applikant.toml.example").exists()
    assert (tmp_path / "etc" / "sshd_applikant.conf.example").exists()


def test_destdir_stages_with_the_final_paths(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    make_install(DESTDIR=str(stage), PREFIX="/opt/applikant")
    bindir = stage / "opt" / "applikant" / "bin"
    assert (bindir / "applikant").read_text().splitlines()[0] == "#!/opt/applikant/bin/python"
    leaks = subprocess.run(
        ["grep", "-rlI", str(stage), str(bindir), str(stage / "opt" / "applikant" / "pyvenv.cfg")],
        capture_output=True,
        text=True,
    )
    assert leaks.stdout == ""  # no staging path left in scripts or the venv's config
    unit = (stage / "etc" / "systemd" / "system" / "applikant-af.service").read_text()
    assert "ExecStart=/opt/applikant/bin/applikant start af" in unit
    assert "@" not in unit.replace("@localhost", "")  # every placeholder filled
