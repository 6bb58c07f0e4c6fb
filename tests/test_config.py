"""The documented example config is complete and valid; bad configs fail in words."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from applikant import config, envconfig
from applikant.node.settings import DistSettings, TlsSettings

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "applikant.toml"


def test_example_config_loads_and_documents_every_key() -> None:
    cfg = config.load(str(EXAMPLE))
    raw = tomllib.loads(EXAMPLE.read_text())
    for name, section in (("node", cfg.node), ("am", cfg.am), ("af", cfg.af), ("aw", cfg.aw)):
        assert set(raw[name]) == set(type(section).model_fields), name
    # (local_socket_dir is shown commented out: unset, it follows [node] data_dir)
    assert "\n# local_socket_dir = " in EXAMPLE.read_text()
    documented = set(raw["dist"]) | {"local_socket_dir"}
    assert documented - {"tls"} == set(DistSettings().as_dict()) - {"tls"}
    assert set(raw["dist"]["tls"]) == set(TlsSettings().as_dict())
    assert cfg.dist.portmapper_port == 4370


@pytest.mark.parametrize(
    "text, words",
    [
        ("[am]\nnode = 3\n", "am.node"),
        ("[dist]\ntick_time = 'soon'\n", "tick_time"),
        ("[nope]\nx = 1\n", "nope"),
        ("[dist]\nlisten_min = 9300\nlisten_max = 9200\n", "port range"),
        ("this is not toml", "cannot read config file"),
    ],
)
def test_bad_config_is_refused_in_words(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(envconfig.ConfigError, match=words):
        config.load(str(path))


def test_example_cookie_is_refused_outside_development_mode(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("APPLIKANT_COOKIE", envconfig.EXAMPLE_COOKIE)
    with pytest.raises(envconfig.ConfigError, match="development mode"):
        envconfig.cookie({})
    assert envconfig.cookie({"node": {"dev_mode": True}}) == envconfig.EXAMPLE_COOKIE.encode()
    monkeypatch.delenv("APPLIKANT_COOKIE")
    with pytest.raises(envconfig.ConfigError, match="applikant init"):
        envconfig.cookie({"node": {"cookie_file": str(tmp_path / "missing")}})


def test_without_a_config_the_cookie_error_names_every_place_looked_at(
    tmp_path: Path, monkeypatch
) -> None:
    """A CLI run with no APPLIKANT_CONFIG and no installed config says where it
    looked, make run's var/applikant.toml included; from a directory holding
    make run's config, it finds it."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIKANT_")}
    where = tmp_path / "elsewhere"
    where.mkdir()

    def user_list() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "applikant.cli.main", "user", "list"],
            cwd=where,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    r = user_list()
    assert r.returncode == 1
    if os.path.exists(envconfig.DEFAULT_CONFIG) or os.path.exists(envconfig.dev_configs()[-1]):
        return  # this machine has a config where the search ends; the message differs
    assert "APPLIKANT_CONFIG (not set)" in r.stderr
    assert envconfig.DEFAULT_CONFIG in r.stderr
    assert f"{where}/var/applikant.toml (make run's)" in r.stderr
    (where / "var").mkdir()
    (where / "var" / "cookie").write_text("a-cookie-for-this-test\n")
    (where / "var" / "applikant.toml").write_text(
        f'[node]\ndata_dir = "{where / "var"}"\n[dist]\nportmapper_port = 1\n'
    )
    found = user_list()
    # The config was found: the cookie was read, and the failure is now am's absence.
    assert "cookie" not in found.stderr and "portmapper" in found.stderr, found.stderr


def test_local_sockets_follow_the_data_dir_unless_dist_says(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[node]\ndata_dir = "{tmp_path}/data"\n')
    assert config.load(str(path)).dist.local_socket_dir == f"{tmp_path}/data/nodes"
    raw = envconfig.load_raw(str(path))
    assert envconfig.dist_settings(raw).local_socket_dir == f"{tmp_path}/data/nodes"
    path.write_text(f'[node]\ndata_dir = "{tmp_path}/data"\n[dist]\nlocal_socket_dir = ""\n')
    assert config.load(str(path)).dist.local_socket_dir == ""  # TCP only
    raw = envconfig.load_raw(str(path))
    assert envconfig.dist_settings(raw).local_socket_dir == ""
