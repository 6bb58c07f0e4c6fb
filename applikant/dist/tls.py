"""TLS contexts for node links (stdlib ssl), imported only when TLS is on.

Both ends present certificates signed by the cluster's CA and check the other's;
the cookie handshake still runs inside the TLS channel.
"""

from __future__ import annotations

import ssl

from .settings import TlsSettings


def server_context(tls: TlsSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.ca)
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    """Checks the server's certificate against the CA and the host of its node name."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca)
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
