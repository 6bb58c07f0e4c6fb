"""``as``, the sshd forced command: ``applikant-as [--config PATH] user-42 [SHA256:...]``.

The fingerprint names the key the session was let in with (af records its last
use); lines written before it was there still work without it.

sshd runs it for every SSH login with a key af put in authorized_keys (or that
``keys-for`` printed), whatever the client asked to run; the client's wish is in
``SSH_ORIGINAL_COMMAND``. ``as``:

1. parses that wish (:mod:`applikant.frontend.sshcommand`: a closed list of
   verbs and one ``owner/name``; anything else is refused here, before any
   network call);
2. asks af (``af_auth.check_access``, on af's node, which asks am) whether the
   user may read or write the repo, where it lives, and its canonical name
   (names are found case-insensitively: ``ALICE/Secret`` reads and pushes
   ``alice/secret``);
3. on yes, replaces itself with ``git-upload-pack`` / ``git-receive-pack`` /
   ``git-upload-archive`` and the absolute repo path as one argv element (no
   shell), with ``APPLIKANT_USER`` and ``APPLIKANT_REPO`` set for the hooks;
4. on no, prints one line on stderr (``applikant: <reason>``) and exits 1.

``info`` lists the repos the user can read, with the access they have (the
first hundred: af asks am for one page).

When af or am cannot be reached: one line within 5 seconds, exit 1, nothing
executed. Imports neither trio, pydantic nor typer: it starts on every fetch.
"""

# No `from __future__ import annotations`: importing __future__ costs every fetch.
import os
import sys

from applikant.frontend.sshcommand import VERBS, CommandRefused, parse

TYPE_CHECKING = False  # typing itself costs 2 ms to import, on every fetch
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from applikant.frontend.afclient import Client

__all__ = ["CALL_TIMEOUT", "git_environ", "main"]

#: Seconds af has to answer (it asks am with a shorter deadline of its own).
CALL_TIMEOUT = 2.5

_DIGITS = frozenset("0123456789")


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"applikant: {message}\n")
        sys.stderr.flush()
    except OSError:
        pass


def _valid_user(user: str) -> bool:
    rest = user[5:] if user.startswith("user-") else ""
    return 0 < len(rest) <= 20 and all(c in _DIGITS for c in rest)


def git_environ(
    environ: dict[str, str], user: str, repo: str, config_path: str | None
) -> dict[str, str]:
    """The environment git (and through it ``ah``) runs with.

    sshd passes almost nothing on; of ``GIT_*`` only ``GIT_PROTOCOL`` (protocol
    v2, ``AcceptEnv``) is kept, so no variable can redirect git to another
    repository or object store.
    """
    env = {k: v for k, v in environ.items() if not k.startswith(("GIT_", "APPLIKANT_"))}
    if "GIT_PROTOCOL" in environ:
        env["GIT_PROTOCOL"] = environ["GIT_PROTOCOL"]
    env["APPLIKANT_USER"] = user
    env["APPLIKANT_REPO"] = repo
    if config_path:
        env["APPLIKANT_CONFIG"] = os.path.abspath(config_path)
    return env


