"""The documented example config is complete and valid; bad configs fail in words."""

from __future__ import annotations

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
    assert set(raw["dist"]) - {"tls"} == set(DistSettings().as_dict()) - {"tls"}
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
