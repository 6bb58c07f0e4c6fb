"""Certificates for TLS between hosts: one CA per cluster, one certificate per host."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from . import common

NAME = "tls"
app = typer.Typer(no_args_is_help=True, help=__doc__)

ForceOpt = Annotated[bool, typer.Option("--force", help="replace files that exist")]
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


def host_problem(host: str) -> str | None:
    """Why `host` cannot be a certificate's host (None if it can): an IP address,
    or a DNS name of letters, digits and hyphens, as in node names' host part."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if not host or len(host) > 253:
        return "a host name has 1 to 253 characters"
    if host.startswith("[") or "%" in host:
        return "write an IPv6 address without brackets or zone, e.g. fd00::2"
    for label in host.rstrip(".").split("."):
        if not label or len(label) > 63:
            return "each dot-separated label has 1 to 63 characters"
        if not set(label.lower()) <= _LABEL_CHARS:
            return "a host name has letters, digits, hyphens and dots only"
        if label[0] == "-" or label[-1] == "-":
            return "a label neither starts nor ends with a hyphen"
    if host.rstrip(".").split(".")[-1].isdigit():
        return "not an IP address, and a DNS name does not end in a number"
    return None


def _refuse_existing(paths: list[Path], force: bool) -> None:
    there = [str(p) for p in paths if p.exists()]
    if there and not force:
        common.fail(
            f"{', '.join(there)} already exist{'s' if len(there) == 1 else ''}; "
            "--force replaces them"
        )


@app.command("init-ca")
def init_ca(
    directory: Annotated[Path, typer.Argument(help="where ca.pem and ca.key go")],
    force: ForceOpt = False,
) -> None:
    """Make the cluster's CA: ca.pem (give it to every host) and ca.key (keep it safe)."""
    from ..node import certs

    if directory.exists() and not directory.is_dir():
        common.fail(f"{directory} exists and is not a directory")
    _refuse_existing([directory / "ca.pem", directory / "ca.key"], force)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        ca_pem, ca_key = certs.make_ca(directory)
    except OSError as exc:
        common.fail(f"cannot write the CA into {directory}: {exc.strerror or exc}")
    typer.echo(
        f"CA certificate: {ca_pem}\nCA key:         {ca_key} (mode 0600; "
        "needed only to issue host certificates)"
    )


@app.command()
def issue(
    ca: Annotated[Path, typer.Option("--ca", help="the CA's directory (from init-ca)")],
    host: Annotated[
        str, typer.Argument(help="the host part of its node names: a DNS name or an IP address")
    ],
    outdir: Annotated[Path, typer.Argument(help="where HOST.pem and HOST.key go")],
    force: ForceOpt = False,
) -> None:
    """Issue a certificate for one host, valid for links in both directions."""
    problem = host_problem(host)
    if problem is not None:
        common.fail(f"{host!r} is not a host for a certificate: {problem}")
    for name in ("ca.pem", "ca.key"):
        if not (ca / name).is_file():
            common.fail(
                f"{ca / name} does not exist; make the CA with `applikant tls init-ca {ca}`"
            )
    _refuse_existing([outdir / f"{host}.pem", outdir / f"{host}.key"], force)
    from cryptography.exceptions import UnsupportedAlgorithm

    from ..node import certs

    try:
        cert, key = certs.make_cert(ca, host, outdir)
    except OSError as exc:
        common.fail(
            f"cannot issue the certificate: {exc.strerror or exc}"
            f"{' (' + exc.filename + ')' if exc.filename else ''}"
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        common.fail(f"{ca} does not hold a usable CA: {exc}")
    typer.echo(
        f"certificate: {cert}\nkey:         {key} (mode 0600)\n\n"
        f"On {host}, in the config file:\n[dist.tls]\nenabled = true\n"
        f'ca = "{(ca / "ca.pem").resolve()}"\ncert = "{cert.resolve()}"\n'
        f'key = "{key.resolve()}"'
    )