def _info(client: "Client", user: str) -> int:
    from applikant.frontend.afclient import Unreachable

    try:
        reply = client.call("af_auth", "info", {"user": user}, prefix="as", timeout=CALL_TIMEOUT)
    except Unreachable as exc:
        _say(str(exc))
        return 1
    info = reply if isinstance(reply, dict) else {}
    repos = info.get("repos", [])
    lines = [
        f"hello {info.get('login') or user}, this is applikant on {info.get('host', '?')}",
        "",
    ]
    for entry in repos:
        level = str(entry.get("level", "read"))
        flags = {"read": " R  ", "write": " R W", "admin": " R W A"}.get(level, " R  ")
        lines.append(f"{flags:<7} {entry.get('repo')}")
    if not repos:
        lines.append(" (no repositories)")
    elif info.get("more"):
        lines += ["", f" (the first {len(repos)}; the web UI lists every one)"]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``as``; returns the exit status, or never returns (exec) on success.

    Run as the program (no `argv`), it ends the process itself once its work is
    done (afclient.exit_now) rather than return to a slow interpreter exit."""
    status = _main(argv)
    if argv is None:
        from applikant.frontend.afclient import exit_now

        exit_now(status)
    return status


def _main(argv: list[str] | None) -> int:
    from applikant.frontend.afclient import Client, Unreachable, parse_config_option

    args = list(sys.argv[1:] if argv is None else argv)
    config_path, args = parse_config_option(args)
    if (
        len(args) not in (1, 2)
        or not _valid_user(args[0])
        or (len(args) == 2 and not args[1].startswith("SHA256:"))
    ):
        _say(
            "misconfigured forced command: expected "
            "`applikant-as [--config PATH] user-N [SHA256:fingerprint]`"
        )
        return 1
    user = args[0]
    key = args[1] if len(args) == 2 else None
    try:
        request = parse(os.environ.get("SSH_ORIGINAL_COMMAND"))
    except CommandRefused as exc:
        _say(exc.message)
        return 1
    try:
        client = Client(config_path)
    except Unreachable as exc:
        _say(str(exc))
        return 1
    if request.verb == "info":
        return _info(client, user)

    try:
        reply = client.call(
            "af_auth",
            "check_access",
            {
                "user": user,
                "repo": request.repo,
                "access": request.access,
                "verb": request.verb,
                "key": key,
            },
            prefix="as",
            timeout=CALL_TIMEOUT,
        )
    except Unreachable as exc:
        _say(str(exc))
        return 1
    if not isinstance(reply, dict) or reply.get("allowed") is not True:
        reason = reply.get("reason") if isinstance(reply, dict) else None
        _say(str(reason or f"{user} has no {request.access} access to {request.repo}"))
        return 1
    path = reply.get("path")
    if not isinstance(path, str) or not path.startswith("/") or request.verb not in VERBS:
        _say("the git service gave no repository path; nothing was run")
        return 1
    # The canonical name af answers (ALICE/Secret is alice/secret), for the hooks.
    repo = reply.get("repo")
    if not isinstance(repo, str) or repo.casefold() != (request.repo or "").casefold():
        repo = request.repo or ""
    env = git_environ(dict(os.environ), user, repo, config_path)
    sys.stderr.flush()
    if request.verb == "git-receive-pack":
        # as stays the parent and answers the hooks itself (hookpipe.py).
        from applikant.frontend import hookpipe

        push: dict[str, Any] = {}
        try:
            return hookpipe.run_with_hooks(
                [request.verb, path],
                env,
                _hook_server(client, user, repo, path, push),
                on_idle=client.close,
                on_start=lambda pid: push.update(pid=pid),
            )
        except OSError as exc:
            _say(f"cannot run {request.verb}: {exc.strerror}")
            return 1
        finally:
            client.close()
    client.close()
    try:
        from applikant.node import lean

        lean.restore_sigpipe()
        lean.execvpe(request.verb, [request.verb, path], env)
    except OSError as exc:
        _say(f"cannot run {request.verb}: {exc.strerror}")
        return 1
    return 1  # not reached


def _hook_server(
    client: "Client", user: str, repo: str, path: str, push: "dict[str, Any]"
) -> "Callable[[str, dict[str, str], str], tuple[bool, list[str]]]":
    """What answers the hooks of one push: the same request ``ah`` would send,
    over the link to af this process already has. ``push`` gets the pid of
    the push's receive-pack (``run_with_hooks``), which names the push."""
    from applikant.frontend.afclient import Unreachable
    from applikant.frontend.ah_cmd import TIMEOUTS, push_fields, spool_locally

    def serve(hook: str, env: dict[str, str], stdin: str) -> tuple[bool, list[str]]:
        if "event_id" not in push:
            push.update(push_fields(push.get("pid")))
        request = {
            "hook": hook,
            "args": [],
            "stdin": stdin,
            "env": {**env, "APPLIKANT_USER": user, "APPLIKANT_REPO": repo},
            "cwd": path,
            "event_id": push["event_id"],
            "push": push.get("push"),
        }
        try:
            reply = client.call(
                "af_hook_server", "handle_hook", request, prefix="as", timeout=TIMEOUTS[hook]
            )
        except Unreachable as exc:
            if hook == "pre-receive":
                return False, [f"applikant: push refused, nothing changed: {exc}"]
            spool_locally(client.raw, request)  # af also wrote the push's intent ahead
            return True, [
                "applikant: the push is done; it will be recorded when the git service is back"
            ]
        ok = isinstance(reply, dict) and reply.get("ok") is True
        messages = reply.get("messages") if isinstance(reply, dict) else None
        messages = [str(m) for m in messages] if isinstance(messages, list) else []
        if hook == "pre-receive" and not ok and not messages:
            messages = ["applikant: push refused"]
        return ok or hook == "post-receive", messages

    return serve


if __name__ == "__main__":
    sys.exit(main())
