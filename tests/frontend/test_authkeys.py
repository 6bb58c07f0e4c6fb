"""authorized_keys lines, the rendered file and its atomic replacement."""

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from applikant.frontend.authkeys import (
    FORCED_OPTIONS,
    HEADER,
    InvalidKey,
    forced_command_line,
    keys_for_output,
    parse_key,
    render,
    write_atomic,
)

AS = "/usr/local/bin/applikant-as"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real public key lines of each common type, made by ssh-keygen."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for kt, extra in [("ed25519", []), ("rsa", ["-b", "2048"]), ("ecdsa", ["-b", "256"])]:
        p = d / kt
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kt, *extra, "-N", "", "-C", f"me@laptop {kt}", "-f", str(p)],
            check=True,
        )
        out[kt] = (d / f"{kt}.pub").read_text().strip()
    return out


def test_forced_command_line(keys: dict[str, str]) -> None:
    keytype, blob, *_ = keys["ed25519"].split()
    line = forced_command_line(keys["ed25519"], "user-42", AS)
    assert line == f'command="{AS} user-42",{FORCED_OPTIONS} {keytype} {blob} user-42'
    assert "laptop" not in line
    assert FORCED_OPTIONS == "no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty"


@pytest.mark.parametrize("kt", ["ed25519", "rsa", "ecdsa"])
def test_every_key_type_parses_and_its_line_keeps_the_key(keys: dict[str, str], kt: str) -> None:
    # Fingerprints are am's (applikant/manager/sshkeys.py, checked against ssh-keygen there).
    assert parse_key(keys[kt]) == tuple(keys[kt].split()[:2])
    line = forced_command_line(keys[kt], "user-1", AS)
    assert " ".join(keys[kt].split()[:2]) in line and line.startswith('command="')


def test_sshd_accepts_the_line(keys: dict[str, str], tmp_path: Path) -> None:
    """ssh-keygen parses authorized_keys lines with options like sshd does."""
    f = tmp_path / "authorized_keys"
    f.write_text(render([("user-1", keys["ed25519"]), ("user-2", keys["rsa"])], AS))
    out = subprocess.run(["ssh-keygen", "-lf", str(f)], check=True, capture_output=True, text=True)
    assert len(out.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    "user_id",
    [
        "user-",
        "user-x",
        "42",
        "user-42 evil",
        'user-1"',
        "user-1\n",
        "USER-1",
        "user-١",
        "user-" + "9" * 21,
    ],
)
def test_bad_user_id(keys: dict[str, str], user_id: str) -> None:
    with pytest.raises(InvalidKey, match="user id"):
        forced_command_line(keys["ed25519"], user_id, AS)


@pytest.mark.parametrize(
    "as_command",
    [
        "applikant-as",
        "./as",
        '/bin/as"',
        "/bin/as\n",
        "/bin/as; id",
        "/bin/a$s",
        "/bin/as  x",
        "/bin/as ",
        "",
        "/bin/a's",
    ],
)
def test_bad_as_command(keys: dict[str, str], as_command: str) -> None:
    with pytest.raises(InvalidKey, match="as command"):
        forced_command_line(keys["ed25519"], "user-1", as_command)
    with pytest.raises(InvalidKey):
        render([("user-1", keys["ed25519"])], as_command)


def test_as_command_with_interpreter(keys: dict[str, str]) -> None:
    line = forced_command_line(
        keys["ed25519"], "user-1", "/opt/venv/bin/python3 -m applikant.frontend.as_cmd"
    )
    assert line.startswith('command="/opt/venv/bin/python3 -m applikant.frontend.as_cmd user-1",')


def test_bad_keys(keys: dict[str, str]) -> None:
    keytype, blob, *_ = keys["ed25519"].split()
    rsa_blob = keys["rsa"].split()[1]
    bad = [
        "",
        keytype,
        f'command="sh" {keytype} {blob}',  # options smuggled in front
        f"no-pty {keytype} {blob}",
        f"ssh-dss {blob}",
        f"{keytype} {blob[:-4]}",  # truncated base64
        f"{keytype} {blob}!",
        f"{keytype} {rsa_blob}",  # type mismatch
        f'{keytype} {blob}\ncommand="sh" {keytype} {blob}',
        f"{keytype} {blob}\r",
        f"{keytype} AAAA",
        f"{keytype} {'A' * 20000}",
    ]
    for line in bad:
        with pytest.raises(InvalidKey):
            parse_key(line)


