"""Validation of every name and short text the manager stores.

Names end up in file system paths (`<root>/<owner>/<name>.git`), in forced-command
lines of authorized_keys and in URLs, so they are held to a small safe charset:
`[A-Za-z0-9][A-Za-z0-9._-]*`, no `..`, at most 64 characters. Logins and group
names share one namespace (both own repositories), are compared case-insensitively,
and may not look like a stable id (`user-42`), which would make lookups ambiguous.

Every function returns the normalised value or raises BadRequest with a message
that names the offending input and the rule it broke.
"""

from __future__ import annotations

import re

from applikant.manager.errors import BadRequest

NAME_MAX = 64
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_ID_LIKE_RE = re.compile(r"(user|group|key|repo)-[0-9]+\Z", re.IGNORECASE)

# Owner names that would shadow routes of the web UI or words the manager uses
# itself ("system" is the actor of local admin commands, "anonymous" appears in
# access reasons). Compared case-insensitively.
RESERVED_OWNERS = frozenset(
    {
        "admin",
        "anonymous",
        "api",
        "assets",
        "explore",
        "favicon.ico",
        "git",
        "groups",
        "health",
        "help",
        "info",
        "login",
        "logout",
        "metrics",
        "new",
        "org",
        "orgs",
        "repo",
        "repos",
        "robots.txt",
        "settings",
        "static",
        "system",
        "user",
        "users",
    }
)

ACCESS_LEVELS = ("read", "write", "admin")
_OBJECT_ID_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
# The characters git's check-ref-format refuses, plus space and DEL.
_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_PATTERN_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:\\]")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\Z")


