"""The node layer's settings: a plain dataclass, cheap to import for `as` and `ah`.

The daemons get it inside the pydantic config (config.py); the ephemeral CLIs read
the same TOML table with `from_mapping`, so both agree on every default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TlsSettings:
    """Mutual TLS on node links: every node presents a certificate signed by `ca`."""

    enabled: bool = False
    ca: str = ""
    cert: str = ""
    key: str = ""


@dataclass
class DistSettings:
    portmapper_host: str = "127.0.0.1"
    portmapper_port: int = 4370
    # Address the node listens on; the portmapper is asked at the peer's host.
    bind_host: str = "127.0.0.1"
    listen_min: int = 9100
    listen_max: int = 9200
    # A peer silent for this long is down (Erlang's net_ticktime, shorter by default).
    tick_time: float = 10.0
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    call_timeout: float = 10.0
    # How long a starting node waits for its portmapper before giving up.
    portmapper_wait: float = 10.0
    max_frame: int = 16 * 1024 * 1024
    tls: TlsSettings = field(default_factory=TlsSettings)

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "DistSettings":
        """Build from a TOML table, refusing unknown keys and wrong types in words."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown setting dist.{key}")
            if key == "tls":
                if not isinstance(value, dict):
                    raise ValueError("dist.tls must be a table")
                tls_known = {f.name for f in dataclasses.fields(TlsSettings)}
                bad = set(value) - tls_known
                if bad:
                    raise ValueError(f"unknown setting dist.tls.{sorted(bad)[0]}")
                kwargs[key] = TlsSettings(**value)
                continue
            default = getattr(cls(), key)
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if type(value) is not type(default):
                raise ValueError(f"dist.{key} must be a {type(default).__name__}, not {value!r}")
            kwargs[key] = value
        settings = cls(**kwargs)
        if not 0 < settings.listen_min <= settings.listen_max < 65536:
            raise ValueError("dist.listen_min and dist.listen_max must be a port range")
        return settings
