"""Hooks answered by ``as`` over two pipes: a push without a Python process per hook.

Every hook of every managed repository links to one small shell script
(:func:`wrapper_script`, written by af). Under ``as`` (git over SSH), ``as``
does not exec ``git-receive-pack`` but runs it as its child with two extra
file descriptors: fd 7, where a hook writes its request, and fd 8, where it
reads the verdict. ``as`` already holds a link to af (from the access check),
so a hook costs a ``/bin/sh`` start and one call to af: about 2 ms, against
~30 ms for a Python ``ah`` (interpreter, imports, connection, handshake),
paid twice per push. Anywhere else (a push on the git host itself, another
program running receive-pack), ``APPLIKANT_HOOK_PIPE`` is unset and the script
runs ``ah`` with the hook's name in ``APPLIKANT_HOOK``: the same request goes to
af the slow way, with the same verdict.

The request, written by the script (one message per hook, line-based; git's
quarantine paths and ref names contain no newline)::

    hook pre-receive
    env GIT_OBJECT_DIRECTORY <value>
    env GIT_ALTERNATE_OBJECT_DIRECTORIES <value>
    env GIT_QUARANTINE_PATH <value>
    <old> <new> <ref>          (the hook's stdin, as git gave it)
                               (an empty line, skipped)
    .

The script copies the first ``BUILTIN_LINES`` ref lines with the shell's own
``read`` and hands any more to ``cat``: a push of a few branches starts no
process besides the shell.

The reply: ``ok`` or ``no``, then the lines for the pusher (git shows them as
``remote: ...``), then ``.``.

Failure modes: if ``as`` dies, the script's write fails and the hook fails:
pre-receive refuses the push (fails closed); a post-receive that ``as`` could
not deliver to af is spooled by ``as`` itself, as ``ah`` does.

Stdlib only (``as`` imports it): ``os``, ``select``, ``fcntl`` (and lean.py for
the signals git must get back); no ``__future__``, ``signal`` or
``collections.abc``, which would cost ``as`` ~3 ms on every push.
"""

import fcntl
import os
import select

from applikant.node import lean

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Serve = Callable[[str, dict[str, str], str], tuple[bool, list[str]]]

__all__ = [
    "HOOKS",
    "MARKER",
    "REPLY_FD",
    "REQUEST_FD",
    "encode_reply",
    "parse_request",
    "run_with_hooks",
    "wrapper_script",
]

REQUEST_FD = 7
REPLY_FD = 8
MARKER = "APPLIKANT_HOOK_PIPE"
HOOKS = ("pre-receive", "post-receive")
ENV_VARS = ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")
MAX_REQUEST = 16 * 1024 * 1024
#: Ref lines the hook script copies with the shell's own `read` (a byte per system
#: call) before it hands the rest to `cat` (a process): a push of a branch or
#: two then starts no process besides the shell.
BUILTIN_LINES = 8


def wrapper_script(ah_program: str) -> str:
    """The shell script every hook links to; ``ah_program`` is the Python ``ah``."""
    if "'" in ah_program or "\n" in ah_program or not ah_program.startswith("/"):
        raise ValueError("the ah program must be an absolute path without quotes")
    env_lines = "".join(f"    printf 'env {v} %s\\n' \"${v}\"\n" for v in ENV_VARS)
    return f"""#!/bin/sh
# Written by Applikant's af: every hook of every managed repository links here.
# Under `as` (git over SSH) the hook is answered by `as` over fds {REQUEST_FD} and {REPLY_FD};
# anywhere else it runs ah. See applikant/frontend/hookpipe.py.
hook=${{0##*/}}
case $hook in
  pre-receive|post-receive) ;;
  *) exit 0 ;;
esac
if [ "${MARKER}" = 1 ]; then
  {{
    printf 'hook %s\\n' "$hook"
{env_lines}    n=0
    while IFS= read -r line || [ -n "$line" ]; do
      printf '%s\\n' "$line"
      n=$((n + 1))
      [ $n -lt {BUILTIN_LINES} ] || {{ cat; break; }}
    done
    printf '\\n.\\n'  # (an empty line is skipped; it ends a last line that had no newline)
  }} >&{REQUEST_FD} || exit 1
  IFS= read -r verdict <&{REPLY_FD} || exit 1
  while IFS= read -r line <&{REPLY_FD} && [ "$line" != . ]; do
    printf '%s\\n' "$line" >&2
  done
  [ "$verdict" = ok ]
  exit
fi
APPLIKANT_HOOK=$hook exec '{ah_program}' "$@"
"""


