"""The node layer's settings: defaults that work on one host, and refusals in words."""

from __future__ import annotations

from typing import Any

import pytest

from applikant.node.settings import DistSettings, TlsSettings

DEFAULTS = {
    "portmapper_host": "127.0.0.1",
    "portmapper_port": 4370,
    "portmapper_listen": [],
    "bind_host": "127.0.0.1",
    "listen_min": 9100,
    "listen_max": 9200,
    "tick_time": 10.0,
    "connect_timeout": 5.0,
    "handshake_timeout": 5.0,
    "call_timeout": 10.0,
    "portmapper_wait": 10.0,
    "max_connections": 2048,
    "max_connections_per_address": 1024,
    "portmapper_max_connections": 1024,
    "portmapper_max_per_address": 256,
    "portmapper_idle_timeout": 5.0,
    "max_frame": 16 * 1024 * 1024,
    "busy_wait_us": 100,
    "local_socket_dir": "",
    "tls": {"enabled": False, "ca": "", "cert": "", "key": ""},
}


def test_defaults() -> None:
    s = DistSettings()
    assert s.as_dict() == DEFAULTS
    assert DistSettings.from_mapping({}).as_dict() == DEFAULTS
    assert isinstance(s.tls, TlsSettings) and s.tls.enabled is False
    assert "DistSettings(" in repr(s) and "9100" in repr(s)


def test_defaults_are_not_shared_between_instances() -> None:
    a, b = DistSettings(), DistSettings()
    assert a.tls is not b.tls
    a.tls.enabled = True
    a.listen_min = 1
    assert b.tls.enabled is False and DistSettings().tls.enabled is False
    assert b.listen_min == 9100 and DistSettings.listen_min == 9100


def test_from_mapping_overrides() -> None:
    s = DistSettings.from_mapping(
        {
            "portmapper_port": 4400,
            "listen_min": 20000,
            "listen_max": 20000,
            "tick_time": 2.5,
            "call_timeout": 3,  # an int where a float is expected is taken as a float
            "bind_host": "0.0.0.0",
        }
    )
    assert s.portmapper_port == 4400
    assert (s.listen_min, s.listen_max) == (20000, 20000)
    assert s.tick_time == 2.5
    assert s.call_timeout == 3.0 and type(s.call_timeout) is float
    assert s.bind_host == "0.0.0.0"
    assert s.connect_timeout == 5.0  # untouched keys keep their defaults


def test_nested_tls_table() -> None:
    s = DistSettings.from_mapping(
        {
            "tls": {
                "enabled": True,
                "ca": "/etc/ca.pem",
                "cert": "/etc/node.pem",
                "key": "/etc/node.key",
            }
        }
    )
    assert isinstance(s.tls, TlsSettings)
    assert s.tls.enabled is True and s.tls.ca == "/etc/ca.pem"
    assert s.as_dict()["tls"] == {
        "enabled": True,
        "ca": "/etc/ca.pem",
        "cert": "/etc/node.pem",
        "key": "/etc/node.key",
    }
    partial = DistSettings.from_mapping({"tls": {"ca": "x"}})
    assert partial.tls.ca == "x" and partial.tls.enabled is False
    given = TlsSettings(enabled=True)
    assert DistSettings(tls=given).tls is given


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"bogus": 1}, "unknown setting dist.bogus"),
        ({"_section": "x"}, "unknown setting dist._section"),
        ({"as_dict": 1}, "unknown setting dist.as_dict"),
        ({"from_mapping": 1}, "unknown setting dist.from_mapping"),
        ({"tls": {"bogus": True}}, "unknown setting dist.tls.bogus"),
        ({"tls": True}, "dist.tls must be a table"),
        ({"tls": "yes"}, "dist.tls must be a table"),
        ({"tls": {"enabled": "yes"}}, "dist.tls.enabled must be a bool"),
        ({"tls": {"ca": 5}}, "dist.tls.ca must be a str"),
        ({"portmapper_port": "4370"}, "dist.portmapper_port must be a int"),
        ({"listen_min": 9100.0}, "dist.listen_min must be a int"),
        ({"listen_min": True}, "dist.listen_min must be a int"),
        ({"tick_time": "10"}, "dist.tick_time must be a float"),
        ({"tick_time": False}, "dist.tick_time must be a float"),
        ({"bind_host": None}, "dist.bind_host must be a str"),
        ({"max_frame": [1]}, "dist.max_frame must be a int"),
        ({"busy_wait_us": 50.5}, "dist.busy_wait_us must be a int"),
        ({"busy_wait_us": -1}, "dist.busy_wait_us must be between 0 and 10000"),
        ({"busy_wait_us": 10_001}, "dist.busy_wait_us must be between 0 and 10000"),
    ],
)
def test_refused_in_words(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        DistSettings.from_mapping(data)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        {"listen_min": 0},
        {"listen_min": -1},
        {"listen_min": 9300},  # above the default max
        {"listen_min": 100, "listen_max": 99},
        {"listen_max": 65536},
        {"listen_max": 9099},
        {"tick_time": 0},
        {"tick_time": 0.0},
        {"tick_time": -1.5},
    ],
)
def test_bad_ranges_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"dist\.(listen_min|tick_time)"):
        DistSettings.from_mapping(data)


@pytest.mark.parametrize(
    "data",
    [
        {"listen_min": 1, "listen_max": 1},
        {"listen_min": 1, "listen_max": 65535},
        {"tick_time": 0.001},
    ],
)
def test_edge_ranges_accepted(data: dict[str, Any]) -> None:
    s = DistSettings.from_mapping(data)
    for key, value in data.items():
        assert getattr(s, key) == value


def test_portmapper_listen_is_a_list_of_addresses() -> None:
    assert DistSettings(portmapper_listen=["127.0.0.1", "10.0.0.2"]).portmapper_listen == [
        "127.0.0.1",
        "10.0.0.2",
    ]
    with pytest.raises(ValueError, match="list of addresses"):
        DistSettings(portmapper_listen=["127.0.0.1", 5])
    with pytest.raises(ValueError, match="must be a list"):
        DistSettings(portmapper_listen="127.0.0.1")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"portmapper_max_per_address": 0}, "caps"),
        ({"max_connections": 0}, "caps"),
        ({"portmapper_idle_timeout": 0.0}, "idle"),
    ],
)
def test_connection_caps_refused_in_words(values: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        DistSettings(**values)
