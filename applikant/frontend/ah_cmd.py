"""``ah``, the universal hook, in Python: for pushes that do not come through ``as``.

Every hook of every managed repository links to a shell script af writes
(:mod:`applikant.frontend.hookpipe`). During a push over SSH, ``as`` answers
that script itself over two pipes, and no Python starts for any hook. Anywhere
else (a push made on the git host, another program running receive-pack) the
script runs this program with the hook's name in ``APPLIKANT_HOOK`` (or git
runs it directly when a hook links here: the name is then ``argv[0]``).

It sends af (``af_hook_server``, local name on af's node) the hook name, its
arguments, its stdin, the environment variables that matter (``GIT_*``,
``APPLIKANT_*``, ``PWD``) and the working directory; prints the messages am
answers with on stderr (git shows them to the pusher as ``remote: ...``) and
exits with am's verdict. ``as`` sends the very same request.

Which hooks a push needs:

* ``pre-receive``: the decision for all refs of the push at once. When af or
  am cannot be reached the push is refused (fails closed) and nothing changes.
* ``post-receive``: records the push (audit log, builds, webhooks). It cannot
  undo anything, so it never fails the push. af wrote the push's intent before
  its refs moved, so the push is recorded even when this hook cannot reach af;
  a copy is spooled here too (:mod:`applikant.frontend.spool`) with the exact
  refs. Both hooks carry the push's event id (:mod:`applikant.frontend.pushid`),
  so am records it once.
* ``update`` and ``post-update`` are not installed by af (pre-receive already
  sees every ref, one process per ref would be pure cost; post-update only
  serves dumb HTTP). If a repo still links them here, they exit 0 at once.

Imports neither trio, pydantic nor typer.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs an import on every hook
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HOOKS", "collect_env", "main", "new_event_id", "push_fields", "spool_locally"]

#: Hooks that are forwarded to af; any other name exits 0 at once.
HOOKS = ("pre-receive", "post-receive")
_PASSTHROUGH = ("update", "post-update")

#: Seconds af has to answer. A pre-receive answer includes am's decision and a
#: git call per branch, so it gets longer than the interactive calls of ``as``.
TIMEOUTS = {"pre-receive": 20.0, "post-receive": 10.0}

MAX_STDIN = 8 * 1024 * 1024  # ~60,000 refs; a push of more is refused


def _say(message: str) -> None:
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except OSError:
        pass


def collect_env(environ: dict[str, str]) -> dict[str, str]:
    """The variables af needs (quarantine paths, the pusher, the config)."""
    return {k: v for k, v in environ.items() if k.startswith(("GIT_", "APPLIKANT_")) or k == "PWD"}


def new_event_id() -> str:
    """A random UUID (version 4) as text, without importing ``uuid``."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _read_stdin() -> str | None:
    data = sys.stdin.buffer.read(MAX_STDIN + 1)
    if len(data) > MAX_STDIN:
        return None
    return data.decode("utf-8", "replace")


def push_fields(pid: int | None, check: bool = False) -> dict[str, Any]:
    """``{"event_id", "push"}`` of the push carried by receive-pack ``pid``: the
    same in its pre- and post-receive hooks (pushid.py); a random event id and
    no ``push`` when that process cannot be seen (or, with ``check``, does not
    run receive-pack: a hook run by hand)."""
    from applikant.frontend import pushid

    if pid and check and not pushid.is_receive_pack(pid):
        pid = None
    found = pushid.identify(pid) if pid else None
    if found is None:
        return {"event_id": new_event_id(), "push": None}
    return {"event_id": found["event_id"], "push": {"pid": pid, "start": found["start"]}}


def spool_locally(raw: dict | None, request: dict) -> str | None:
    """Write the event to af's spool ourselves; the path, or None when impossible.

    ``raw`` is the config table when already read.
    """
    from applikant import envconfig
    from applikant.envconfig import load_raw
    from applikant.frontend import spool

    try:
        raw = raw if raw is not None else load_raw()
        af = envconfig.section(raw, "af")
        directory = af.get("spool_dir") or os.path.join(envconfig.data_dir(raw), "spool")
        by = "as" if "APPLIKANT_HOOK_PIPE" in os.environ else "ah"
        return spool.write(directory, request["event_id"], {"request": request, "spooled_by": by})
    except (OSError, ValueError, envconfig.ConfigError):
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the hook named by ``argv[0]``; returns the exit status."""
    argv = list(sys.argv if argv is None else argv)
    hook = os.path.basename(argv[0]) if argv else ""
    if hook not in HOOKS and hook not in _PASSTHROUGH:
        # run by the hook wrapper script (hookpipe.py), which names the hook
        hook = os.environ.get("APPLIKANT_HOOK", hook)
    if hook in _PASSTHROUGH:
        return 0
    if hook not in HOOKS:
        _say(f"applikant: ah does not handle the {hook or '?'} hook; nothing done")
        return 0 if hook.startswith("post-") else 1

    from applikant.frontend.afclient import Client, Unreachable

    stdin = _read_stdin()
    if stdin is None:
        _say("applikant: push refused: too many refs in one push")
        return 1
    request = {
        "hook": hook,
        "args": argv[1:],
        "stdin": stdin,
        "env": collect_env(dict(os.environ)),
        "cwd": os.getcwd(),
        **push_fields(os.getppid(), check=True),  # our parent: the push's receive-pack
    }
    client = None
    try:
        client = Client()
        reply = client.call(
            "af_hook_server", "handle_hook", request, prefix="ah", timeout=TIMEOUTS[hook]
        )
        client.close()
    except Unreachable as exc:
        if hook == "pre-receive":
            _say(f"applikant: push refused, nothing changed: {exc}")
            return 1
        # af wrote the push's intent before its refs moved; a copy here, with the
        # same event id, gives af the exact refs (am records it once).
        spool_locally(client.raw if client is not None else None, request)
        _say("applikant: the push is done; it will be recorded when the git service is back")
        return 0
    ok = isinstance(reply, dict) and reply.get("ok") is True
    messages = reply.get("messages", []) if isinstance(reply, dict) else []
    for message in messages if isinstance(messages, list) else []:
        _say(str(message))
    if hook == "pre-receive" and not ok and not messages:
        _say("applikant: push refused")
    return 0 if ok or hook == "post-receive" else 1


if __name__ == "__main__":
    sys.exit(main())
