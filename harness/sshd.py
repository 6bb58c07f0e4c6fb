"""The real-sshd harness lives in the package (applikant/ops/sshd.py): `make run`
starts its private sshd with it too. Re-exported here for the tests."""

from applikant.ops.sshd import SshdError, SshServer, ensure_system_user, free_port, make_client_key

__all__ = ["SshServer", "SshdError", "ensure_system_user", "free_port", "make_client_key"]
