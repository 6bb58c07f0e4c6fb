"""`applikant doctor`'s checks of what must not be lost: pushes not recorded yet,
dead letters, the disk reserve on each data filesystem, and (under `make run`'s
config) the sshd that `make run` started rather than the system's.

They read this host's files (af's spool, statvfs), so they answer when the
daemons do not. Each returns Checks like the others in doctor.py.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from ..diskspace import MIB, Reserve, existing, usage
from ..frontend import spool
from ..manager.store.engines import is_url

if TYPE_CHECKING:
    from ..config import Config
    from .doctor import Check

__all__ = ["check_disk_reserve", "check_events", "is_make_run", "make_run_sshd_checks"]

#: A push waiting longer than this for am is worth a warning.
WAITING_WARN_S = 60.0


def _check(name: str, status: str, found: str, fix: str = "") -> Check:
    from .doctor import Check

    return Check(name, status, found, fix)


def check_events(cfg: Config) -> list[Check]:
    """Pushes af has not got am to record yet, and those am refused for good."""
    directory = cfg.path(cfg.af.spool_dir, "spool")
    summary = spool.summary(directory)
    checks = []
    if summary["dead"]:
        letters = spool.dead_letters(directory, 3)
        reasons = "; ".join(f"{d['repo'] or '?'}: {d['reason'] or '?'}" for d in letters)
        checks.append(
            _check(
                "dead letters",
                "fail",
                f"{summary['dead']} push(es) the manager refused to record, in "
                f"{os.path.join(directory, spool.FAILED_DIR)} ({reasons})",
                "read each .reason file and fix its cause (e.g. re-create the repository), "
                f"then move the .json file back into {directory} to deliver it again, "
                "or delete both files to drop it",
            )
        )
    else:
        checks.append(_check("dead letters", "ok", "none"))
    waiting = summary["queued"] + summary["intents"]
    oldest = max(summary["oldest_queued_s"], summary["oldest_intent_s"])
    if waiting and oldest > WAITING_WARN_S:
        checks.append(
            _check(
                "pushes not recorded yet",
                "warn",
                f"{summary['queued']} event(s) queued and {summary['intents']} intent(s) in "
                f"{directory}, the oldest {oldest:.0f} s old",
                "is am up and reachable from af? af delivers them as soon as it can "
                "(its log says push_delivered or delivery_failed, with the reason)",
            )
        )
    else:
        checks.append(
            _check(
                "pushes not recorded yet",
                "ok",
                f"{waiting} waiting (in flight)" if waiting else "none waiting",
            )
        )
    return checks


def check_disk_reserve(cfg: Config) -> list[Check]:
    """Free space against the reserve on each filesystem that holds data."""
    db = cfg.path(cfg.am.db, "am.sqlite3")
    paths = [
        cfg.node.data_dir,
        cfg.path(cfg.af.repo_root, "repos"),
        cfg.path(cfg.af.spool_dir, "spool"),
    ]
    checks = []
    if is_url(db):
        checks.append(
            _check(
                "disk reserve (am's database)",
                "skip",
                "am's database is on PostgreSQL: its disk is the server's, and am keeps "
                "no reserve for it (watch that server's free space where it runs)",
            )
        )
    else:
        paths.insert(1, db)
    reserve = Reserve([], cfg.node.disk_reserve_mb)
    seen: dict[int, list[str]] = {}
    for path in paths:
        try:
            seen.setdefault(os.stat(existing(path)).st_dev, []).append(path)
        except OSError:
            continue
    for group in seen.values():
        name = f"disk reserve {existing(group[0])}"
        try:
            free, total = usage(group[0])
        except OSError as exc:
            checks.append(_check(name, "skip", str(exc)))
            continue
        need = reserve.reserve_of(total)
        found = (
            f"{free // MIB} MiB free of {total // MIB} MiB (reserve {need // MIB} MiB), holds "
            + (", ".join(group))
        )
        if free < need:
            checks.append(
                _check(
                    name,
                    "fail",
                    found,
                    "am and af refuse pushes and changes until space is freed: remove old "
                    "logs and backups, `git gc` large repositories, or grow the filesystem",
                )
            )
        elif free < 2 * need:
            checks.append(_check(name, "warn", found, "free space before it reaches the reserve"))
        else:
            checks.append(_check(name, "ok", found))
    return checks


# ---- make run's own sshd ---------------------------------------------------------


def _make_run_sshd_config(cfg: Config) -> str:
    return os.path.join(cfg.node.data_dir, "sshd", "sshd_config")


def is_make_run(cfg: Config) -> bool:
    """Whether this is `make run`'s config: development mode with its private sshd."""
    return cfg.node.dev_mode and os.path.isfile(_make_run_sshd_config(cfg))


def _banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def make_run_sshd_checks(cfg: Config) -> list[Check]:
    """The sshd `make run` started: answering, and reading af's authorized_keys."""
    path = _make_run_sshd_config(cfg)
    port, key_files = 0, []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split()
            if len(words) >= 2 and words[0] == "Port" and words[1].isdigit():
                port = int(words[1])
            elif words and words[0] == "AuthorizedKeysFile":
                key_files = words[1:]
    keys = cfg.path(cfg.af.authorized_keys, os.path.join(".ssh", "authorized_keys"))
    checks = []
    if port and _banner(port):
        checks.append(_check("sshd (make run)", "ok", f"answers on 127.0.0.1:{port} ({path})"))
    else:
        checks.append(
            _check(
                "sshd (make run)",
                "fail",
                f"nothing answers SSH on 127.0.0.1:{port or '?'} ({path})",
                "is `make run` still running? It restarts its sshd when it dies; "
                f"see {os.path.join(cfg.node.data_dir, 'sshd', 'sshd.log')}",
            )
        )
    if cfg.af.keys_mode == "file" and keys not in key_files:
        checks.append(
            _check(
                "sshd keys (make run)",
                "fail",
                f"sshd reads {' '.join(key_files) or 'no keys file'}, af writes {keys}",
                "run `make run` again: it writes both from one config",
            )
        )
    else:
        checks.append(_check("sshd keys (make run)", "ok", f"sshd reads af's {keys}"))
    return checks
