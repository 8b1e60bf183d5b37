"""Skin photos encrypted at rest: a FileStore that seals every file with AES-256-GCM before
handing it to another FileStore, with the key in a file readable only by this service."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ehospital.kit.storage import FileStore, LocalFileStore

if TYPE_CHECKING:
    from ehospital.config import Settings

VERSION = 1
NONCE_BYTES = 12  # 96-bit random nonce per file: 2^-32 collision risk only after ~2^32 files
KEY_BYTES = 32  # AES-256
PURPOSE = b"skin-photo"
_HEADER = 1 + NONCE_BYTES
_TAG_BYTES = 16


class StoredFileError(Exception):
    """A stored file that cannot be decrypted: changed, truncated, of another purpose or key."""


class KeyFileError(Exception):
    """The key file is unreadable, of the wrong size, or readable by other users."""


class EncryptedFileStore:
    """Every file sealed as version byte ‖ nonce ‖ AES-256-GCM(content), the version byte and
    the purpose (e.g. b"skin-photo") bound to it as associated data, so a file is only ever
    opened as what it was stored as. Keys, deletion and age come from the wrapped store."""

    def __init__(self, inner: FileStore, key_path: Path, *, purpose: bytes = PURPOSE) -> None:
        self.inner = inner
        self.key_path = key_path
        self.purpose = purpose
        self._aead = AESGCM(load_or_create_key(key_path))

    @classmethod
    def from_settings(cls, settings: Settings) -> EncryptedFileStore:
        """Files under <data dir>/skin-photos (outside the uploads the upload sweeper prunes),
        the key in <key dir>/skin-photos.key."""
        return cls(LocalFileStore(settings.data_dir / "skin-photos"), settings.key_dir / "skin-photos.key")

    def put(self, content: bytes) -> str:
        version = bytes([VERSION])
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, content, self._associated(version))
        return self.inner.put(version + nonce + sealed)

    def get(self, key: str) -> bytes:
        blob = self.inner.get(key)
        if len(blob) < _HEADER + _TAG_BYTES:
            raise StoredFileError(f"stored file {key} is truncated ({len(blob)} bytes)")
        version = blob[:1]
        if version[0] != VERSION:
            raise StoredFileError(f"stored file {key} has an unknown format version {version[0]}")
        try:
            return self._aead.decrypt(blob[1:_HEADER], blob[_HEADER:], self._associated(version))
        except InvalidTag as exc:
            raise StoredFileError(
                f"stored file {key} failed authentication: it was changed or damaged, or it was "
                f"not stored as {self.purpose.decode(errors='replace')} with this key"
            ) from exc

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        return self.inner.keys_older_than(seconds)

    def _associated(self, version: bytes) -> bytes:
        return b"ehospital:" + self.purpose + b":v" + version


def load_or_create_key(path: Path) -> bytes:
    """The 32-byte key in `path`; created (0600, in a 0700 directory) when there is none.

    Creation is atomic: the key is written to a private temporary file and hard-linked into
    place, which fails if another process got there first; then everyone reads the winner's key.
    """
    for _ in range(3):
        try:
            return _read_key(path)
        except FileNotFoundError:
            pass
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # atomic, and never replaces a key another process made
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
    raise KeyFileError(f"could not create or read the key file {path}")  # pragma: no cover


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"key file {path} is open to other users (mode {mode & 0o777:o}): chmod 600 it"
            )
        key = fh.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise KeyFileError(f"key file {path} holds {len(key)} bytes, not {KEY_BYTES}")
    return key


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
