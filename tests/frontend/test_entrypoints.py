"""as, ah and keys-for as processes, without a cluster: what they import, how they
refuse, and that they give up within their deadline when af is not there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from applikant.frontend import ah_cmd, as_cmd
from applikant.frontend.afclient import parse_config_option

HEAVY = ("trio", "pydantic", "typer")


@pytest.mark.parametrize("module", ["as_cmd", "ah_cmd", "keys_for"])
def test_entry_points_import_no_heavy_modules(module: str) -> None:
    code = (
        f"import sys, applikant.frontend.{module}, applikant.frontend.afclient,"
        " applikant.frontend.spool, applikant.frontend.sshcommand;"
        f" print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def nowhere(tmp_path: Path) -> dict[str, str]:
    """A config whose portmapper port has nothing listening: af is unreachable."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "applikant.toml"
    (tmp_path / "cookie").write_text("test-cookie-0123456789")
    cfg.write_text(
        f'[node]\nhost = "localhost"\ndata_dir = "{tmp_path}"\n'
        f'cookie_file = "{tmp_path / "cookie"}"\ndev_mode = true\n\n'
        f"[dist]\nportmapper_port = {port}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIKANT_", "GIT_", "SSH_"))}
    env["APPLIKANT_CONFIG"] = str(cfg)
    return env


def _run(argv: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=20, **kw)  # type: ignore[arg-type]


AS = [sys.executable, "-m", "applikant.frontend.as_cmd"]
AH = [
    sys.executable,
    "-c",
    "import sys; from applikant.frontend.ah_cmd import main; sys.argv[0] = sys.argv[1]; "
    "del sys.argv[1]; sys.exit(main())",
]


def test_as_refuses_bad_commands_before_any_call(nowhere: dict[str, str]) -> None:
    env = dict(nowhere, SSH_ORIGINAL_COMMAND="git-upload-pack '../../etc/passwd'")
    r = _run([*AS, "user-1"], env)
    assert r.returncode == 1
    assert r.stderr == "applikant: '..' is not allowed in repository names\n"
    r = _run([*AS, "user-1"], {k: v for k, v in nowhere.items() if k != "SSH_ORIGINAL_COMMAND"})
    assert r.returncode == 1 and "interactive shells" in r.stderr


@pytest.mark.parametrize(
    "argv",
    [[], ["root"], ["user-1", "user-2"], ["user-x"], ["--config"], ["user-1", "SHA256:a", "b"]],
)
def test_as_refuses_a_bad_forced_command(nowhere: dict[str, str], argv: list[str]) -> None:
    r = _run([*AS, *argv], dict(nowhere, SSH_ORIGINAL_COMMAND="git-upload-pack 'a/b'"))
    assert r.returncode == 1 and "misconfigured forced command" in r.stderr


def test_as_refuses_in_one_line_when_af_is_down(nowhere: dict[str, str]) -> None:
    r = _run([*AS, "user-1"], dict(nowhere, SSH_ORIGINAL_COMMAND="git-receive-pack 'team/p.git'"))
    assert r.returncode == 1
    assert r.stderr.startswith("applikant: the git service (af) cannot be reached")
    assert r.stderr.count("\n") == 1


def test_as_reports_a_missing_cookie(nowhere: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "cookie").unlink()
    r = _run([*AS, "user-1"], dict(nowhere, SSH_ORIGINAL_COMMAND="git-upload-pack 'a/b'"))
    assert r.returncode == 1 and "configuration problem" in r.stderr and "cookie" in r.stderr


