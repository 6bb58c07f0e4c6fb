"""The node layer's settings: plain classes, cheap to import for `as` and `ah`
(no dataclasses, no pydantic: those cost more than the call itself).

The daemons get them inside the pydantic config (config.py), which validates the
`[dist]` table through `DistSettings.from_mapping`; the ephemeral CLIs call the same,
so both agree on every default.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: `as` and `ah` start faster without it
if TYPE_CHECKING:
    from typing import Any


class _Settings:
    """Defaults are class attributes; keyword arguments override, checked by type."""

    _section = ""

    def __init__(self, **values: Any) -> None:
        for key, value in values.items():
            default = getattr(type(self), key, None)
            if key.startswith("_") or default is None or callable(default):
                raise ValueError(f"unknown setting {self._section}.{key}")
            if isinstance(default, _Settings):
                if isinstance(value, dict):
                    value = type(default)(**value)
                elif not isinstance(value, type(default)):
                    raise ValueError(f"{self._section}.{key} must be a table")
            else:
                if isinstance(default, float) and type(value) is int:
                    value = float(value)
                if type(value) is not type(default):
                    raise ValueError(
                        f"{self._section}.{key} must be a {type(default).__name__}, not {value!r}"
                    )
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for key in dir(type(self)):
            value = getattr(self, key)
            if not key.startswith("_") and not callable(value):
                out[key] = value.as_dict() if isinstance(value, _Settings) else value
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.as_dict()!r})"


class TlsSettings(_Settings):
    """Mutual TLS on node links: every node presents a certificate signed by `ca`."""

    _section = "dist.tls"
    enabled = False
    ca = ""
    cert = ""
    key = ""


class DistSettings(_Settings):
    _section = "dist"
    # Where nodes register with this host's portmapper (loopback only).
    portmapper_host = "127.0.0.1"
    portmapper_port = 4370
    # Where the portmapper listens: add this host's own address so that nodes on
    # other hosts can look names up. Empty: portmapper_host only.
    portmapper_listen: list[str] = []
    # Address the node listens on; peers are found through their host's portmapper.
    bind_host = "127.0.0.1"
    listen_min = 9100
    listen_max = 9200
    # A peer silent for this long is down (Erlang's net_ticktime, shorter by default).
    tick_time = 10.0
    connect_timeout = 5.0
    handshake_timeout = 5.0
    call_timeout = 10.0
    # How long a starting node waits for its portmapper before giving up.
    portmapper_wait = 10.0
    # Caps on incoming connections (guard.py): past them, the oldest connection
    # that has not proved the cookie is closed to make room.
    max_connections = 2048
    max_connections_per_address = 1024
    # The portmapper's caps, and how long a connection that has not registered
    # may stay silent.
    portmapper_max_connections = 1024
    portmapper_max_per_address = 256
    portmapper_idle_timeout = 5.0
    max_frame = 16 * 1024 * 1024
    # How long a link's reader polls before it sleeps, when the link's messages
    # come less than a millisecond apart (Erlang's scheduler busy wait). 0: off.
    busy_wait_us = 100
    # Where nodes of this host also listen on Unix sockets, and dial each other
    # through them (localsock.py). Empty: TCP only. (applikant's config sets it
    # to <data_dir>/nodes unless [dist] says otherwise.)
    local_socket_dir = ""
    tls = TlsSettings()

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if "tls" not in values:
            self.tls = TlsSettings()
        if not 0 < self.listen_min <= self.listen_max < 65536:
            raise ValueError("dist.listen_min and dist.listen_max must be a port range")
        if self.tick_time <= 0:
            raise ValueError("dist.tick_time must be positive")
        if (
            min(
                self.max_connections,
                self.max_connections_per_address,
                self.portmapper_max_connections,
                self.portmapper_max_per_address,
            )
            < 1
        ):
            raise ValueError("dist's connection caps must be at least 1")
        if not 0 <= self.busy_wait_us <= 10_000:
            raise ValueError("dist.busy_wait_us must be between 0 and 10000 (microseconds)")
        if self.portmapper_idle_timeout <= 0:
            raise ValueError("dist.portmapper_idle_timeout must be positive")
        if not all(isinstance(h, str) and h for h in self.portmapper_listen):
            raise ValueError("dist.portmapper_listen must be a list of addresses")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> DistSettings:
        """Build from a TOML table, refusing unknown keys and wrong types in words."""
        return cls(**data)
