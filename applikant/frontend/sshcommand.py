"""Parse ``SSH_ORIGINAL_COMMAND`` into a request ``as`` may act on; never a shell.

sshd hands the forced command ``as`` whatever the client asked to run, verbatim,
in ``SSH_ORIGINAL_COMMAND``. Everything in it is hostile until proven otherwise.
This module turns it into a :class:`Request` (a verb from a closed list and a
normalised ``owner/name``) or raises :class:`CommandRefused` with one line fit
to show the user. ``as`` then execs git with an argument vector it builds
itself: no string from the client ever reaches a shell or an option position.

Accepted (git sends the first form, with single quotes)::

    git-upload-pack '<repo>'     git-receive-pack '<repo>'     git-upload-archive '<repo>'
    git upload-pack '<repo>'     (the same three with a space, as old clients send)
    info                         (``help`` is taken as ``info``)

``<repo>`` may be unquoted, single- or double-quoted; a leading ``/`` or ``~/``
and a trailing ``.git`` are dropped, so ``/team/project.git``,
``~/team/project`` and ``team/project`` all name ``team/project``. A leading
``/`` is relative to the repo root (as gitolite does it): ``/etc/passwd``
names the repo ``etc/passwd`` under the root, which does not exist, and never
the system file.

Cost matters: ``as`` imports this on every ``git fetch``. It imports nothing
beyond ``os`` (already loaded by the interpreter): no ``re`` (5 ms),
no ``dataclasses`` (24 ms, it pulls in ``inspect``), no ``shlex``; the
grammar is small enough to check by hand.
"""

import os

__all__ = [
    "MAX_COMMAND_LENGTH",
    "MAX_PART_LENGTH",
    "VERBS",
    "CommandRefused",
    "Request",
    "check_repo",
    "parse",
    "resolve_repo_path",
]

#: Verbs and the access each needs. ``git-upload-archive`` only reads.
VERBS = {
    "git-upload-pack": "read",
    "git-receive-pack": "write",
    "git-upload-archive": "read",
}

MAX_COMMAND_LENGTH = 1024
MAX_PART_LENGTH = 64

_SHELL_REFUSAL = (
    "interactive shells are not available; use git (or 'info' to list your repositories)"
)
_USAGE = "allowed commands: git-upload-pack, git-receive-pack, git-upload-archive, info"

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_PART_CHARS = _ALNUM | frozenset("._-")
# Characters a shell would give meaning to. Quotes are absent on purpose: they
# are legal as the outer pair around the path and are checked where the path is
# unquoted. Anything else outside the name charset is caught by check_repo.
_METACHARACTERS = frozenset(";|&$`<>(){}[]*?!\\#\n\r")


