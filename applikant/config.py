"""The daemons' configuration: the TOML file read into pydantic models.

Every key has a default that works on one host; `etc/applikant.toml` documents
them all. Paths left empty are derived from `[node].data_dir`. The ephemeral CLIs
read the same file through envconfig.py (stdlib only) and agree on the defaults
because both take them from the same places.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import envconfig, installpaths
from .builder.settings import BuilderSettings
from .node.settings import DistSettings


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeSection(Section):
    host: str = ""  # host part of node names; empty: this machine's short hostname
    data_dir: str = installpaths.DATA_DIR  # /var/lib/applikant, or make install's DATADIR
    cookie_file: str = ""  # empty: <data_dir>/cookie
    dev_mode: bool = False  # accepts the example cookie; never in production
    log_level: str = "info"
    # Free space (MiB) kept on each data filesystem: below it am and af refuse
    # pushes and changes (clones go on); capped at a tenth of the filesystem; 0: off.
    disk_reserve_mb: Annotated[int, Field(ge=0)] = 256


class AmSection(Section):
    node: str = "am"
    # empty: <data_dir>/am.sqlite3; a postgresql://... URL: the store on PostgreSQL
    db: str = ""
    # PostgreSQL: seconds an active am may go silent (dead, stopped, cut off)
    # before a standby takes its lease; also how soon am notices a dead server.
    lease_timeout: float = Field(default=3.0, gt=0, le=300)
    # Other am nodes (standbys on PostgreSQL) that af, aw, ab and the command
    # line look for when `node` does not answer: ["am@manager2"].
    standby: list[str] = Field(default_factory=list)
    # Retention, pruned by am in the background every prune_interval seconds:
    keep_builds: int = Field(default=200, ge=0)  # per repository, with logs; 0 keeps all
    keep_deliveries_days: float = Field(default=30.0, ge=0)  # webhook deliveries; 0 keeps all
    prune_interval: float = Field(default=3600.0, gt=0)


class AfSection(Section):
    node: str = "af"
    repo_root: str = ""  # empty: <data_dir>/repos
    # "file": af keeps authorized_keys; "command": sshd asks `applikant keys-for`.
    keys_mode: str = "file"
    authorized_keys: str = ""  # empty: <data_dir>/.ssh/authorized_keys
    as_command: str = ""  # the forced command; empty: this Python -S as_launch.py (as)
    hook_program: str = (
        ""  # the Python ah the hook script falls back to; empty: applikant-ah beside this Python
    )
    spool_dir: str = ""  # empty: <data_dir>/spool
    am_retry: float = 1.0  # seconds between attempts to reach am


class AwSection(Section):
    node: str = "aw"
    listen: str = "127.0.0.1:8008"
    public_url: str = ""  # empty: http://<listen>
    ssh_url: str = ""  # e.g. ssh://git@host:2222; shown as clone URL
    session_secret_file: str = ""  # empty: <data_dir>/session.key
    repo_root: str = ""  # where aw reads repositories; empty: [af].repo_root (one host)
    session_idle_timeout: int = Field(default=7 * 24 * 3600, ge=60, le=366 * 24 * 3600)
    session_max_age: int = Field(default=14 * 24 * 3600, ge=60, le=366 * 24 * 3600)
    reauth_window: int = Field(default=600, ge=0)  # a login this recent proves the password
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDRs).
    trusted_proxies: list[str] = Field(default_factory=list)
    metrics_token_file: str = ""  # a file with a bearer token that may read /metrics

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or CIDR") from None
        return value


class WebhooksSection(Section):
    """`[webhooks]`: how am's delivery worker posts and retries (see
    applikant.webhooks.RetryPolicy and DeliverySettings for the meanings)."""

    retry_base: float = Field(default=5.0, gt=0)  # seconds before the 2nd attempt
    retry_factor: float = Field(default=3.0, ge=1)  # each wait this many times the last
    retry_cap: float = Field(default=600.0, gt=0)  # no wait is longer
    max_attempts: int = Field(default=8, ge=1)  # then the delivery has failed
    retry_jitter: float = Field(default=0.1, ge=0, lt=1)  # up to this fraction off each wait
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)  # between two reads of the answer
    total_timeout: float = Field(default=20.0, gt=0)  # the whole attempt
    max_response: int = Field(default=4096, ge=0)  # bytes of the answer kept in the log
    concurrency: int = Field(default=4, ge=1)  # attempts at once
    poll_interval: float = Field(default=30.0, gt=0)  # longest sleep between looks at the queue
    # Where deliveries may connect besides public addresses (applikant.webhooks.urls):
    # host names, `*.domain`, CIDRs, `loopback`, `private`, or `*`.
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        from applikant.webhooks.urls import HostPolicy

        HostPolicy.parse(value)  # ValueError names the entry
        return value

    def policy(self) -> Any:
        from applikant.webhooks import RetryPolicy

        return RetryPolicy(
            base=self.retry_base,
            factor=self.retry_factor,
            cap=max(self.retry_cap, self.retry_base),
            max_attempts=self.max_attempts,
            jitter=self.retry_jitter,
        )

    def delivery(self) -> Any:
        from applikant.webhooks import DeliverySettings
        from applikant.webhooks.urls import HostPolicy

        return DeliverySettings(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            total=self.total_timeout,
            max_response=self.max_response,
            policy=HostPolicy.parse(self.allowed_hosts),
        )


class Config(Section):
    node: NodeSection = Field(default_factory=NodeSection)
    dist: Any = Field(default_factory=DistSettings)
    am: AmSection = Field(default_factory=AmSection)
    af: AfSection = Field(default_factory=AfSection)
    aw: AwSection = Field(default_factory=AwSection)
    builder: Any = Field(default_factory=BuilderSettings)  # [builder]: ab, and am's queue
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)

    raw: dict[str, Any] = Field(default_factory=dict, exclude=True)

    @field_validator("builder", mode="before")
    @classmethod
    def _builder(cls, value: Any) -> BuilderSettings:
        if isinstance(value, BuilderSettings):
            return value
        if not isinstance(value, dict):
            raise ValueError("[builder] must be a table")
        return BuilderSettings.from_mapping(value)

    @field_validator("dist", mode="before")
    @classmethod
    def _dist(cls, value: Any) -> DistSettings:
        if isinstance(value, DistSettings):
            return value
        if not isinstance(value, dict):
            raise ValueError("[dist] must be a table")
        return DistSettings.from_mapping(value)

    # ---- derived values ---------------------------------------------------

    def path(self, value: str, default_name: str) -> str:
        return value or os.path.join(self.node.data_dir, default_name)

    def node_name(self, component: str) -> str:
        return envconfig.node_name(self.raw, component)

    def cookie(self) -> bytes:
        return envconfig.cookie(self.raw)


def load(path: str | None = None) -> Config:
    """Read and validate the config file; ConfigError with the key at fault."""
    raw = envconfig.load_raw(path)
    try:
        config = Config.model_validate({k: v for k, v in raw.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise envconfig.ConfigError(f"in the config file, {where}: {first['msg']}") from None
    config.raw = raw
    if "local_socket_dir" not in envconfig.section(raw, "dist"):  # (as dist_settings does)
        config.dist.local_socket_dir = envconfig.default_socket_dir(raw)
    return config