def _describe(value: str) -> str:
    """Quote a user's input for an error message, without echoing a huge blob."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def check_name(value: object, what: str = "name") -> str:
    """Validate one path component (a login, a group or repository name).

    Returns the value unchanged. Raises BadRequest saying which rule was broken.
    """
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    if value == "":
        raise BadRequest(f"{what} must not be empty")
    if "\x00" in value:
        raise BadRequest(f"{what} {_describe(value)} contains a NUL byte")
    if not value.isascii():
        raise BadRequest(
            f"{what} {_describe(value)} contains non-ASCII characters; "
            "use letters, digits, '.', '_' and '-'"
        )
    if len(value) > NAME_MAX:
        raise BadRequest(f"{what} {_describe(value)} is longer than {NAME_MAX} characters")
    if "/" in value:
        raise BadRequest(f"{what} {_describe(value)} must not contain '/'")
    if ".." in value:
        raise BadRequest(f"{what} {_describe(value)} must not contain '..'")
    if value[0] in ".-":
        raise BadRequest(f"{what} {_describe(value)} must not start with '.' or '-'")
    if not _NAME_RE.match(value):
        raise BadRequest(
            f"{what} {_describe(value)} may only contain letters, digits, '.', '_' and '-'"
        )
    if value.lower().endswith(".lock"):
        raise BadRequest(f"{what} {_describe(value)} must not end in '.lock'")
    return value


def check_owner_name(value: object, what: str = "login") -> str:
    """Validate a login or group name: a safe name that is neither reserved nor id-like."""
    name = check_name(value, what)
    if name.lower() in RESERVED_OWNERS:
        raise BadRequest(f"{what} {name!r} is reserved; choose another")
    if _ID_LIKE_RE.match(name):
        raise BadRequest(f"{what} {name!r} looks like an id (such as user-42); choose another")
    return name


def check_repo_name(value: object) -> str:
    """Validate a repository name; one `.git` suffix is accepted and stripped.

    A name that still ends in `.git` after stripping is refused: `owner/x.git` would
    otherwise mean two different repositories.
    """
    if isinstance(value, str) and value.lower().endswith(".git"):
        value = value[: -len(".git")]
        if value == "":
            raise BadRequest("repository name must not be just '.git'")
    name = check_name(value, "repository name")
    if name.lower().endswith(".git"):
        raise BadRequest(f"repository name {name!r} must not end in '.git'")
    return name


def parse_repo_path(value: object) -> tuple[str, str]:
    """Parse `owner/name` (optionally `.git`, optionally one leading `/`) into a pair.

    The leading slash is tolerated because git clients send `/owner/name.git` for
    `ssh://host/owner/name.git` URLs. Anything else that is not exactly two safe
    components is refused, so the result is always safe to join under a root.
    """
    if not isinstance(value, str):
        raise BadRequest("repository path must be a string")
    if "\x00" in value:
        raise BadRequest("repository path contains a NUL byte")
    if len(value) > 2 * NAME_MAX + 6:
        raise BadRequest(f"repository path {_describe(value)} is too long")
    path = value[1:] if value.startswith("/") else value
    parts = path.split("/")
    if len(parts) != 2:
        raise BadRequest(f"repository path {_describe(value)} must have the form owner/name")
    owner = check_name(parts[0], "owner name")
    return owner, check_repo_name(parts[1])


def check_access_level(value: object) -> str:
    """Validate an access level: one of read, write, admin."""
    if value not in ACCESS_LEVELS:
        raise BadRequest(f"access level must be one of read, write, admin, not {value!r}")
    assert isinstance(value, str)
    return value


def check_text(value: object, what: str, max_len: int, multiline: bool = False) -> str:
    """Validate free text (display names, descriptions, titles): bounded, no control chars."""
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be a string")
    if len(value) > max_len:
        raise BadRequest(f"{what} is longer than {max_len} characters")
    allowed = "\n\t" if multiline else ""
    for ch in value:
        if (ord(ch) < 0x20 or ord(ch) == 0x7F) and ch not in allowed:
            raise BadRequest(f"{what} must not contain control characters")
    return value


def check_email(value: object) -> str:
    """Validate an email address loosely (`x@y`, no spaces); the empty string means none."""
    text = check_text(value, "email", 254)
    if text and not _EMAIL_RE.match(text):
        raise BadRequest(f"email {_describe(text)} is not an address of the form name@host")
    return text


def check_password(value: object) -> str:
    """Validate a new password: 8 to 1024 characters (the upper bound caps hashing work)."""
    if not isinstance(value, str):
        raise BadRequest("password must be a string")
    if len(value) < 8:
        raise BadRequest("password must be at least 8 characters long")
    if len(value) > 1024:
        raise BadRequest("password must be at most 1024 characters long")
    return value


def _check_ref_like(value: str, what: str, bad_chars: re.Pattern[str]) -> str:
    if value == "" or len(value) > 255:
        raise BadRequest(f"{what} must be 1 to 255 characters long")
    if not value.isascii():
        raise BadRequest(f"{what} {_describe(value)} contains non-ASCII characters")
    if bad_chars.search(value):
        raise BadRequest(f"{what} {_describe(value)} contains a character git refuses in ref names")
    if ".." in value or "@{" in value or "//" in value or value == "@":
        raise BadRequest(f"{what} {_describe(value)} is not a valid git ref name")
    if value[0] in "-/" or value.endswith(("/", ".", ".lock")):
        raise BadRequest(f"{what} {_describe(value)} is not a valid git ref name")
    if any(part.startswith(".") for part in value.split("/")):
        raise BadRequest(f"{what} {_describe(value)} has a component starting with '.'")
    return value


def check_branch_name(value: object) -> str:
    """Validate a branch name (without `refs/heads/`), following git check-ref-format."""
    if not isinstance(value, str):
        raise BadRequest("branch name must be a string")
    if value.startswith("refs/"):
        raise BadRequest(f"branch name {_describe(value)} must not start with 'refs/'")
    return _check_ref_like(value, "branch name", _REF_BAD_CHARS)


def check_refname(value: object) -> str:
    """Validate a full ref name as pushed (`refs/heads/main`, `refs/tags/v1`)."""
    if not isinstance(value, str):
        raise BadRequest("ref name must be a string")
    if not value.startswith("refs/"):
        raise BadRequest(f"ref name {_describe(value)} must start with 'refs/'")
    return _check_ref_like(value, "ref name", _REF_BAD_CHARS)


def check_branch_pattern(value: object) -> str:
    """Validate a protected-branch pattern; a leading `refs/heads/` is stripped.

    Patterns are fnmatch-style (`*`, `?`, `[...]`) on the branch name; note that `*`
    also matches `/`, so `release/*` covers `release/1.0/hotfix` too.
    """
    if not isinstance(value, str):
        raise BadRequest("branch pattern must be a string")
    if value.startswith("refs/heads/"):
        value = value[len("refs/heads/") :]
    return _check_ref_like(value, "branch pattern", _PATTERN_BAD_CHARS)


def check_object_id(value: object, what: str) -> str:
    """Validate a git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits."""
    if not isinstance(value, str) or not _OBJECT_ID_RE.match(value):
        raise BadRequest(f"{what} must be a 40- or 64-digit lowercase hex object id")
    return value


def is_zero_id(value: str) -> bool:
    """True for the all-zero id git uses for "no object" (creation or deletion)."""
    return value.strip("0") == ""
