"""Password hashing with Argon2id (RFC 9106 second recommended profile by default)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verified against when the username does not exist, so timing does not reveal which do.
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def use_fast_hashing() -> None:
    """Cheaper parameters for test suites that create many accounts (never in production)."""
    global _hasher, _DUMMY_HASH
    _hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    _DUMMY_HASH = _hasher.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; always does the work of one verification."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
