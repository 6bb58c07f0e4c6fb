"""What every process needs before anything else: the config file's raw table,
the cookie, this host's node names. Stdlib only, for the ephemeral CLIs.

Order of precedence, as in the reference: environment (`APPLIKANT_CONFIG`,
`APPLIKANT_COOKIE`, `APPLIKANT_AF_NODE`, `APPLIKANT_AM_NODE`), then the TOML file,
then defaults that work on one host. The daemons validate the same table in full
with pydantic (config.py).

Which file: `APPLIKANT_CONFIG`, else the installed one
(`/etc/applikant/applikant.toml`) when it exists, else, in a development
checkout only (no `make install` paths), the one `make run` writes:
`var/applikant.toml` in the current directory, then in the checkout the
package runs from. When none is found, errors name every place looked at.
"""

from __future__ import annotations

import os

from . import installpaths, quicktoml
from .node import lean
from .node.settings import DistSettings

# /etc/applikant/applikant.toml, or the SYSCONFDIR given to `make install`.
DEFAULT_CONFIG = installpaths.CONFIG
# The example cookie in etc/applikant.toml: accepted in development mode only.
EXAMPLE_COOKIE = "change-me-example-cookie"


class ConfigError(Exception):
    """The configuration is missing, unreadable or wrong; the message says how to fix it."""


def dev_configs() -> list[str]:
    """Where `make run`'s config may be, in a development checkout (none when
    installed): `./var/applikant.toml`, then the checkout's own."""
    if installpaths.INSTALLED:
        return []
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = [os.path.abspath(os.path.join("var", "applikant.toml"))]
    mine = os.path.join(checkout, "var", "applikant.toml")
    return found if mine in found else [*found, mine]


def config_path() -> str | None:
    """The config file to read (see the module docstring), or None when there is none."""
    path = os.environ.get("APPLIKANT_CONFIG")
    if path:
        return path
    for candidate in (DEFAULT_CONFIG, *dev_configs()):
        if os.path.exists(candidate):
            return candidate
    return None


def looked_at() -> str:
    """Every place config_path looks, for an error when it found nothing."""
    places = ["APPLIKANT_CONFIG (not set)", DEFAULT_CONFIG]
    places += [f"{p} (make run's)" for p in dev_configs()]
    return ", ".join(places)


def load_raw(path: str | None = None) -> dict:
    """The TOML file as a dict ({} when there is none and none was asked for).

    The simple files Applikant writes are read by quicktoml, without importing
    tomllib (~9 ms on every `as`/`ah` start); anything unusual goes to tomllib.
    """
    path = path or config_path()
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            data = f.read()
        quick = quicktoml.parse(data.decode("utf-8"))
        if quick is not None:
            return quick
    except (OSError, UnicodeDecodeError):
        pass  # tomllib below says it in its words
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (APPLIKANT_CONFIG or {DEFAULT_CONFIG})"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def section(raw: dict, name: str) -> dict:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def node_host(raw: dict) -> str:
    """The host part of this machine's node names: [node].host or the short hostname."""
    return section(raw, "node").get("host") or lean.gethostname().split(".")[0]


def data_dir(raw: dict) -> str:
    return section(raw, "node").get("data_dir") or installpaths.DATA_DIR


def dev_mode(raw: dict) -> bool:
    return bool(section(raw, "node").get("dev_mode", False))


def cookie_file(raw: dict) -> str:
    return section(raw, "node").get("cookie_file") or os.path.join(data_dir(raw), "cookie")


def cookie(raw: dict) -> bytes:
    """The cluster cookie: APPLIKANT_COOKIE, else the cookie file."""
    value = os.environ.get("APPLIKANT_COOKIE")
    if not value:
        path = cookie_file(raw)
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            hint = "set APPLIKANT_COOKIE or run `applikant init`"
            if config_path() is None:
                hint = (
                    f"no config file was found (looked at {looked_at()}): "
                    "set APPLIKANT_CONFIG, or run `applikant init`"
                )
            raise ConfigError(
                f"cannot read the cookie file {path} ({exc.strerror}); {hint}"
            ) from None
    if not value:
        raise ConfigError("the cookie is empty; run `applikant init` to make one")
    if value == EXAMPLE_COOKIE and not dev_mode(raw):
        raise ConfigError(
            "the example cookie is refused outside development mode; "
            "run `applikant init` to make a strong one"
        )
    return value.encode()


def default_socket_dir(raw: dict) -> str:
    """Where this host's nodes listen on Unix sockets unless [dist] says (node/localsock.py)."""
    return os.path.join(os.path.abspath(data_dir(raw)), "nodes")


def dist_settings(raw: dict) -> DistSettings:
    """[dist], with the nodes' Unix sockets in `<data_dir>/nodes` unless it says
    where (`local_socket_dir`; "" for TCP only)."""
    values = dict(section(raw, "dist"))
    if "local_socket_dir" not in values:
        values["local_socket_dir"] = default_socket_dir(raw)
    try:
        return DistSettings.from_mapping(values)
    except ValueError as exc:
        raise ConfigError(f"in [dist]: {exc}") from None


def node_name(raw: dict, component: str, env: str | None = None) -> str:
    """The full node name of a component: env override, [component].node, or name@host."""
    if env and os.environ.get(env):
        return os.environ[env]
    name = section(raw, component).get("node") or component
    return name if "@" in name else f"{name}@{node_host(raw)}"


def am_node(raw: dict) -> str:
    return node_name(raw, "am", "APPLIKANT_AM_NODE")


def am_nodes(raw: dict) -> list[str]:
    """Where am may be: its node, then `[am] standby` (other am nodes sharing a
    PostgreSQL store), in that order."""
    standby = section(raw, "am").get("standby") or []
    if not isinstance(standby, list) or not all(isinstance(n, str) for n in standby):
        raise ConfigError("[am] standby must be a list of node names")
    first = am_node(raw)
    return [first, *(n for n in standby if n != first)]


def af_node(raw: dict) -> str:
    return node_name(raw, "af", "APPLIKANT_AF_NODE")


def af_port_file(raw: dict) -> str:
    """Where af says which port its node listens on (`<node> <port>`), so that
    `as` and `ah` on its host reach it without asking the portmapper."""
    return os.path.join(data_dir(raw), "af.port")


def read_port_file(path: str, node: str) -> int | None:
    """The port in a port file, if the file names `node`; None otherwise (no file,
    another node's, garbled). Only a hint: the handshake proves who answers."""
    try:
        with open(path, "rb") as f:
            fields = f.read(512).split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] != node.encode() or not fields[1].isdigit():
        return None
    port = int(fields[1])
    return port if 0 < port < 65536 else None