class CommandRefused(Exception):
    """The command is not one ``as`` will run; ``message`` is one line for the user.

    The message never echoes the client's input beyond a verb already known to be
    safe, so it cannot carry control characters back to the user's terminal.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Request:
    """What the client asked for, already validated.

    ``verb``: one of :data:`VERBS` or ``"info"``; ``repo``: ``"owner/name"``
    (``None`` for info); ``access``: ``"read"`` or ``"write"``.

    A hand-written frozen value class rather than a dataclass: importing
    ``dataclasses`` costs more than all of ``as``'s own work.
    """

    __slots__ = ("verb", "repo", "access")
    verb: str
    repo: str | None
    access: str

    def __init__(self, verb: str, repo: str | None, access: str) -> None:
        object.__setattr__(self, "verb", verb)
        object.__setattr__(self, "repo", repo)
        object.__setattr__(self, "access", access)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Request is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Request is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.verb, self.repo, self.access) == (other.verb, other.repo, other.access)

    def __hash__(self) -> int:
        return hash((self.verb, self.repo, self.access))

    def __repr__(self) -> str:
        return f"Request(verb={self.verb!r}, repo={self.repo!r}, access={self.access!r})"


def parse(command: str | None) -> Request:
    """Turn ``SSH_ORIGINAL_COMMAND`` into a :class:`Request`.

    ``None`` (no command: the client wants a shell) and blank strings are refused
    like any other bad input. Raises :class:`CommandRefused`; never anything else
    for any ``str`` input, including ones with surrogate escapes from a
    non-UTF-8 environment.
    """
    if command is None or command.strip(" ") == "":
        raise CommandRefused(_SHELL_REFUSAL)
    if len(command) > MAX_COMMAND_LENGTH:
        raise CommandRefused(f"command too long (more than {MAX_COMMAND_LENGTH} characters)")
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:
        # os.environ decodes invalid bytes as lone surrogates; they cannot be
        # encoded back, which is how non-UTF-8 input shows up here.
        raise CommandRefused("command is not valid UTF-8") from None
    if "\x00" in command:
        raise CommandRefused("command contains a NUL character")
    for ch in command:
        if ch in _METACHARACTERS:
            raise CommandRefused("shell metacharacters are not allowed in the command")
        if ch < " " or ch == "\x7f":
            raise CommandRefused("control characters are not allowed in the command")

    words = command.split(" ")
    words = [w for w in words if w]
    if words[0] in ("info", "help"):
        if len(words) != 1:
            raise CommandRefused("'info' takes no arguments")
        return Request("info", None, "read")

    if words[0] == "git" and len(words) >= 2:
        verb = "git-" + words[1]
        rest = words[2:]
    else:
        verb = words[0]
        rest = words[1:]
    if verb not in VERBS:
        raise CommandRefused(f"unknown command; {_USAGE}")
    for word in rest:
        if word.lstrip("'\"").startswith("-"):
            raise CommandRefused(f"{verb}: options are not allowed")
    if len(rest) != 1:
        # An option before the path, a second path, or a path with a space:
        # none of them is something git sends.
        if not rest:
            raise CommandRefused(f"{verb}: missing repository path")
        raise CommandRefused(f"{verb}: expected exactly one repository path")
    return Request(verb, _normalise(_unquote(rest[0], verb), verb), VERBS[verb])


def _unquote(arg: str, verb: str) -> str:
    """Strip one pair of matching outer quotes; any other quote is refused."""
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'\"":
        arg = arg[1:-1]
    if "'" in arg or '"' in arg:
        raise CommandRefused(f"{verb}: unbalanced or embedded quotes in the repository path")
    return arg


def _normalise(path: str, verb: str) -> str:
    """``/owner/name.git`` -> ``owner/name``, then check it strictly."""
    if path.startswith("-"):
        raise CommandRefused(f"{verb}: options are not allowed")
    if path.startswith("~/"):
        path = path[2:]
    elif path.startswith("/"):
        path = path[1:]
    if path.endswith(".git"):
        path = path[:-4]
    check_repo(path)
    return path


def check_repo(repo: str) -> None:
    """Raise :class:`CommandRefused` unless ``repo`` is exactly a safe ``owner/name``.

    Each part: 1 to 64 characters of ``[A-Za-z0-9._-]``, starting with a letter or
    digit, without ``..`` and not ending in ``.git`` (that would make
    ``x.git`` and ``x.git.git`` one name) or ``.lock`` (git's lock files).
    """
    if ".." in repo:
        raise CommandRefused("'..' is not allowed in repository names")
    parts = repo.split("/")
    if len(parts) != 2:
        raise CommandRefused("repository must be given as owner/name")
    for part in parts:
        if not part:
            raise CommandRefused("repository must be given as owner/name")
        if len(part) > MAX_PART_LENGTH:
            raise CommandRefused(
                f"repository name parts are limited to {MAX_PART_LENGTH} characters"
            )
        if part[0] not in _ALNUM:
            raise CommandRefused("repository names must start with a letter or digit")
        for ch in part:
            if ch not in _PART_CHARS:
                raise CommandRefused(
                    "repository names may only contain letters, digits, '.', '_' and '-'"
                )
        if part.endswith((".git", ".lock")):
            raise CommandRefused("repository names may not end in '.git' or '.lock'")


def resolve_repo_path(repo_root: str, repo: str) -> str:
    """Return ``<root>/<owner>/<name>.git`` (absolute), its own directory.

    Raises :class:`CommandRefused` when ``repo`` is not a safe ``owner/name`` or
    when the path, with every symlink resolved, is not exactly
    ``<real root>/<owner>/<name>.git``: an owner directory or a repository that
    is a symlink, inside the root (``bob/alias.git -> ../alice/secret.git``
    would serve alice's repository to whoever may read bob's) or out of it, is
    refused. The root itself may be a symlink. The path need not exist. The
    returned path is the unresolved one, so messages and hooks see the name the
    admin expects.
    """
    from applikant.fsutil import real_path  # (here: `as` imports this module, not this)

    check_repo(repo)
    owner, name = repo.split("/")
    root = os.path.abspath(repo_root)
    path = os.path.join(root, owner, name + ".git")
    real_root = real_path(root)
    if real_path(path) != os.path.join(real_root, owner, name + ".git"):
        raise CommandRefused(f"repository {repo} is not its own directory in the repository root")
    return path
