"""fsutil.real_path gives os.path.realpath's answer, whatever the path is."""

import os
from pathlib import Path

import pytest

from applikant.fsutil import real_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "root" / "alice" / "r.git").mkdir(parents=True)
    (tmp_path / "root" / "alice" / "file").write_text("x")
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "link-root").symlink_to(tmp_path / "root")
    (tmp_path / "root" / "bob").symlink_to("alice")  # relative, inside
    (tmp_path / "root" / "alice" / "out.git").symlink_to(tmp_path / "elsewhere" / "deep")
    (tmp_path / "root" / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "root" / "loop").symlink_to("loop")
    return tmp_path


CASES = [
    "root",
    "root/alice/r.git",
    "root/alice/r.git/",
    "root/alice/file",
    "root/alice/file/",  # not a directory
    "link-root/alice/r.git",
    "root/bob/r.git",
    "root/alice/out.git",
    "root/alice/out.git/..",  # .. after a symlink: from where it points
    "root/alice/missing.git",  # need not exist
    "root/missing/x.git",
    "root/dangling",
    "root/dangling/x",
    "root/loop",
    "root/loop/x",
    "root//alice/./r.git",
    "",
]


@pytest.mark.parametrize("rel", CASES)
def test_the_same_answer_as_realpath(tree: Path, rel: str) -> None:
    absolute = str(tree / rel) if rel else str(tree)
    assert real_path(absolute) == os.path.realpath(absolute)


@pytest.mark.parametrize("rel", ["root/bob/r.git", "root/missing", ""])
def test_relative_paths_too(tree: Path, rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree / "link-root")
    assert real_path(rel) == os.path.realpath(rel)
    assert real_path("../" + rel) == os.path.realpath("../" + rel)
