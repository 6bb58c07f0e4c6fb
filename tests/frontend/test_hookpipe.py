"""The hook wrapper script and as's side of the pipes, with a real /bin/sh and a
stand-in for git-receive-pack that runs the hooks the way git does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from applikant.frontend import hookpipe

OLD, NEW = "1" * 40, "2" * 40


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A directory with hooks linked to the wrapper, whose fallback ah logs its call."""
    fake_ah = tmp_path / "fake-ah"
    fake_ah.write_text('#!/bin/sh\necho "ah $APPLIKANT_HOOK $*" >&2\ncat >/dev/null\nexit 3\n')
    fake_ah.chmod(0o755)
    wrapper = tmp_path / "hook.sh"
    wrapper.write_text(hookpipe.wrapper_script(str(fake_ah)))
    wrapper.chmod(0o755)
    hooks = tmp_path / "repo" / "hooks"
    hooks.mkdir(parents=True)
    for name in ("pre-receive", "post-receive", "update"):
        (hooks / name).symlink_to(wrapper)
    # receive-pack's stand-in: pre-receive, and post-receive only if that passed
    fake_rp = tmp_path / "fake-receive-pack"
    fake_rp.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "{OLD} {NEW} refs/heads/main" | GIT_QUARANTINE_PATH=./objects/q hooks/pre-receive || exit 1\n'
        "hooks/update refs/heads/main x y || exit 9\n"
        f'printf "%s\\n" "{OLD} {NEW} refs/heads/main" | hooks/post-receive\n'
        "echo done\n"
    )
    fake_rp.chmod(0o755)
    return tmp_path


