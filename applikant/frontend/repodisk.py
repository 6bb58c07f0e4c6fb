"""Bare repositories under the repo root: create, list, rename, delete, check hooks.

Layout: ``<root>/<owner>/<name>.git``, every name checked by
:func:`applikant.frontend.sshcommand.check_repo` and every path confined by
:func:`~applikant.frontend.sshcommand.resolve_repo_path` (the same rules ``as``
applies to what clients ask for, so the two can never disagree).

Guarantees:

* A repo is never seen under its name half-made or half-deleted. ``create``
  builds it under a hidden temp name beside its final place and renames it in;
  ``delete`` renames it to a hidden trash name first and removes it after.
  Hidden names start with ``.``, which no valid owner or repo name can.
* Mutating operations hold an ``flock`` on ``<root>/.applikant.lock``, so two
  af processes (or threads) cannot race a rename against a create.
* Hooks are symlinks to one program (``ah``); git runs them with ``argv[0]``
  naming the hook. ``core.hooksPath=hooks`` is set in every repo so that a
  ``core.hooksPath`` in a global or system gitconfig cannot switch our hooks
  (and with them the push policy) off.

Which hooks a push needs (each one forks a Python interpreter, ~45 ms):

* ``pre-receive``: the policy decision for all refs at once. Needed.
* ``post-receive``: records the push, enqueues builds, fires webhooks. Needed.
* ``update``: the same decision per ref, one fork per ref; redundant with
  pre-receive, which sees every ref.
* ``post-update``: only useful for ``git update-server-info`` (dumb HTTP),
  which Applikant does not serve.

:data:`ALL_HOOKS` is the default, as the design asks; :data:`ESSENTIAL_HOOKS`
is what a deployment that counts milliseconds needs, selectable with
``RepoDisk(..., hooks=ESSENTIAL_HOOKS)``.

``core.logAllRefUpdates=true`` is set: bare repos keep no reflog by default,
and after a force-push the reflog is the admin's way back. It costs one
appended line per updated ref. ``core.fsync=committed`` hardens loose objects
as well as packs and refs (git's default leaves loose objects out).

Several git hosts share the root (a shared file system); only the af that
manages the store calls the changing methods (repomanager.py, repoops.py). The
``flock`` is then a guard within that host; git's own lock files guard pushes.
"""

from __future__ import annotations

import builtins
import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from applikant.frontend.sshcommand import CommandRefused, check_repo, resolve_repo_path

__all__ = [
    "ALL_HOOKS",
    "ESSENTIAL_HOOKS",
    "CommandRefused",
    "RepoDisk",
    "RepoDiskError",
    "RepoExists",
    "RepoNotFound",
]

ALL_HOOKS = ("pre-receive", "update", "post-receive", "post-update")
ESSENTIAL_HOOKS = ("pre-receive", "post-receive")

# Hooks git runs on the server side of a push or on gc; any of them present
# and not ours is worth a warning from check_hooks.
_SERVER_HOOKS = frozenset(
    (
        *ALL_HOOKS,
        "proc-receive",
        "reference-transaction",
        "push-to-checkout",
        "pre-auto-gc",
        "post-rewrite",
    )
)
_GIT_TIMEOUT = 60
_CONFIG = (("core.hooksPath", "hooks"), ("core.logAllRefUpdates", "true"))
_LOCK_NAME = ".applikant.lock"
_TRASH_PREFIX = ".trash-"
_TMP_PREFIX = ".tmp-"


class RepoDiskError(Exception):
    """A repo operation that cannot be done as asked (the message says why)."""


class RepoExists(RepoDiskError):
    """The target name is already taken."""


class RepoNotFound(RepoDiskError):
    """No repository under that name."""


def _git_env() -> dict[str, str]:
    # af may itself run under a hook or a test with GIT_DIR & co. set; any of
    # them would redirect our git calls to another repository.
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def _git(*args: str) -> None:
    proc = subprocess.run(
        ["git", *args],
        env=_git_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT,
    )
    if proc.returncode != 0:
        raise RepoDiskError(f"git {args[0]} failed: {proc.stderr.strip() or proc.returncode}")


