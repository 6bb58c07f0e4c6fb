"""Harnesses that start real programs (portmapper, am, af, aw, ab, OpenSSH's sshd, git)
on free loopback ports and stop them again: shared by `tests/` and `bench/`.

Nothing here is imported by the `applikant` package itself.
"""
