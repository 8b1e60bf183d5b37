"""Where uploaded files live: a small Protocol, and a local-directory store readable only by us."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Protocol


class FileStore(Protocol):
    def put(self, content: bytes) -> str:
        """Store bytes; returns the key to read them back."""
        ...

    def get(self, key: str) -> bytes: ...


class LocalFileStore:
    """Files under a directory of mode 0700, each file 0600, named by a random key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put(self, content: bytes) -> str:
        key = secrets.token_hex(16)
        folder = self.root / key[:2]
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        path = folder / key
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        if not key.isalnum():
            raise KeyError(key)
        return (self.root / key[:2] / key).read_bytes()
