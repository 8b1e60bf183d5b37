"""The chain head kept outside the database, so that removing the newest rows is detected too."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str


def read_anchor(path: Path) -> Anchor | None:
    try:
        data = json.loads(path.read_text())
        return Anchor(seq=int(data["seq"]), hash=str(data["hash"]))
    except FileNotFoundError:
        return None


def write_anchor(path: Path, head: Anchor) -> None:
    """Record a newer head (never move it back); atomic, readable only by the service."""
    current = read_anchor(path)
    if current is not None and current.seq >= head.seq:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"seq": head.seq, "hash": head.hash}, fh)
    os.replace(tmp, path)