def _run(
    repo: Path, verdicts: dict[str, tuple[bool, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, list, str]:
    seen: list = []

    def serve(hook: str, env: dict[str, str], stdin: str) -> tuple[bool, list[str]]:
        seen.append((hook, env, stdin))
        return verdicts[hook]

    # the child's output goes to a file: the test process's stdout is pytest's
    out = repo / "out.txt"
    saved = os.dup(1), os.dup(2)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        monkeypatch.chdir(repo / "repo")  # git runs hooks in the repository
        code = hookpipe.run_with_hooks([str(repo / "fake-receive-pack")], dict(os.environ), serve)
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
    return code, seen, out.read_text()


def test_push_accepted(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, seen, out = _run(
        repo,
        {
            "pre-receive": (True, ["applikant: fine"]),
            "post-receive": (True, ["applikant: recorded", "."]),
        },
        monkeypatch,
    )
    assert code == 0
    assert [s[0] for s in seen] == ["pre-receive", "post-receive"]
    assert seen[0][1] == {"GIT_QUARANTINE_PATH": "./objects/q"}
    assert seen[0][2] == f"{OLD} {NEW} refs/heads/main\n"
    assert out == "applikant: fine\napplikant: recorded\napplikant:\ndone\n"


def test_push_refused(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, seen, out = _run(
        repo, {"pre-receive": (False, ["applikant: no way", "second line"])}, monkeypatch
    )
    assert code == 1
    assert [s[0] for s in seen] == ["pre-receive"]
    assert out == "applikant: no way\nsecond line\n"


def test_without_as_the_wrapper_runs_ah(repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != hookpipe.MARKER}
    r = subprocess.run(
        [str(repo / "repo" / "hooks" / "pre-receive"), "arg"],
        input="x\n",
        env=env,
        capture_output=True,
        text=True,
    )
    assert (r.returncode, r.stderr) == (3, "ah pre-receive arg\n")
    r = subprocess.run(
        [str(repo / "repo" / "hooks" / "update")], env=env, capture_output=True, text=True
    )
    assert (r.returncode, r.stderr) == (0, "")


def test_a_hook_without_as_behind_the_pipes_fails(repo: Path) -> None:
    """APPLIKANT_HOOK_PIPE set but no fd 7: the hook fails, so pre-receive refuses."""
    r = subprocess.run(
        [str(repo / "repo" / "hooks" / "pre-receive")],
        input="x\n",
        env={**os.environ, hookpipe.MARKER: "1"},
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0


def test_exit_status_of_a_killed_child(tmp_path: Path) -> None:
    prog = tmp_path / "suicide"
    prog.write_text("#!/bin/sh\nkill -TERM $$\n")
    prog.chmod(0o755)
    assert hookpipe.run_with_hooks([str(prog)], dict(os.environ), lambda *a: (True, [])) == 128 + 15


def test_parse_request() -> None:
    hook, env, stdin = hookpipe.parse_request(
        "hook post-receive\nenv GIT_OBJECT_DIRECTORY /x\nenv GIT_QUARANTINE_PATH \n"
        f"{OLD} {NEW} refs/heads/a\n{OLD} {NEW} refs/tags/b"
    )
    assert (hook, env) == ("post-receive", {"GIT_OBJECT_DIRECTORY": "/x"})
    assert stdin == f"{OLD} {NEW} refs/heads/a\n{OLD} {NEW} refs/tags/b\n"
    for bad in ("", "hook update", "hook pre-receive\nenv PATH /bin", "nonsense"):
        with pytest.raises(ValueError):
            hookpipe.parse_request(bad)


def test_wrapper_refuses_odd_ah_paths() -> None:
    for bad in ("relative/ah", "/a'b", "/a\nb"):
        with pytest.raises(ValueError):
            hookpipe.wrapper_script(bad)


def test_on_idle_while_the_child_works(tmp_path: Path) -> None:
    prog = tmp_path / "slow"
    prog.write_text("#!/bin/sh\nsleep 0.35\n")
    prog.chmod(0o755)
    calls: list[int] = []
    code = hookpipe.run_with_hooks(
        [str(prog)],
        dict(os.environ),
        lambda *a: (True, []),
        on_idle=lambda: calls.append(1),
        idle_after=0.1,
    )
    assert code == 0 and len(calls) >= 2


@pytest.mark.parametrize("count", [1, hookpipe.BUILTIN_LINES, hookpipe.BUILTIN_LINES + 1, 300])
def test_every_ref_line_reaches_as(repo: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """The script copies the first lines itself and the rest with cat: none lost,
    none doubled, in order, a last line without its newline included."""
    lines = [f"{OLD} {i:040x} refs/heads/b{i}" for i in range(count)]
    feed = repo / "feed.txt"
    feed.write_text("\n".join(lines))  # no newline after the last one
    fake_rp = repo / "fake-receive-pack"
    fake_rp.write_text(f"#!/bin/sh\nhooks/pre-receive < {feed} || exit 1\necho done\n")
    code, seen, out = _run(repo, {"pre-receive": (True, [])}, monkeypatch)
    assert code == 0 and out == "done\n"
    assert seen[0][2] == "".join(line + "\n" for line in lines)


def test_the_child_gets_the_pipes_and_default_signals_only(tmp_path: Path) -> None:
    """receive-pack is started with fds 0-2, 7 and 8 and nothing else of as's, and
    with SIGPIPE and SIGXFSZ at their defaults (Python ignores both)."""
    report = tmp_path / "report.txt"
    prog = tmp_path / "probe"
    prog.write_text(
        f"#!/bin/sh\nls /proc/self/fd > {report}\ngrep '^SigIgn' /proc/$$/status >> {report}\n"
    )
    prog.chmod(0o755)
    # run from a fresh process, as `as` is: pytest's own inheritable fds stay out
    code = (
        "import os, sys; from applikant.frontend import hookpipe; "
        "sys.exit(hookpipe.run_with_hooks(['probe'], dict(os.environ), lambda *a: (True, [])))"
    )
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)  # probe found in PATH
    *fds, sigign = report.read_text().split("\n")[:-1]
    # (what ls inherited, and its own directory fd)
    assert {"0", "1", "2", "7", "8"} <= set(fds) and len(fds) == 6, fds
    ignored = int(sigign.split()[1], 16)
    for signal_number in (13, 25):  # SIGPIPE, SIGXFSZ
        assert not ignored & (1 << (signal_number - 1)), sigign


def test_a_program_that_cannot_run_starts_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    env = {**os.environ, "PATH": str(tmp_path)}
    with pytest.raises(FileNotFoundError):
        hookpipe.run_with_hooks(["git-receive-pack"], env, lambda *a: (True, []))
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        hookpipe.run_with_hooks([str(not_executable)], env, lambda *a: (True, []))
    assert set(os.listdir("/proc/self/fd")) == before
