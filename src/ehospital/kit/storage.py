"""Where uploaded files live: a small Protocol, and a local-directory store readable only by us."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class FileStore(Protocol):
    def put(self, content: bytes) -> str:
        """Store bytes; returns the key to read them back."""
        ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None:
        """Remove a file; a missing one is not an error."""
        ...

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        """Keys of files stored more than `seconds` ago."""
        ...


class LocalFileStore:
    """Files under a directory of mode 0700, each file 0600, named by a random key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, content: bytes) -> str:
        key = secrets.token_hex(16)
        if not self.root.is_dir():
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder = self.root / key[:2]
        folder.mkdir(exist_ok=True, mode=0o700)
        path = folder / key
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        if not self.root.is_dir():
            return
        cutoff = time.time() - seconds
        for folder in self.root.iterdir():
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.suffix != ".tmp" and path.stat().st_mtime < cutoff:
                        yield path.name

    def _path(self, key: str) -> Path:
        if not key.isalnum():
            raise KeyError(key)
        return self.root / key[:2] / key
