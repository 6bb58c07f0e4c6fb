"""`doctor`'s forced-command check: the program and the script it runs (af's
default is this Python with -S and as_launch.py) must both be there, since
sshd runs them for every login."""

from __future__ import annotations

import sys
from pathlib import Path

from applikant.config import Config
from applikant.ops.doctor import check_forced_command


def _check(tmp_path: Path, command: str) -> tuple[str, str]:
    cfg = Config.model_validate(
        {"node": {"data_dir": str(tmp_path)}, "af": {"as_command": command}}
    )
    check = check_forced_command(cfg)
    return check.status, check.found


def test_the_default_forced_command_is_ok(tmp_path: Path) -> None:
    status, found = _check(tmp_path, "")
    assert status == "ok" and "as_launch.py" in found


def test_a_missing_program_or_script_fails(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    status, found = _check(tmp_path, f"{gone}/applikant-as")
    assert status == "fail" and "gone/applikant-as does not exist" in found
    status, found = _check(tmp_path, f"{sys.executable} -S {gone}/as_launch.py")
    assert status == "fail" and "as_launch.py does not exist or cannot be read" in found
    script = tmp_path / "as_launch.py"
    script.write_text("")
    assert _check(tmp_path, f"{sys.executable} -S {script}")[0] == "ok"
