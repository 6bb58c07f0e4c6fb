"""An acknowledged change survives SIGKILL of the process that made it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from applikant.manager.passwords import Passwords
from applikant.manager.store import Store

CHILD = textwrap.dedent(
    """
    import sys, time
    from applikant.manager.passwords import Passwords
    from applikant.manager.store import SYSTEM, Store

    store = Store(sys.argv[1], passwords=Passwords(fast=True))
    for i in range(int(sys.argv[2])):
        store.users.add(f"user{i}", actor=SYSTEM)
        store.repos.create(f"user{i}/repo", actor=SYSTEM)
    print("acked", flush=True)
    time.sleep(60)
    """
)


def test_acknowledged_change_survives_sigkill(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    repo_root = str(Path(__file__).resolve().parents[2])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, path, "20"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=repo_root,
        env={**os.environ, "PYTHONPATH": repo_root},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acked"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    # The WAL was not checkpointed; reopening must replay it.
    assert Path(path + "-wal").exists()
    with Store(path, passwords=Passwords(fast=True)) as store:
        assert store.users.get("user19").login == "user19"
        assert store.repos.get("user19/repo").full_name == "user19/repo"
        assert store.audit.counts().users == 20
        assert len(store.audit.query(action="repo.create", limit=100)) == 20
