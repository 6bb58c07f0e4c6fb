"""The command line's own basics: `--version`, and shell completion that
installs in one command and then completes (bash for real, zsh's files)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from applikant.version import version

BIN = Path(sys.executable).parent
APPLIKANT = BIN / "applikant"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(APPLIKANT), *args],
        env=env or os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout == f"applikant {version()}\n"
    assert version().count(".") >= 2  # pyproject's, not "unknown"


@pytest.mark.skipif(not shutil.which("bash"), reason="needs bash")
def test_bash_completion_installs_in_one_command_and_completes(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{BIN}:{os.environ['PATH']}"}
    # Run from bash, as a person would: the shell is found from the parent process.
    # (`; exit $?` keeps bash the parent: `bash -c CMD` alone execs CMD in bash's
    # place, and the shell found is then whatever runs the tests, `sh` under make.)
    done = subprocess.run(
        ["bash", "-c", "applikant --install-completion; exit $?"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "applikant.sh"
    assert "bash completion installed" in done.stdout and script.exists()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    # What bash does on TAB after `applikant us`: the function the script defines.
    complete = (
        f"source {script}; COMP_WORDS=(applikant us); COMP_CWORD=1; "
        "_applikant_completion applikant; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    done = subprocess.run(
        ["bash", "-c", complete], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["user"]
    complete = complete.replace("(applikant us)", "(applikant hook '')").replace(
        "COMP_CWORD=1", "COMP_CWORD=2"
    )
    done = subprocess.run(
        ["bash", "-c", complete], env=env, capture_output=True, text=True, timeout=60
    )
    assert {"add", "edit", "test", "list"} <= set(done.stdout.split()), done.stdout


def test_zsh_completion_installs_its_function(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        # Name the shell instead of detecting it (no zsh on this machine, maybe).
        "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1",
    }
    done = run("--install-completion", "zsh", env=env)
    assert done.returncode == 0, done.stderr
    function = tmp_path / ".zfunc" / "_applikant"
    assert function.exists() and "#compdef applikant" in function.read_text()
    assert "fpath+=~/.zfunc" in (tmp_path / ".zshrc").read_text()
