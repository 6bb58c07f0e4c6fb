"""Password hashing with Argon2id (argon2-cffi), the KDF OWASP recommends first.

The default parameters are argon2-cffi's (RFC 9106 "low memory": 64 MiB, 3
passes), about 50 ms per hash here: slow for an attacker with a stolen database,
fast enough for interactive logins. Tests pass `fast=True`, which keeps the same
code path with parameters far too weak for real use.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hashes and verifies passwords; tells when a stored hash should be upgraded."""

    def __init__(self, fast: bool = False) -> None:
        if fast:
            self._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        else:
            self._hasher = PasswordHasher()
        # Verified against when the login does not exist, so that an unknown login
        # costs as much time as a wrong password and logins cannot be probed.
        self._dummy = self._hasher.hash("not a real password")

    def hash(self, password: str) -> str:
        """Return an encoded Argon2id hash (parameters and salt included)."""
        return self._hasher.hash(password)

    def verify(self, encoded: str | None, password: str) -> bool:
        """True when `password` matches `encoded`; a missing or corrupt hash never matches."""
        if encoded is None:
            self.burn(password)
            return False
        try:
            return self._hasher.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def burn(self, password: str) -> None:
        """Spend the time of one verification (for unknown logins)."""
        try:
            self._hasher.verify(self._dummy, password + "\x00")
        except VerificationError:
            pass

    def needs_rehash(self, encoded: str) -> bool:
        """True when `encoded` was made with other parameters than ours."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True