def test_pre_receive_fails_closed_post_receive_spools(
    nowhere: dict[str, str], tmp_path: Path
) -> None:
    line = f"{'0' * 40} {'1' * 40} refs/heads/main\n"
    r = _run([*AH, "hooks/pre-receive"], nowhere, input=line, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("applikant: push refused, nothing changed: the git service (af)")
    r = _run(
        [*AH, "hooks/post-receive"],
        dict(nowhere, APPLIKANT_USER="user-3", APPLIKANT_REPO="a/b"),
        input=line,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "recorded when the git service is back" in r.stderr
    from applikant.frontend import spool

    [path] = spool.pending(str(tmp_path / "spool"))
    record = spool.read(path)
    assert record["spooled_by"] == "ah"
    req = record["request"]
    assert req["hook"] == "post-receive" and req["stdin"] == line and req["cwd"] == str(tmp_path)
    assert req["env"]["APPLIKANT_USER"] == "user-3"
    assert "PATH" not in req["env"]
    assert path.endswith(req["event_id"] + ".json")


@pytest.mark.parametrize("hook", ["update", "post-update"])
def test_passthrough_hooks_exit_at_once(nowhere: dict[str, str], hook: str) -> None:
    r = _run([*AH, f"hooks/{hook}"], nowhere, input="")
    assert (r.returncode, r.stderr) == (0, "")


def test_unknown_hook(nowhere: dict[str, str]) -> None:
    r = _run([*AH, "hooks/pre-commit"], nowhere, input="")
    assert r.returncode == 1 and "does not handle" in r.stderr


def test_keys_for_prints_nothing_when_af_is_down(nowhere: dict[str, str]) -> None:
    argv = [sys.executable, "-m", "applikant.frontend.keys_for", "git", "SHA256:abc"]
    r = _run(argv, nowhere)
    assert r.returncode == 1 and r.stdout == "" and "cannot be reached" in r.stderr
    r = _run(argv[:-1], nowhere)
    assert r.returncode == 2 and r.stdout == ""


def test_git_environ_keeps_only_protocol() -> None:
    env = as_cmd.git_environ(
        {
            "PATH": "/bin",
            "GIT_DIR": "/etc",
            "GIT_PROTOCOL": "version=2",
            "APPLIKANT_USER": "user-9",
            "GIT_EXEC_PATH": "/tmp",
        },
        "user-1",
        "a/b",
        "/etc/x.toml",
    )
    assert env == {
        "PATH": "/bin",
        "GIT_PROTOCOL": "version=2",
        "APPLIKANT_USER": "user-1",
        "APPLIKANT_REPO": "a/b",
        "APPLIKANT_CONFIG": "/etc/x.toml",
    }


def test_parse_config_option() -> None:
    assert parse_config_option(["--config", "/x", "user-1"]) == ("/x", ["user-1"])
    assert parse_config_option(["-c", "/x", "user-1"]) == ("/x", ["user-1"])
    assert parse_config_option(["--config=/x", "user-1"]) == ("/x", ["user-1"])
    assert parse_config_option(["user-1"]) == (None, ["user-1"])


def test_event_ids_are_uuid4() -> None:
    import uuid

    ids = {ah_cmd.new_event_id() for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        assert uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value


def test_collect_env() -> None:
    env = ah_cmd.collect_env(
        {
            "GIT_DIR": ".",
            "APPLIKANT_USER": "user-1",
            "PWD": "/r",
            "HOME": "/root",
            "SSH_CONNECTION": "x",
        }
    )
    assert env == {"GIT_DIR": ".", "APPLIKANT_USER": "user-1", "PWD": "/r"}


def test_as_push_path_imports_none_of_the_slow_stdlib_modules() -> None:
    """What ``as`` loads for a push (and the fork that execs receive-pack) leaves
    out ``signal`` (enum, functools, collections), ``warnings`` and text codecs:
    each costs every push and fetch."""
    code = (
        "import json, sys; before = set(sys.modules);"
        " import applikant.frontend.as_cmd, applikant.frontend.afclient,"
        " applikant.frontend.hookpipe, applikant.frontend.ah_cmd, applikant.frontend.pushid;"
        " applikant.frontend.pushid._boot_id();"
        " from applikant.node import lean; lean.restore_sigpipe();"
        " print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = json.loads(out.stdout)
    slow = {"signal", "enum", "functools", "collections", "warnings", "typing", "encodings.ascii"}
    assert slow.isdisjoint(loaded), sorted(slow & set(loaded))


def test_default_as_command_runs_as_without_site(
    nowhere: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """af's default forced command: this Python with ``-S`` and as_launch.py; it
    runs ``as`` (it refuses, checks its arguments, reaches for af) with nothing
    ``site`` would add on its path."""
    from applikant.frontend.daemon import default_as_command

    monkeypatch.delenv("APPLIKANT_CONFIG", raising=False)
    argv = default_as_command().split()
    assert argv[:2] == [os.path.abspath(sys.executable), "-S"]
    assert argv[2].endswith("/applikant/frontend/as_launch.py")
    env = dict(nowhere, SSH_ORIGINAL_COMMAND="git-upload-pack '../x'")
    r = _run([*argv, "user-1"], env)
    assert (r.returncode, r.stderr) == (1, "applikant: '..' is not allowed in repository names\n")
    r = _run([*argv, "root"], env)
    assert r.returncode == 1 and "misconfigured forced command" in r.stderr
    env["SSH_ORIGINAL_COMMAND"] = "git-receive-pack 'team/p.git'"
    r = _run([*argv, "user-1"], env)
    assert r.returncode == 1
    assert r.stderr.startswith("applikant: the git service (af) cannot be reached")


def test_default_as_command_falls_back_for_an_unquotable_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from applikant.frontend import daemon

    monkeypatch.delenv("APPLIKANT_CONFIG", raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/my venv/bin/python")
    assert daemon.default_as_command() == "/opt/my venv/bin/applikant-as"
