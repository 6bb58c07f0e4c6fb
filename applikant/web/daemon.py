"""aw's daemon: `applikant start aw` runs `setup` inside `run_daemon`.

It serves the ASGI app with Hypercorn's trio worker in the daemon's nursery;
`nursery.start` returns once the HTTP port listens, so READY=1 (systemd, tests)
means "you can connect now". A task keeps the link to am (see am.Am.run).
aw keeps no state of its own beyond the cookie key: API tokens and sessions
live in am, so several aw behind one name agree.
"""

from __future__ import annotations

import os
from functools import partial

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from .. import envconfig
from ..config import Config
from ..links import Links
from ..logs import EventLog
from ..node.node import Node
from . import hyperconn
from .am import Am
from .app import Site, Web, build
from .auth import Auth, Lifetimes
from .security import Throttle, TrustedProxies, load_secret

__all__ = ["make_web", "setup"]

log = EventLog("aw")


def make_web(node: Node, config: Config) -> Web:
    """The app's state from the config: the am client, auth, site URLs, the repo root."""
    secret = load_secret(config.path(config.aw.session_secret_file, "session.key"))
    old_tokens = os.path.join(config.node.data_dir, "aw-tokens.sqlite3")
    if os.path.exists(old_tokens):
        # Left by an earlier aw that kept tokens itself; am keeps them now.
        log.warning(
            "old_token_file_ignored",
            path=old_tokens,
            hint="its tokens no longer work: make new ones, then delete the file",
        )
    am = Am(node, envconfig.am_nodes(config.raw), timeout=config.dist.call_timeout)
    links = Links.from_config(config)
    aw = config.aw
    lifetimes = Lifetimes(
        idle=aw.session_idle_timeout,
        max_age=aw.session_max_age,
        reauth_window=aw.reauth_window,
    )
    return Web(
        am=am,
        auth=Auth(am, Throttle(), lifetimes),
        site=Site(public_url=links.public_url, ssh_url=links.ssh_url),
        repo_root=aw.repo_root or config.path(config.af.repo_root, "repos"),
        session_secret=secret,
        proxies=TrustedProxies(aw.trusted_proxies),
        metrics_token=_metrics_token(aw.metrics_token_file),
        extra={"af_name": config.node_name("af").split("@")[0]},
    )


KEEP_ALIVE = 5.0


def _metrics_token(path: str) -> str:
    """The token in `path` ("" when no file is configured); ConfigError when
    it cannot be read or is too short to be a secret."""
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise envconfig.ConfigError(f"[aw] metrics_token_file: {exc}") from None
    if len(token) < 16:
        raise envconfig.ConfigError(
            f"[aw] metrics_token_file: {path} holds fewer than 16 characters"
        )
    return token


def hypercorn_config(listen: str) -> HyperConfig:
    hc = HyperConfig()
    hc.bind = [listen]
    hc.accesslog = None
    # Hypercorn's trio server closes a connection the client has closed only when
    # its keep-alive timer ends (the idle task outlives the reader): every clone
    # over HTTP left a socket in CLOSE-WAIT for this long, and aw's memory and
    # descriptors grew with the connection rate. 5 s (Hypercorn's default) still
    # spans a clone's round trips and a page's requests; bench.soak measures it.
    hc.keep_alive_timeout = KEEP_ALIVE
    hc.backlog = 1024  # a burst of logins waits to be accepted (and throttled), not reset
    hc.graceful_timeout = 2
    hc.include_server_header = False
    return hc


async def setup(node: Node, config: Config, nursery: trio.Nursery) -> None:
    web = make_web(node, config)
    app = build(web)
    nursery.start_soon(web.am.run)
    hyperconn.install()  # one send per response, no timer task per request
    # An explicit trigger keeps Hypercorn from installing signal handlers of its
    # own: the daemon runner owns SIGTERM and cancels this nursery.
    binds = await nursery.start(
        partial(serve, app, hypercorn_config(config.aw.listen), shutdown_trigger=trio.sleep_forever)
    )
    log.info("http_listening", binds=",".join(binds or []), public_url=web.site.public_url)
