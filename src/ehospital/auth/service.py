"""Sign-in, tokens and their revocation; no web framework in here."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.auth.errors import LoginFailed, LoginThrottled
from ehospital.auth.models import AccessToken, Account, LoginAttempt, Role
from ehospital.auth.passwords import hash_password, verify_password
from ehospital.auth.repository import AuthRepository
from ehospital.config import Settings
from ehospital.kit.context import Actor
from ehospital.kit.errors import Conflict
from ehospital.kit.models import utcnow
from ehospital.kit.txn import after_commit

BEARER_PREFIX = "ehb_"
SESSION_PREFIX = "ehs_"
# The cookie that carries a web session token (pages, and the live-chat socket they open).
SESSION_COOKIE = "ehospital_session"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    kind: str
    expires_at: datetime
    account: Account


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class PrincipalCache:
    """Recently verified tokens of this process, so most requests skip the token query.

    An entry lives `ttl` seconds at most (never past the token's expiry). Revoking through this
    process evicts at once; another process notices within `ttl` (settings.token_cache_seconds).
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self._entries: dict[bytes, tuple[Actor, float]] = {}
        self.max_entries = max_entries

    def get(self, digest: bytes) -> Actor | None:
        found = self._entries.get(digest)
        if found is None:
            return None
        if found[1] <= time.monotonic():
            self._entries.pop(digest, None)
            return None
        return found[0]

    def put(self, digest: bytes, actor: Actor, seconds: float) -> None:
        if seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = (actor, time.monotonic() + seconds)

    def evict(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def evict_account(self, account_id: int) -> None:
        for digest in [d for d, (a, _) in self._entries.items() if a.account_id == account_id]:
            self._entries.pop(digest, None)


principals = PrincipalCache()


def evict_now_and_after_commit(session: AsyncSession, evict: Callable[[], None]) -> None:
    """Forget cached sign-ins now, and again once the change is committed: a request of this
    process running in between could otherwise cache the old state for another few seconds."""
    evict()
    after_commit(session, evict)


class AuthService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.repo = AuthRepository(session)
        self.session = session
        self.settings = settings

    async def login(self, username: str, password: str, *, address: str, kind: str = "bearer") -> IssuedToken:
        """Check the password (rate-limited per account and per address) and issue a token."""
        now = utcnow()
        since = now - timedelta(minutes=self.settings.login_window_minutes)
        username = username.strip()
        # Concurrent attempts on one account or from one address wait for each other, so the
        # counts below cannot all read "4 failures" at once (PostgreSQL; SQLite serialises anyway).
        await self.repo.lock_attempts(username, address)
        if (
            await self.repo.failures_since(username=username, address=None, since=since)
            >= self.settings.login_max_failures_account
            or await self.repo.failures_since(username=None, address=address, since=since)
            >= self.settings.login_max_failures_address
        ):
            self.repo.add(LoginAttempt(username=username, address=address, at=now, success=False))
            raise LoginThrottled(
                "too many failed sign-ins; try again later",
                retry_after_seconds=self.settings.login_window_minutes * 60,
            )
        account = await self.repo.account_by_username(username)
        # Argon2 takes ~0.1 s of CPU: off the event loop, so other requests go on meanwhile.
        ok = await asyncio.to_thread(verify_password, account.password_hash if account else None, password)
        self.repo.add(LoginAttempt(username=username, address=address, at=now, success=ok))
        if account is None or not ok or not account.is_active:
            raise LoginFailed("wrong username or password")
        return self.issue(account, kind=kind, address=address, now=now)

    def issue(self, account: Account, *, kind: str, address: str, now: datetime | None = None) -> IssuedToken:
        """Create a bearer token or web session for an account already authenticated."""
        now = now or utcnow()
        if kind == "session":
            token = SESSION_PREFIX + secrets.token_urlsafe(32)
            expires = now + timedelta(hours=self.settings.session_hours)
        else:
            token = BEARER_PREFIX + secrets.token_urlsafe(32)
            expires = now + timedelta(minutes=self.settings.access_token_minutes)
        self.repo.add(
            AccessToken(
                token_hash=token_hash(token),
                account_id=account.id,
                kind=kind,
                created_at=now,
                expires_at=expires,
                address=address,
            )
        )
        return IssuedToken(token=token, kind=kind, expires_at=expires, account=account)

    async def authenticate(
        self, token: str, *, address: str | None, request_id: str | None, kind: str
    ) -> Actor | None:
        """The Actor a token of `kind` stands for, or None when it is unknown, of the other kind
        (a web session is no API bearer token and vice versa), expired or revoked."""
        prefix = SESSION_PREFIX if kind == "session" else BEARER_PREFIX
        if not token.startswith(prefix):
            return None
        digest = token_hash(token)
        cached = principals.get(digest)
        if cached is not None:
            return dataclasses.replace(cached, address=address, request_id=request_id)
        now = utcnow()
        found = await self.repo.principal(digest, now, kind)
        if found is None:
            return None
        stored, account, doctor = found
        actor = Actor(
            account_id=account.id,
            role=Role(account.role),
            username=account.username,
            display_name=account.display_name,
            locale=account.locale,
            doctor_id=doctor.id if doctor else None,
            doctor_centre_id=doctor.centre_id if doctor else None,
            doctor_verified=bool(doctor and doctor.verified_at),
            organisation_id=account.organisation_id,
            centre_id=account.centre_id,
            address=address,
            request_id=request_id,
            token_hash=digest,
        )
        lifetime = (stored.expires_at - now).total_seconds()
        principals.put(digest, actor, min(self.settings.token_cache_seconds, lifetime))
        return actor

    async def logout(self, actor: Actor) -> None:
        """Revoke the token the request came with."""
        if actor.token_hash is not None:
            digest = actor.token_hash
            await self.repo.revoke(digest, actor.account_id, utcnow())
            evict_now_and_after_commit(self.session, lambda: principals.evict(digest))
        record(self.session, actor, "logout", "account", actor.account_id)

    async def revoke(self, actor: Actor, token: str) -> None:
        """RFC 7009: revoke one of the caller's own tokens; unknown tokens are not an error."""
        digest = token_hash(token)
        if await self.repo.revoke(digest, actor.account_id, utcnow()):
            evict_now_and_after_commit(self.session, lambda: principals.evict(digest))
        record(self.session, actor, "revoke_token", "account", actor.account_id)

    async def revoke_all(self, actor: Actor) -> int:
        """Sign the caller out everywhere."""
        count = await self.repo.revoke_all(actor.account_id, utcnow())
        account_id = actor.account_id
        evict_now_and_after_commit(self.session, lambda: principals.evict_account(account_id))
        record(self.session, actor, "revoke_all_tokens", "account", actor.account_id)
        return count


async def register_patient_account(
    session: AsyncSession,
    username: str,
    password: str,
    display_name: str,
    phone: str | None,
    locale: str,
) -> Account:
    """Create a patient account (the family holder); the people cared for are added after."""
    repo = AuthRepository(session)
    if await repo.account_by_username(username) is not None:
        raise Conflict("this username is taken", code="username_taken")
    account = Account(
        username=username,
        password_hash=await asyncio.to_thread(hash_password, password),
        role=str(Role.PATIENT),
        display_name=display_name,
        phone=phone,
        locale=locale,
    )
    repo.add(account)
    await session.flush()
    return account