def test_comment_with_tricks_is_dropped(keys: dict[str, str]) -> None:
    keytype, blob, *_ = keys["ed25519"].split()
    line = forced_command_line(f'{keytype} {blob} ",command="sh', "user-1", AS)
    assert line.count('"') == 2 and line.endswith(" user-1")


def test_render(keys: dict[str, str]) -> None:
    content = render(
        [
            ("user-1", keys["ed25519"]),
            ("user-2", "garbage"),
            ("user-3", keys["rsa"]),
            ("user-4", keys["ed25519"]),
        ],
        AS,
    )
    assert content.startswith(HEADER) and "Generated" in HEADER and "af" in HEADER
    body = content[len(HEADER) :].splitlines()
    assert body[0].startswith(f'command="{AS} user-1"')
    assert body[1] == "# skipped an invalid key of user-2"
    assert body[2].startswith(f'command="{AS} user-3"')
    assert body[3] == "# skipped a key of user-4 already listed for another user"
    assert content.endswith("\n")
    assert render([], AS) == HEADER


def test_render_hides_bad_user_id(keys: dict[str, str]) -> None:
    content = render([("user-1\ncommand=x", keys["ed25519"])], AS)
    assert content == HEADER + "# skipped an invalid key of an unknown user\n"


def test_keys_for_output(keys: dict[str, str]) -> None:
    assert keys_for_output([], AS) == ""
    out = keys_for_output([("user-7", keys["ecdsa"]), ("user-8", "junk")], AS)
    assert out == forced_command_line(keys["ecdsa"], "user-7", AS) + "\n"


# -- write_atomic ----------------------------------------------------------------


def test_write_atomic_mode_and_content(tmp_path: Path) -> None:
    p = tmp_path / "authorized_keys"
    write_atomic(str(p), "one\n")
    assert p.read_text() == "one\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    write_atomic(str(p), "two\n", mode=0o644)
    assert p.read_text() == "two\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["authorized_keys"]  # no temp files left


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_write_atomic_owner(tmp_path: Path) -> None:
    p = tmp_path / "authorized_keys"
    write_atomic(str(p), "x\n", owner_uid=4242, owner_gid=4343)
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (4242, 4343)
    write_atomic(str(p), "y\n", owner_gid=4444)
    st = p.stat()
    assert (st.st_uid, st.st_gid) == (0, 4444)


def test_write_atomic_failure_leaves_old_file(tmp_path: Path) -> None:
    p = tmp_path / "authorized_keys"
    write_atomic(str(p), "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(str(p), "bad \udcff\n")
    assert p.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["authorized_keys"]


def test_write_atomic_reader_never_sees_partial_file(tmp_path: Path, keys: dict[str, str]) -> None:
    """A reader in a loop while the file is rewritten: every read is one whole version."""
    p = tmp_path / "authorized_keys"
    versions = [
        render([(f"user-{i}", keys["ed25519"])] * (1 + i % 7) + [(f"user-{i}", keys["rsa"])], AS)
        for i in range(40)
    ]
    # Pad so each version spans several pages: a partial write would show.
    versions = [
        v + f"# {'x' * 60}\n" * (200 + 37 * i) + f"# end {i}\n" for i, v in enumerate(versions)
    ]
    allowed = set(versions)
    write_atomic(str(p), versions[0])
    stop = threading.Event()
    reads: list[int] = []
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            data = p.read_text()
            if data not in allowed:
                errors.append(data[-40:])
            reads.append(1)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(5):
            for v in versions:
                write_atomic(str(p), v)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert len(reads) > 10


def test_as_command_paths_may_hold_underscores(keys: dict[str, str]) -> None:
    line = forced_command_line(
        keys["ed25519"], "user-7", "/srv/my_venv/bin/applikant-as --config /etc/app_likant.toml"
    )
    assert line.startswith(
        'command="/srv/my_venv/bin/applikant-as --config /etc/app_likant.toml user-7"'
    )
