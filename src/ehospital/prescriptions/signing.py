"""Doctors' Ed25519 e-signatures over a canonical JSON form of the prescription."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: JSON, keys sorted, no spaces, UTF-8 (RFC 8785 style for
    the types we use: strings, integers, booleans, null, lists, objects; decimals as strings)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()


def public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def verify(public_key: bytes, document: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, document)
    except (InvalidSignature, ValueError):
        return False
    return True


class KeyStore:
    """Each doctor's private key in its own 0600 file under a 0700 folder of the data dir.

    (A hospital deployment would keep these in an HSM or the doctor's CA certificate; the
    interface — get the key of doctor N, sign bytes — stays the same.)
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def private_key(self, doctor_id: int) -> Ed25519PrivateKey:
        path = self.root / f"doctor-{doctor_id}.ed25519"
        if path.exists():
            return Ed25519PrivateKey.from_private_bytes(path.read_bytes())
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        try:
            os.link(tmp, path)  # first writer wins if two processes race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return Ed25519PrivateKey.from_private_bytes(path.read_bytes())
