"""One push, one event id: derived from its receive-pack, the same in both hooks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from applikant.frontend import pushid
from applikant.frontend.ah_cmd import push_fields


def test_a_live_process_is_named_and_its_id_is_stable() -> None:
    me = pushid.identify(os.getpid())
    assert me is not None and me["pid"] == os.getpid()
    assert pushid.identify(os.getpid()) == me
    value = uuid.UUID(str(me["event_id"]))
    assert str(value) == me["event_id"] and value.version == 5
    assert pushid.alive(os.getpid(), me["start"])
    assert not pushid.alive(os.getpid(), int(str(me["start"])) + 1)  # a reused pid


def test_another_process_has_another_id() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        other = pushid.identify(child.pid)
        assert other is not None
        assert other["event_id"] != pushid.identify(os.getpid())["event_id"]  # type: ignore[index]
    finally:
        child.kill()
        child.wait()
    assert pushid.identify(child.pid) is None
    assert not pushid.alive(child.pid, other["start"])


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = pushid.start_time(child.pid)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    try:
        assert start is not None and not pushid.alive(child.pid, start)
    finally:
        child.wait()


def test_bad_input() -> None:
    assert pushid.start_time(0) is None
    assert pushid.start_time(2**30) is None
    for pid, start in ((None, 1), ("1", 1), (1, None), (-1, 1), (0, 0)):
        assert not pushid.alive(pid, start)


def test_push_fields() -> None:
    fields = push_fields(os.getpid())
    assert fields["push"]["pid"] == os.getpid()
    assert fields["event_id"] == pushid.identify(os.getpid())["event_id"]  # type: ignore[index]
    gone = push_fields(None)
    assert gone["push"] is None and uuid.UUID(gone["event_id"]).version == 4


def test_only_receive_pack_names_a_push() -> None:
    assert not pushid.is_receive_pack(os.getpid())
    assert not pushid.is_receive_pack(2**30)
    # a hook run by hand (its parent is no receive-pack) gets an event id of its own
    assert push_fields(os.getpid(), check=True)["push"] is None
    child = subprocess.Popen(["bash", "-c", "exec -a git-receive-pack sleep 30"])
    try:
        deadline = time.monotonic() + 10
        while not pushid.is_receive_pack(child.pid):  # bash has not exec'd yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        fields = push_fields(child.pid, check=True)
        assert fields["push"]["pid"] == child.pid
    finally:
        child.kill()
        child.wait()
