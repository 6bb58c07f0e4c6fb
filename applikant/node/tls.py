"""TLS contexts for node links (stdlib ssl), imported only when TLS is on.

Both ends present certificates signed by the cluster's CA and check the other's;
the cookie handshake still runs inside the TLS channel.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

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


def cert_matches(cert: dict[str, Any] | None, host: str) -> bool:
    """Whether a peer's (already verified) certificate names `host`, the host part
    of the node name it claims: as the dialler checks the listener's, the listener
    checks the dialler's, so that no host poses as a node of another."""
    if not cert:
        return False
    sans = cert.get("subjectAltName", ())
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.rstrip(".").lower() in {v.rstrip(".").lower() for k, v in sans if k == "DNS"}
    for kind, value in sans:
        if kind == "IP Address":
            try:
                if ipaddress.ip_address(value.strip()) == ip:
                    return True
            except ValueError:
                pass
    return False
