"""Trusting CDS clients (CDS Hooks 2.0 §"Trusting CDS Clients"): an EHR calls the service with
`Authorization: Bearer <JWT>` signed with one of its keys (ES384 or RS384). The service knows
the clients it trusts and their public keys (a JSON file, `EHOSPITAL_CDS_CLIENTS_FILE`):

    {"clients": [{"iss": "https://ehr.example.org", "keys": [{"kty": "EC", "crv": "P-384",
      "kid": "k1", "x": "…", "y": "…"}]}]}

and checks the signature, `iss`, `aud` (this service's URL), `exp` (at most 5 minutes ahead),
and that the `jti` was not used before. Keys are never fetched from a `jku` in the token.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_LIFETIME_SECONDS = 300
CLOCK_SKEW_SECONDS = 60

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


class CdsAuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CdsClient:
    iss: str
    keys: dict[str, PublicKey]  # kid → key ("" for a key without kid)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int(text: str) -> int:
    return int.from_bytes(_b64(text), "big")


def public_key(jwk: dict[str, Any]) -> PublicKey:
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-384":
        return ec.EllipticCurvePublicNumbers(_int(jwk["x"]), _int(jwk["y"]), ec.SECP384R1()).public_key()
    if jwk.get("kty") == "RSA":
        return rsa.RSAPublicNumbers(_int(jwk["e"]), _int(jwk["n"])).public_key()
    raise ValueError(f"unsupported key: kty={jwk.get('kty')} crv={jwk.get('crv')}")


def load_clients(path: Path) -> dict[str, CdsClient]:
    """The trusted clients of a clients file (a clear ValueError when it is malformed)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        clients = {}
        for entry in document["clients"]:
            keys = {str(k.get("kid", "")): public_key(k) for k in entry["keys"]}
            clients[str(entry["iss"])] = CdsClient(str(entry["iss"]), keys)
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot read the CDS clients file {path}: {exc}") from exc
    return clients


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class JtiCache:
    """JWT ids seen in the last few minutes (per process: a replay to another process is still
    bounded by the token's 5-minute lifetime)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, jti: str, until: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if self._seen.get(jti, 0) > now:
                return False
            self._seen[jti] = until
            return True


def verify(token: str, clients: dict[str, CdsClient], audience: str, jtis: JtiCache) -> str:
    """The `iss` of a valid client JWT for `audience`; CdsAuthError otherwise."""
    try:
        head_b64, body_b64, sig_b64 = token.split(".")
        header = json.loads(_b64(head_b64))
        claims = json.loads(_b64(body_b64))
        signature = _b64(sig_b64)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CdsAuthError("invalid_jwt", "the bearer JWT is malformed") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise CdsAuthError("invalid_jwt", "the bearer JWT is malformed")
    client = clients.get(str(claims.get("iss", "")))
    if client is None:
        raise CdsAuthError("unknown_cds_client", "this CDS client is not trusted")
    key = client.keys.get(str(header.get("kid", ""))) or (
        next(iter(client.keys.values())) if len(client.keys) == 1 and "kid" not in header else None
    )
    if key is None:
        raise CdsAuthError("unknown_key", "the JWT names no key of this client")
    signed = f"{head_b64}.{body_b64}".encode()
    alg = header.get("alg")
    try:
        if alg == "ES384" and isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 96:
            der = encode_dss_signature(
                int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
            )
            key.verify(der, signed, ec.ECDSA(hashes.SHA384()))
        elif alg == "RS384" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA384())
        else:
            raise CdsAuthError("unsupported_alg", "the JWT must be signed with ES384 or RS384")
    except InvalidSignature as exc:
        raise CdsAuthError("invalid_signature", "the JWT's signature does not verify") from exc
    now = time.time()
    audiences = claims.get("aud")
    if audience not in (audiences if isinstance(audiences, list) else [audiences]):
        raise CdsAuthError("wrong_audience", "the JWT is not for this service")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp < now - CLOCK_SKEW_SECONDS:
        raise CdsAuthError("expired_jwt", "the JWT has expired")
    if exp > now + MAX_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise CdsAuthError("jwt_lifetime_too_long", "the JWT may live at most 5 minutes")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise CdsAuthError("invalid_jwt", "the JWT has no jti")
    if not jtis.first_use(f"{client.iss} {jti}", float(exp) + CLOCK_SKEW_SECONDS):
        raise CdsAuthError("replayed_jwt", "this JWT was already used")
    return client.iss
