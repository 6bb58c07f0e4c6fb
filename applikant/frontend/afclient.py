"""One call to af from a fresh process: what ``as``, ``ah`` and ``keys-for`` share.

Stdlib, msgpack and the blocking driver only (no trio, pydantic or typer): these
programs run on every fetch, push and SSH login.

The call goes to af's *local* service names on af's node (``node=af``), not to
the global names: a git host answers for its own repositories, and a second git
host with its own af needs no name of its own in the cluster.

Guarantees: :meth:`Client.call` returns af's reply or raises :class:`Unreachable`
(with one line fit for the user); it never raises anything else for a network or
configuration problem. One attempt takes at most ``CONNECT_TIMEOUT`` plus the
call's timeout; a link that failed otherwise than by timing out (af dropped it
meanwhile) is re-opened once.
"""

# No `from __future__ import annotations`: importing __future__ costs every fetch.
from applikant import envconfig
from applikant.node import lean
from applikant.node.errors import CallTimeout, DistError, RemoteError

lean.prefer_pure_codec()  # as and ah: msgpack's import costs more than their messages
from applikant.node import blocking  # noqa: E402 (after the codec is chosen)

__all__ = [
    "CONNECT_TIMEOUT",
    "HINT_TIMEOUT",
    "Client",
    "Unreachable",
    "exit_now",
    "parse_config_option",
]

#: Seconds to reach af (portmapper lookup, TCP, handshake). af is on this host.
CONNECT_TIMEOUT = 2.0
#: Seconds for a first try at the port af's port file names, before the portmapper.
HINT_TIMEOUT = 1.0


class Unreachable(Exception):
    """af could not be asked, or answered with an error; ``str()`` is one line for users."""


class Client:
    """The config, cookie and af's node name, read once; :meth:`call` asks af.

    ``config_path`` of ``None`` means ``APPLIKANT_CONFIG`` or the default file.
    Raises :class:`Unreachable` when the config or cookie cannot be read.
    """

    def __init__(self, config_path: str | None = None) -> None:
        try:
            self.raw = envconfig.load_raw(config_path)
            self.cookie = envconfig.cookie(self.raw)
            self.settings = envconfig.dist_settings(self.raw)
            self.af_node = envconfig.af_node(self.raw)
        except envconfig.ConfigError as exc:
            raise Unreachable(f"configuration problem on the server: {exc}") from None
        self.config_path = config_path or envconfig.config_path()
        self._eph: blocking.EphemeralNode | None = None

    def call(
        self, service: str, method: str, args: object, *, prefix: str, timeout: float
    ) -> object:
        """Call ``service.method`` on af's node; af's reply, or :class:`Unreachable`.

        The link stays open for the next call until :meth:`close` (``as`` makes
        several during a push). A link af dropped meanwhile (it declares a
        silent hidden node down after its tick time) is re-opened once; every
        call af serves may be repeated (hook calls carry their event id).
        """
        for attempt in (1, 2):
            fresh = self._eph is None
            try:
                if self._eph is None:
                    self._eph = self._connect(prefix)
                return self._eph.call(service, method, args, node=self.af_node, timeout=timeout)
            except RemoteError as exc:
                raise Unreachable(f"the git service failed ({exc.kind}): {exc.message}") from None
            except (DistError, OSError) as exc:
                self.close()
                if fresh or attempt == 2 or isinstance(exc, CallTimeout):
                    raise Unreachable(
                        f"the git service (af) cannot be reached: {_first_line(exc)}"
                    ) from None
        raise AssertionError("not reached")

    def _connect(self, prefix: str) -> "blocking.EphemeralNode":
        """A link to af: at the port af's port file names, if it does (no
        portmapper round trip); else, or if af is not there (a stale file),
        where the portmapper says. The handshake proves af answered."""

        def dial(timeout: float, port: int | None = None) -> "blocking.EphemeralNode":
            return blocking.EphemeralNode(
                self.af_node,
                self.cookie,
                prefix=prefix,
                settings=self.settings,
                timeout=timeout,
                port=port,
            )

        port = envconfig.read_port_file(envconfig.af_port_file(self.raw), self.af_node)
        if port is not None:
            try:
                return dial(HINT_TIMEOUT, port)
            except (DistError, OSError):
                pass  # af moved or is down: the portmapper knows
        return dial(CONNECT_TIMEOUT)

    def close(self) -> None:
        """Close the link to af, if open."""
        eph, self._eph = self._eph, None
        if eph is not None:
            eph.close()


def exit_now(status: int) -> None:
    """End this short-lived program with `status` now, its output flushed: the
    interpreter's teardown (freeing every module, a last collection) is 2-4 ms
    of CPU that nothing needs, on every fetch, push and SSH login."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def parse_config_option(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take a leading ``--config PATH`` (or ``-c PATH``) off ``argv``; (path, rest).

    sshd gives forced commands and AuthorizedKeysCommand a bare environment, so
    a non-default config file travels on the command line.
    """
    if len(argv) >= 2 and argv[0] in ("--config", "-c"):
        return argv[1], argv[2:]
    if argv and argv[0].startswith("--config="):
        return argv[0][len("--config=") :], argv[1:]
    return None, argv