def parse_request(text: str) -> tuple[str, dict[str, str], str]:
    """``(hook, env, stdin)`` from one request; ``ValueError`` if malformed."""
    lines = text.split("\n")
    if not lines or not lines[0].startswith("hook ") or lines[0][5:] not in HOOKS:
        raise ValueError("malformed hook request")
    env: dict[str, str] = {}
    refs = []
    for line in lines[1:]:
        if line.startswith("env "):
            name, _, value = line[4:].partition(" ")
            if name not in ENV_VARS:
                raise ValueError("malformed hook request")
            if value:
                env[name] = value
        elif line:
            refs.append(line + "\n")
    return lines[0][5:], env, "".join(refs)


def encode_reply(ok: bool, messages: list[str]) -> bytes:
    lines = ["ok" if ok else "no"]
    for message in messages:
        for part in str(message).splitlines():
            lines.append("applikant:" if part == "." else part)
    lines.append(".")
    return ("\n".join(lines) + "\n").encode("utf-8", "replace")


def _spawn(argv: list[str], env: dict[str, str], request_w: int, reply_r: int) -> int:
    """Start ``argv`` (found in ``env``'s PATH) with ``request_w`` at fd 7 and
    ``reply_r`` at fd 8; its pid once it has exec'd. OSError if it cannot run.

    posix_spawn (a vfork) copies nothing of this process, where a fork copied its
    page tables and faulted in the pages both then touched: ~0.5 ms of CPU per push.
    """
    program = _which(argv[0], env)
    # copies above the fixed numbers (close-on-exec), so no dup2 clobbers the other
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, REPLY_FD + 1) for fd in (request_w, reply_r)]
    try:
        return os.posix_spawn(
            program,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, high[0], REQUEST_FD),
                (os.POSIX_SPAWN_DUP2, high[1], REPLY_FD),
            ],
            setsigdef=lean.IGNORED_SIGNALS,  # Python ignores them; git must not
        )
    finally:
        for fd in high:
            os.close(fd)


def _which(file: str, env: dict[str, str]) -> str:
    """``file`` as exec would find it along ``env``'s PATH (os.defpath when unset)."""
    if "/" in file:
        return file
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory, file)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    raise FileNotFoundError(2, "not found in PATH", file)


def run_with_hooks(
    argv: list[str],
    env: dict[str, str],
    serve: "Serve",
    on_idle: "Callable[[], None] | None" = None,
    idle_after: float = 2.0,
    on_start: "Callable[[int], None] | None" = None,
) -> int:
    """Run ``argv`` (git-receive-pack) as a child with the hook pipes; answer each
    hook request with ``serve(hook, env, stdin) -> (ok, messages)``; return the
    child's exit status (128 + signal number when killed). OSError if ``argv``
    cannot be run (nothing was started then).

    ``on_idle`` is called when no hook request came for ``idle_after`` seconds
    (``as`` closes its link to af then, rather than let af see a silent peer
    during a long upload). ``on_start`` is told the child's pid (the push's
    receive-pack, see pushid.py). The child keeps stdin, stdout and stderr: the SSH
    channel. The loop ends when the child exits (not at end-of-file on the pipe: a ``git gc --auto`` it
    leaves running in the background may hold the pipe open much longer).
    """
    env = dict(env)
    env[MARKER] = "1"
    req_r, req_w = os.pipe()  # (close-on-exec: the child gets only fds 7 and 8)
    rep_r, rep_w = os.pipe()
    try:
        pid = _spawn(argv, env, req_w, rep_r)
    except BaseException:
        os.close(req_r)
        os.close(rep_w)
        raise
    finally:
        os.close(req_w)
        os.close(rep_r)
    if on_start is not None:
        on_start(pid)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(req_r, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    buf = b""
    pipe_open = True
    try:
        while True:
            ready = {fd for fd, _ in poller.poll(int(idle_after * 1000))}
            if not ready and on_idle is not None:
                on_idle()
            if req_r in ready and pipe_open:
                data = os.read(req_r, 65536)
                if not data:
                    poller.unregister(req_r)
                    pipe_open = False
                buf += data
                while True:
                    end = buf.find(b"\n.\n")
                    if end < 0:
                        break
                    message, buf = buf[:end], buf[end + 3 :]
                    _answer(message, rep_w, serve)
                if len(buf) > MAX_REQUEST:
                    buf = b""
                    _write(
                        rep_w,
                        encode_reply(
                            False, ["applikant: push refused: the hook request is too large"]
                        ),
                    )
            if pidfd in ready:
                break
    finally:
        os.close(pidfd)
        os.close(req_r)
        os.close(rep_w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _answer(message: bytes, rep_w: int, serve: "Serve") -> None:
    try:
        hook, env, stdin = parse_request(message.decode("utf-8", "replace"))
    except ValueError:
        _write(rep_w, encode_reply(False, ["applikant: malformed hook request; push refused"]))
        return
    ok, messages = serve(hook, env, stdin)
    _write(rep_w, encode_reply(ok, messages))


def _write(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BrokenPipeError:
        pass  # the hook is gone; git decides what that means
