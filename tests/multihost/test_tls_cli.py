"""`applikant tls`: the cluster CA and host certificates (no namespaces needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

pytestmark = pytest.mark.slow  # the command line, one process per step


def tls(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "tls", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_init_ca_then_issue_writes_keys_private_and_says_how_to_use_them(tmp_path: Path) -> None:
    r = tls("init-ca", str(tmp_path / "ca"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ca" / "ca.pem").is_file()
    assert os.stat(tmp_path / "ca" / "ca.key").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "ca").st_mode & 0o777 == 0o700

    r = tls("issue", "--ca", str(tmp_path / "ca"), "10.77.0.2", str(tmp_path / "h2"))
    assert r.returncode == 0, r.stderr
    pem, key = tmp_path / "h2" / "10.77.0.2.pem", tmp_path / "h2" / "10.77.0.2.key"
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert f'cert = "{pem}"' in r.stdout and "[dist.tls]\nenabled = true" in r.stdout
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.77.0.2"]

    r = tls("issue", "--ca", str(tmp_path / "ca"), "git.example.org", str(tmp_path / "git"))
    assert r.returncode == 0, r.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "git" / "git.example.org.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["git.example.org"]


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert tls("init-ca", str(ca)).returncode == 0
    before = (ca / "ca.pem").read_bytes()
    r = tls("init-ca", str(ca))
    assert r.returncode == 1
    assert r.stderr == (
        f"applikant: {ca / 'ca.pem'}, {ca / 'ca.key'} already exist; --force replaces them\n"
    )
    assert (ca / "ca.pem").read_bytes() == before
    assert tls("init-ca", "--force", str(ca)).returncode == 0
    assert (ca / "ca.pem").read_bytes() != before

    assert tls("issue", "--ca", str(ca), "h.example", str(tmp_path / "out")).returncode == 0
    r = tls("issue", "--ca", str(ca), "h.example", str(tmp_path / "out"))
    assert r.returncode == 1 and "already exist; --force replaces them" in r.stderr
    assert (
        tls("issue", "--force", "--ca", str(ca), "h.example", str(tmp_path / "out")).returncode == 0
    )


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("bad host", "letters, digits, hyphens and dots only"),
        ("a..example", "1 to 63 characters"),
        ("x" * 64 + ".example", "1 to 63 characters"),
        ("git-.example", "neither starts nor ends with a hyphen"),
        ("10.77.0.300", "not an IP address"),
        ("[fd00::2]", "without brackets"),
        ("git_host.example", "letters, digits, hyphens and dots only"),
    ],
)
def test_bad_host_names_are_refused_in_words(tmp_path: Path, host: str, why: str) -> None:
    assert tls("init-ca", str(tmp_path / "ca")).returncode == 0
    r = tls("issue", "--ca", str(tmp_path / "ca"), host, str(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr.startswith(f"applikant: {host!r} is not a host for a certificate: ")
    assert why in r.stderr
    assert not (tmp_path / "out").exists()


def test_missing_or_broken_ca_is_explained(tmp_path: Path) -> None:
    r = tls("issue", "--ca", str(tmp_path / "none"), "h.example", str(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr == (
        f"applikant: {tmp_path / 'none' / 'ca.pem'} does not exist; make the "
        f"CA with `applikant tls init-ca {tmp_path / 'none'}`\n"
    )
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "bad" / "ca.key").write_text("not a key\n")
    r = tls("issue", "--ca", str(tmp_path / "bad"), "h.example", str(tmp_path / "out"))
    assert r.returncode == 1
    assert r.stderr.startswith(f"applikant: {tmp_path / 'bad'} does not hold a usable CA: ")
    assert "Traceback" not in r.stderr
    r = tls("init-ca", str(tmp_path / "bad" / "ca.pem"))
    assert r.returncode == 1 and "exists and is not a directory" in r.stderr
