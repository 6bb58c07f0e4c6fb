"""The addresses people and programs reach this installation at: aw's public
URL and the SSH clone URL (`[aw] public_url`, `ssh_url`).

aw's pages link with them, and am puts them in webhook payloads
(`html_url`, `clone_url`, a commit's `url`, a build's `url`), so both agree.
Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = ["Links"]


@dataclass
class Links:
    """URLs of repositories, commits and builds under `public_url`."""

    public_url: str
    ssh_url: str = ""

    @classmethod
    def from_config(cls, config: Any) -> Links:
        """From a loaded Config: `[aw] public_url` (default `http://<listen>`) and `ssh_url`."""
        public = config.aw.public_url or f"http://{config.aw.listen}"
        return cls(public_url=public.rstrip("/"), ssh_url=config.aw.ssh_url)

    def repo(self, full_name: str) -> str:
        return f"{self.public_url.rstrip('/')}/{full_name}"

    def http_clone(self, full_name: str) -> str:
        return f"{self.repo(full_name)}.git"

    def ssh_clone(self, full_name: str) -> str:
        if self.ssh_url:
            return f"{self.ssh_url.rstrip('/')}/{full_name}.git"
        host = urlsplit(self.public_url).hostname or "localhost"
        return f"git@{host}:{full_name}.git"

    def owner(self, name: str) -> str:
        return f"{self.public_url.rstrip('/')}/{name}"

    def commit(self, full_name: str, sha: str) -> str:
        return f"{self.repo(full_name)}/commit/{sha}"

    def compare(self, full_name: str, base: str, head: str) -> str:
        return f"{self.repo(full_name)}/compare/{base}...{head}"

    def build(self, full_name: str, number: int) -> str:
        return f"{self.repo(full_name)}/builds/{number}"

    def badge(self, full_name: str, branch: str) -> str:
        return f"{self.repo(full_name)}/badge/{quote(branch, safe='/')}.svg"
