"""A build's work dir: made fresh, filled with exactly one commit, removed.

Layout, under the builds root (mode 0711, owned by ab's account: the build
user may pass through it but not list it):

    <builds_root>/<build id>-<random>/   0700, the build user's; HOME
        src/                             the checkout; build.sh's cwd
        tmp/                             TMPDIR

The checkout is made by ab's account (which can read the repositories; the
build user cannot) and only then handed to the build user (lchown, never
following a symlink of the commit's). git runs with a private global config
(no system config) that trusts exactly the source repository and lets it serve
any commit by id, so a commit no branch points at any more still builds; the
new repository has no hooks.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import tempfile

import trio

from .models import BuildSpec

__all__ = ["CheckoutError", "checkout", "chown_tree", "make_workdir", "remove_tree"]

_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


class CheckoutError(Exception):
    """git could not produce the commit; the message holds git's last words."""


def make_workdir(builds_root: str, build_id: str) -> str:
    """A new, empty, private (0700) work dir under `builds_root`, which is
    made (0711) when missing."""
    os.makedirs(builds_root, mode=0o711, exist_ok=True)
    os.chmod(builds_root, 0o711)
    prefix = _SAFE_RE.sub("_", build_id)[:60] + "-"
    return tempfile.mkdtemp(prefix=prefix, dir=builds_root)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _git_config(spec: BuildSpec) -> str:
    lines = [
        "[uploadpack]",
        "\tallowAnySHA1InWant = true",
        "[advice]",
        "\tdetachedHead = false",
        "[core]",
        "\thooksPath = /dev/null",
    ]
    if "://" not in spec.source and not re.match(r"[^/]+@[^/]+:", spec.source):
        lines += ["[safe]", "\tdirectory = " + _quote(os.path.abspath(spec.source))]
    return "\n".join(lines) + "\n"


def git_env(config_path: str, home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": config_path,
        "GIT_TERMINAL_PROMPT": "0",
    }


def checkout_argvs(spec: BuildSpec, src: str) -> list[list[str]]:
    """The git commands that put `spec.commit` into the new directory `src`."""
    return [
        ["git", "init", "-q", "--template=", src],
        [
            "git",
            "-C",
            src,
            "fetch",
            "-q",
            "--no-tags",
            "--no-recurse-submodules",
            "--",
            spec.source,
            spec.commit,
        ],
        ["git", "-C", src, "checkout", "-q", "--detach", spec.commit],
    ]


async def checkout(spec: BuildSpec, src: str, timeout: float) -> None:
    """Make `src` a checkout of exactly `spec.commit` (detached HEAD).
    CheckoutError when git fails or `timeout` seconds pass."""
    fd, config_path = tempfile.mkstemp(prefix=".gitconfig-", dir=os.path.dirname(src))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_git_config(spec))
        env = git_env(config_path, os.path.dirname(config_path))
        with trio.move_on_after(timeout) as scope:
            for argv in checkout_argvs(spec, src):
                done = await trio.run_process(
                    argv, env=env, stdin=b"", capture_stdout=True, capture_stderr=True, check=False
                )
                if done.returncode != 0:
                    words = done.stderr.decode("utf-8", "replace").strip().splitlines()
                    raise CheckoutError(
                        f"git {argv[3] if argv[1] == '-C' else argv[1]} "
                        f"failed: {' '.join(words[-3:]) or done.returncode}"
                    )
        if scope.cancelled_caught:
            raise CheckoutError(f"checkout took longer than {timeout:g} s")
    finally:
        os.unlink(config_path)


def chown_tree(root: str, uid: int, gid: int) -> None:
    """Give `root` and everything below to uid:gid, never following symlinks."""
    os.lchown(root, uid, gid)
    for here, dirs, files in os.walk(root):
        for name in dirs + files:
            os.lchown(os.path.join(here, name), uid, gid)


def remove_tree(root: str) -> None:
    """Remove `root` whatever the build did to its modes (a directory made
    unreadable or unwritable is opened up again first)."""

    def fix(func: object, path: str, exc: object) -> None:
        for p in (os.path.dirname(path), path):
            try:
                if not os.path.islink(p):
                    os.chmod(p, stat.S_IRWXU)
            except OSError:
                pass
        if os.path.isdir(path) and not os.path.islink(path):
            _rmtree(path, fix)
        elif os.path.lexists(path):
            os.unlink(path)

    if os.path.lexists(root):
        _rmtree(root, fix)


def _rmtree(path: str, fix) -> None:
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=fix)
    else:
        shutil.rmtree(path, onerror=fix)
