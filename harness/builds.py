"""A GitSite (portmapper, am, af, sshd) plus ab, the build runner, for the
end-to-end build tests and bench.builds.

The builds root is outside the site's (0700) temporary directory, so that the
build user can enter it; everything else stays under the site's directory.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from applikant import procs
from applikant.node.errors import DistError
from harness.gitenv import GitSite, User
from harness.wait import TIMEOUT, wait_until

__all__ = ["BuildSite"]


class BuildSite(GitSite):
    """GitSite with `[builder]` settings and an ab process: start_ab, kill_ab."""

    def __init__(self, tmp: Path, *, builder_toml: str = "", **kwargs: Any) -> None:
        self.shared = Path(tempfile.mkdtemp(prefix="applikant-e2e-builds-"))
        self.shared.chmod(0o711)
        self.builds_root = self.shared / "builds"
        self.http_port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        toml = (
            f'\n[aw]\nlisten = "127.0.0.1:{self.http_port}"\n'
            f'\n[builder]\nbuilds_root = "{self.builds_root}"\nkill_grace = 0.5\n'
            f"{builder_toml}\n"
        )
        super().__init__(tmp, af_toml=kwargs.pop("af_toml", "") + toml, **kwargs)
        self.ab_proc: procs.Proc | None = None
        self.ab_node = self.cluster.node("ab")

    def start(self) -> None:
        super().start()
        self.start_ab()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.shared, ignore_errors=True)

    def start_ab(self, config: Path | None = None) -> procs.Proc:
        env_backup = dict(self.env)
        if config is not None:
            self.env["APPLIKANT_CONFIG"] = str(config)
        try:
            self.ab_proc = self._daemon(
                "ab", [sys.executable, "-m", "applikant.cli.main", "start", "ab"]
            )
        finally:
            self.env = env_backup
        wait_until(lambda: self.ab_status().get("am_up"), what="ab linked to am")
        return self.ab_proc

    def stop_ab(self, sig: int = signal.SIGTERM) -> None:
        assert self.ab_proc is not None
        self.ab_proc.signal(sig)
        self.ab_proc.popen.wait(15)
        self.ab_proc.stop()

    def start_aw(self) -> procs.Proc:
        """aw on `base` (started by the tests that need it)."""
        return self._daemon("aw", [sys.executable, "-m", "applikant.cli.main", "start", "aw"])

    def ab_status(self) -> dict[str, Any]:
        try:
            return self._call_node(self.ab_node, "ab_status", "status")
        except DistError:
            return {}

    def _call_node(self, node: str, service: str, method: str, args: Any = None) -> Any:
        from applikant.node import blocking

        return blocking.call(
            node,
            self.cookie,
            service,
            method,
            args,
            prefix="test",
            node=node,
            settings=self.settings,
            timeout=10,
        )

    def with_builder(self, extra: str) -> Path:
        """A copy of the config file with `extra` keys in [builder] (for an ab
        started with other settings)."""
        text = self.cluster.config.read_text().replace("\n[builder]\n", f"\n[builder]\n{extra}\n")
        path = self.tmp / f"applikant-{abs(hash(extra))}.toml"
        path.write_text(text)
        return path

    # ---- builds -------------------------------------------------------------------

    def build(self, ref: str | int) -> dict[str, Any]:
        return self.call_am("am_builds", "get", {"build": str(ref)})

    def wait_build(
        self, ref: str | int, *statuses: str, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        def ok() -> Any:
            b = self.build(ref)
            return b if b["status"] in statuses else None

        try:
            return wait_until(ok, timeout, f"build {ref} to be {'/'.join(statuses)}", every=0.05)
        except AssertionError:
            raise AssertionError(
                f"build {ref}: {self.build(ref)}\n"
                f"ab log:\n{self.ab_proc.log_text() if self.ab_proc else ''}"
            ) from None

    def log_lines(self, ref: str | int) -> list[str]:
        page = self.call_am("am_builds", "log", {"build": str(ref), "limit": 100000})
        return [line for _, line in page["lines"]]

    def push_script(
        self, user: User, work: Path, script: str, *, branch: str = "main", message: str = "build"
    ) -> tuple[str, str]:
        """Commit `script` as .applikant/build.sh and push it: (commit, push stderr)."""
        (work / ".applikant").mkdir(exist_ok=True)
        (work / ".applikant" / "build.sh").write_text(script)
        self.git(None, "add", "-A", cwd=work)
        self.git(None, "commit", "-q", "--allow-empty", "-m", message, cwd=work)
        commit = self.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()
        r = self.push(user, work, f"HEAD:refs/heads/{branch}", force=True)
        return commit, r.stderr

    @staticmethod
    def queued_build(stderr: str) -> str:
        """The last build the push output says it queued, as `owner/name#12`."""
        import re

        found = re.findall(r"build (\S+/\S+) #(\d+) queued for \S+: http", stderr)
        assert found, (
            f"no 'build owner/name #N queued for BRANCH: URL' in the push output:\n{stderr}"
        )
        repo, number = found[-1]
        return f"{repo}#{number}"
