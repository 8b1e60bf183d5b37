"""Payment providers behind one small interface; the local one signs its callbacks like a real one."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any, Protocol


class PaymentProvider(Protocol):
    name: str

    def verify(self, body: bytes, signature: str) -> bool:
        """Whether `signature` (header value) authenticates `body`."""
        ...


class HmacProvider:
    """Callbacks signed `sha256=<hex HMAC-SHA256(secret, body)>`, as WeChat Pay / Alipay style
    gateways do with their own schemes; the local demo provider uses exactly this."""

    def __init__(self, name: str, secret: bytes) -> None:
        self.name = name
        self._secret = secret

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def verify(self, body: bytes, signature: str) -> bool:
        return hmac.compare_digest(self.sign(body), signature.strip())

    def callback(self, order_id: int, amount_cents: int) -> tuple[bytes, str]:
        """What the provider would POST to us once the patient paid: body and signature."""
        body = json.dumps(
            {
                "order_id": order_id,
                "amount_cents": amount_cents,
                "txn_id": f"{self.name}-{secrets.token_hex(12)}",
                "nonce": secrets.token_hex(16),
                "timestamp": int(time.time()),
            },
            separators=(",", ":"),
        ).encode()
        return body, self.sign(body)


def local_secret(path: Path) -> bytes:
    """The local provider's shared secret, created on first use (0600)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with path.open("x") as fh:
                fh.write(secrets.token_hex(32))
            path.chmod(0o600)
        except FileExistsError:
            pass
    return path.read_text().strip().encode()


def parse_callback(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("not an object")
    return data
