"""``keys-for``, sshd's ``AuthorizedKeysCommand``: ``applikant-keys-for [--config PATH] %u %f``.

sshd runs it on every login attempt with the login name and the SHA256
fingerprint of the key offered. It asks af (``af_auth.keys_for`` on af's node),
which looks the fingerprint up in am's index (one indexed query, whatever the
number of keys), and prints the forced-command line for that key, or nothing:
sshd reads empty output as "no such key".

Put it in a ``Match User git`` block (see ``etc/sshd_applikant.conf``) so that
it answers for the git account only. Failures print nothing (the login is
refused) and one line on stderr, which sshd logs.

Stdlib and the blocking driver only: it runs on every SSH login.
"""

# No `from __future__ import annotations`: importing __future__ costs every login.
import sys

__all__ = ["main"]

CALL_TIMEOUT = 3.0


def main(argv: list[str] | None = None) -> int:
    """Run keys-for; the exit status. Run as the program (no `argv`), it ends
    the process itself once its answer is out (afclient.exit_now)."""
    status = _main(argv)
    if argv is None:
        from applikant.frontend.afclient import exit_now

        exit_now(status)
    return status


def _main(argv: list[str] | None) -> int:
    from applikant.frontend.afclient import Client, Unreachable, parse_config_option

    config_path, args = parse_config_option(list(sys.argv[1:] if argv is None else argv))
    if len(args) != 2 or not args[1].startswith(("SHA256:", "MD5:")):
        sys.stderr.write("usage: applikant-keys-for [--config PATH] USER SHA256:FINGERPRINT\n")
        return 2
    login, fingerprint = args
    try:
        client = Client(config_path)
        reply = client.call(
            "af_auth",
            "keys_for",
            {"login": login, "fingerprint": fingerprint},
            prefix="kf",
            timeout=CALL_TIMEOUT,
        )
    except Unreachable as exc:
        sys.stderr.write(f"applikant keys-for: {exc}\n")
        return 1
    text = reply.get("lines", "") if isinstance(reply, dict) else ""
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
