"""af's authorized_keys kept rendered per key: the same file as a full render,
changed line by line, written atomically."""

from __future__ import annotations

import random
import stat
from pathlib import Path

import pytest

from applikant.frontend.authkeys import InvalidKey, render
from applikant.frontend.keysfile import KeysFile
from harness.bulk import key_line

AS = "/usr/local/bin/applikant-as"


def key(i: int, user: int | None = None) -> dict[str, str]:
    line, fingerprint = key_line(random.Random(i))
    return {"user": f"user-{user or i}", "public_key": line, "fingerprint": fingerprint}


def full(keys: list[dict[str, str]]) -> str:
    """The file for `keys` in the order af learned them: newest first."""
    return render([(k["user"], k["public_key"], k["fingerprint"]) for k in reversed(keys)], AS)


def test_the_same_file_as_a_full_render(tmp_path: Path) -> None:
    kf = KeysFile(str(tmp_path / "ssh" / "authorized_keys"), AS)
    keys = [key(i, user=i % 3 + 1) for i in range(1, 20)]
    bad = {"user": "user-9", "public_key": "ssh-ed25519 !!!", "fingerprint": "SHA256:bad"}
    kf.replace([*keys[:10], bad])
    assert kf.content() == full([*keys[:10], bad]) and len(kf) == 11
    assert "# skipped an invalid key of user-9" in kf.content()
    for k in keys[10:]:
        assert kf.add(k)
    assert not kf.add(keys[0])  # already there
    assert kf.remove(keys[4]["fingerprint"]) and not kf.remove(keys[4]["fingerprint"])
    assert kf.remove_user("user-2") and not kf.remove_user("user-2")

    def kept(ks: list[dict[str, str]]) -> list[dict[str, str]]:
        return [k for k in ks if k is not keys[4] and k["user"] != "user-2"]

    assert kf.content() == full([*kept(keys[:10]), bad, *kept(keys[10:])])
    newest = kept(keys[10:])[-1]
    assert kf.lines()[0].split()[-2] == newest["public_key"].split()[1]  # newest first
    kf.write(kf.lines())
    path = tmp_path / "ssh" / "authorized_keys"
    assert path.read_text() == kf.content()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["authorized_keys"]  # no temp file left


def test_the_lines_written_are_the_ones_taken(tmp_path: Path) -> None:
    """A worker thread writes from a copy: later changes are the next write's."""
    kf = KeysFile(str(tmp_path / "authorized_keys"), AS)
    kf.add(key(1))
    lines = kf.lines()
    kf.add(key(2))
    kf.write(lines)
    assert (tmp_path / "authorized_keys").read_text() == full([key(1)])


def test_a_bad_as_command_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey):
        KeysFile(str(tmp_path / "k"), "applikant-as; rm -rf /")
