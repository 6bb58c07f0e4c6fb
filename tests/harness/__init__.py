"""Test harnesses that drive real programs (OpenSSH's sshd, git) on loopback."""
