"""The diff parser on git's own output: every kind of change, quoted paths, and the
cuts that keep a huge change cheap."""

from __future__ import annotations

import subprocess
from pathlib import Path

from applikant.web import diff
from harness.gitenv import git_env


def _repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    env = git_env(tmp_path)
    work = tmp_path / "w"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], env=env, check=True)
    return work, env


def _git(work: Path, env: dict[str, str], *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True).stdout


def test_every_kind_of_change(tmp_path: Path) -> None:
    work, env = _repo(tmp_path)
    (work / "a.txt").write_text("a\nb\n")
    (work / "old").write_text("same\n" * 3)
    (work / "gone").write_text("bye\n")
    (work / "bin").write_bytes(b"\x00\x01")
    _git(work, env, "add", ".")
    _git(work, env, "commit", "-qm", "one")
    (work / "a.txt").write_text("a\nB\nc\n")
    (work / "a.txt").chmod(0o755)
    _git(work, env, "mv", "old", "new")
    (work / "gone").unlink()
    (work / "bin").write_bytes(b"\x00\x02")
    (work / "tab\there").write_text("x\n")
    _git(work, env, "add", "-A")
    _git(work, env, "commit", "-qm", "two")
    out = _git(
        work, env, "-c", "core.quotepath=false", "show", "--format=", *diff.DIFF_OPTIONS, "HEAD"
    )
    result = diff.parse(out, complete=True)
    files = {f.path: f for f in result.files}
    assert set(files) == {"a.txt", "new", "gone", "bin", "tab\there"}
    a = files["a.txt"]
    assert (a.status, a.added, a.deleted, a.mode_changed) == ("M", 2, 1, True)
    assert [(line.kind, line.old, line.new, line.text) for line in a.hunks[0].lines] == [
        ("ctx", 1, 1, "a"),
        ("del", 2, None, "b"),
        ("add", None, 2, "B"),
        ("add", None, 3, "c"),
    ]
    assert files["new"].status == "R" and files["new"].old_path == "old" and not files["new"].hunks
    assert files["gone"].status == "D" and files["gone"].deleted == 1
    assert files["bin"].binary and files["bin"].added is None
    assert files["tab\there"].status == "A" and files["tab\there"].added == 1
    rows = diff.split_rows(a.hunks[0])
    assert [(r[0] and r[0].text, r[1] and r[1].text) for r in rows] == [
        ("a", "a"),
        ("b", "B"),
        (None, "c"),
    ]


def test_large_changes_are_cut_with_notes(tmp_path: Path) -> None:
    work, env = _repo(tmp_path)
    (work / "big.txt").write_text("".join(f"{i}\n" for i in range(5000)))
    (work / "small.txt").write_text("s\n")
    _git(work, env, "add", ".")
    _git(work, env, "commit", "-qm", "big")
    out = _git(work, env, "show", "--format=", *diff.DIFF_OPTIONS, "HEAD")
    limits = diff.Limits(file_lines=100, total_lines=150)
    result = diff.parse(out, complete=True, limits=limits)
    big, small = result.files
    assert big.shown_lines == 100 and "5,000 lines changed, the first 100" in big.cut
    assert small.shown_lines == 1 and not small.cut
    # Output cut by size: the last file read says so.
    cut = diff.parse(out[:3000], complete=False)
    assert cut.files[0].cut and "too large" in cut.files[0].cut
    assert cut.files[1].cut  # never reached: not shown