def _check_branch(branch: str) -> None:
    ok = (
        0 < len(branch) <= 200
        and not branch.startswith(("-", "."))
        and all(c.isascii() and (c.isalnum() or c in "._-/") for c in branch)
    )
    if (
        not ok
        or subprocess.run(
            ["git", "check-ref-format", f"refs/heads/{branch}"], env=_git_env(), capture_output=True
        ).returncode
    ):
        raise RepoDiskError(f"invalid default branch name: {branch!r}")


class RepoDisk:
    """The bare repositories under ``root``, with hooks linked to ``hook_program``.

    Names are ``"owner/name"``; a bad name raises
    :class:`~applikant.frontend.sshcommand.CommandRefused` from the shared
    checks. Other failures raise :class:`RepoDiskError` or a subclass.
    """

    def __init__(self, root: str, hook_program: str, hooks: Sequence[str] = ALL_HOOKS) -> None:
        if not os.path.isabs(hook_program):
            raise ValueError(
                "hook_program must be an absolute path: hooks run with the repo as cwd"
            )
        unknown = set(hooks) - set(ALL_HOOKS)
        if unknown:
            raise ValueError(f"unsupported hooks: {sorted(unknown)}")
        self.root = os.path.abspath(root)
        self.hook_program = hook_program
        self.hooks = tuple(hooks)
        os.makedirs(self.root, exist_ok=True)

    # -- queries -----------------------------------------------------------

    def path(self, repo: str) -> str:
        """``<root>/<owner>/<name>.git``, confined to the root (need not exist)."""
        return resolve_repo_path(self.root, repo)

    def exists(self, repo: str) -> bool:
        """True when ``repo`` is a directory that looks like a bare git repo."""
        p = self.path(repo)
        return os.path.isdir(p) and os.path.isfile(os.path.join(p, "HEAD"))

    def list(self) -> list[str]:
        """Every repo under the root as a sorted list of ``"owner/name"``.

        Hidden temp and trash entries, stray files, symlinks and names that
        fail the shared checks are not repos and are skipped.
        """
        found = []
        for owner in _listdir(self.root):
            owner_dir = os.path.join(self.root, owner)
            if not os.path.isdir(owner_dir) or os.path.islink(owner_dir):
                continue
            for entry in _listdir(owner_dir):
                if not entry.endswith(".git") or os.path.islink(os.path.join(owner_dir, entry)):
                    continue
                repo = f"{owner}/{entry[:-4]}"
                try:
                    check_repo(repo)
                except CommandRefused:
                    continue
                if os.path.isfile(os.path.join(owner_dir, entry, "HEAD")):
                    found.append(repo)
        return sorted(found)

    # In the class body after `def list`, `list` names that method: hence builtins.list.
    def check_hooks(self, repo: str) -> builtins.list[str]:
        """Problems with ``repo``'s hooks, one line each; empty when all is well."""
        p = self.path(repo)
        if not self.exists(repo):
            return [f"{repo}: repository does not exist"]
        problems = []
        hooks_dir = os.path.join(p, "hooks")
        for hook in self.hooks:
            h = os.path.join(hooks_dir, hook)
            if not os.path.islink(h):
                problems.append(
                    f"{repo}: hook {hook} is "
                    + ("not a symlink" if os.path.lexists(h) else "missing")
                )
            elif os.readlink(h) != self.hook_program:
                problems.append(
                    f"{repo}: hook {hook} points to {os.readlink(h)}, not {self.hook_program}"
                )
        for name in _listdir(hooks_dir):
            if name in _SERVER_HOOKS and name not in self.hooks:
                problems.append(f"{repo}: unexpected hook {name}")
        if _read_config(p, "core.hooksPath") != "hooks":
            problems.append(f"{repo}: core.hooksPath is not 'hooks'")
        if not os.access(self.hook_program, os.X_OK):
            problems.append(f"{repo}: hook program {self.hook_program} is not executable")
        return problems

    # -- changes -----------------------------------------------------------

    def create(
        self,
        repo: str,
        default_branch: str = "main",
        prepare: Callable[[str], None] | None = None,
    ) -> str:
        """Create ``repo`` (or repair the hooks of an existing one); return its path.

        Idempotent: creating an existing repo re-links its hooks and config and
        does not touch its content or its HEAD. ``prepare`` is called with a new
        repo's temporary path before it is moved into place: what it writes is
        there as soon as anyone can see the repo.
        """
        _check_branch(default_branch)
        target = self.path(repo)
        with self._locked():
            if self.exists(repo):
                self._install(target)
                return target
            owner_dir = os.path.dirname(target)
            os.makedirs(owner_dir, exist_ok=True)
            tmp = os.path.join(
                owner_dir, f"{_TMP_PREFIX}{os.path.basename(target)}-{os.urandom(4).hex()}"
            )
            try:
                # --template= : no sample hooks, and no admin template hooks
                # slipping in beside ours.
                _git("init", "--quiet", "--bare", "--template=", "-b", default_branch, tmp)
                self._install(tmp)
                if prepare is not None:
                    prepare(tmp)
                # A leftover non-repo directory under the name (crash, manual
                # mkdir) would make the rename fail; it is not a repo, so it goes.
                if os.path.lexists(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target

    def rename(self, old: str, new: str) -> str:
        """Move ``old`` to ``new`` in one ``rename(2)``; return the new path.

        Raises :class:`RepoNotFound` or :class:`RepoExists`. The old owner
        directory is removed when left empty.
        """
        src, dst = self.path(old), self.path(new)
        with self._locked():
            if not self.exists(old):
                raise RepoNotFound(f"no repository {old}")
            if os.path.lexists(dst):
                raise RepoExists(f"repository {new} already exists")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            self.path(new)  # re-check: the owner dir now exists and could be a link
            os.rename(src, dst)
            _rmdir_if_empty(os.path.dirname(src))
        return dst

    def delete(self, repo: str) -> None:
        """Remove ``repo``. Raises :class:`RepoNotFound` when it is not there.

        The repo leaves its name at once (a rename to a hidden trash name); the
        slow removal happens after, and :meth:`purge_trash` finishes it after a
        crash.
        """
        p = self.path(repo)
        with self._locked():
            if not self.exists(repo):
                raise RepoNotFound(f"no repository {repo}")
            trash = os.path.join(
                self.root, f"{_TRASH_PREFIX}{repo.replace('/', '-')}-{os.urandom(4).hex()}"
            )
            os.rename(p, trash)
            _rmdir_if_empty(os.path.dirname(p))
        shutil.rmtree(trash)

    def purge_trash(self) -> int:
        """Remove leftovers of interrupted deletes and creates; return how many."""
        n = 0
        with self._locked():
            candidates = [
                os.path.join(self.root, e)
                for e in _listdir(self.root)
                if e.startswith(_TRASH_PREFIX)
            ]
            for owner in _listdir(self.root):
                owner_dir = os.path.join(self.root, owner)
                if (
                    not owner.startswith(".")
                    and os.path.isdir(owner_dir)
                    and not os.path.islink(owner_dir)
                ):
                    candidates += [
                        os.path.join(owner_dir, e)
                        for e in _listdir(owner_dir)
                        if e.startswith(_TMP_PREFIX)
                    ]
            for c in candidates:
                shutil.rmtree(c, ignore_errors=True)
                n += 1
        return n

    # -- internals ---------------------------------------------------------

    def _install(self, repo_path: str) -> None:
        """Link every hook to the program and set the config we rely on."""
        hooks_dir = os.path.join(repo_path, "hooks")
        os.makedirs(hooks_dir, exist_ok=True)
        for hook in self.hooks:
            h = os.path.join(hooks_dir, hook)
            if os.path.islink(h) and os.readlink(h) == self.hook_program:
                continue
            # symlink beside, then rename over: git never finds the hook missing.
            tmp = f"{h}.tmp-{os.urandom(4).hex()}"
            os.symlink(self.hook_program, tmp)
            try:
                if os.path.isdir(h) and not os.path.islink(h):
                    shutil.rmtree(h)
                os.rename(tmp, h)
            except BaseException:
                os.unlink(tmp)
                raise
        for key, value in _CONFIG:
            if _read_config(repo_path, key) != value:
                _git("config", "--file", os.path.join(repo_path, "config"), key, value)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(
            os.path.join(self.root, _LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _read_config(repo_path: str, key: str) -> str | None:
    proc = subprocess.run(
        ["git", "config", "--file", os.path.join(repo_path, "config"), "--get", key],
        env=_git_env(),
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _rmdir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
