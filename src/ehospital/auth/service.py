"""Sign-in, tokens and their revocation; no web framework in here."""

from __future__ import annotations

import hashlib
import secrets
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

BEARER_PREFIX = "ehb_"
SESSION_PREFIX = "ehs_"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    kind: str
    expires_at: datetime
    account: Account


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


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
        ok = verify_password(account.password_hash if account else None, password)
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

    async def authenticate(self, token: str, *, address: str | None, request_id: str | None) -> Actor | None:
        """The Actor a token stands for, or None when it is unknown, expired or revoked."""
        digest = token_hash(token)
        found = await self.repo.principal(digest, utcnow())
        if found is None:
            return None
        _, account, doctor = found
        return Actor(
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

    async def logout(self, actor: Actor) -> None:
        """Revoke the token the request came with."""
        if actor.token_hash is not None:
            await self.repo.revoke(actor.token_hash, actor.account_id, utcnow())
        record(self.session, actor, "logout", "account", actor.account_id)

    async def revoke(self, actor: Actor, token: str) -> None:
        """RFC 7009: revoke one of the caller's own tokens; unknown tokens are not an error."""
        await self.repo.revoke(token_hash(token), actor.account_id, utcnow())
        record(self.session, actor, "revoke_token", "account", actor.account_id)

    async def revoke_all(self, actor: Actor) -> int:
        """Sign the caller out everywhere."""
        count = await self.repo.revoke_all(actor.account_id, utcnow())
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
        password_hash=hash_password(password),
        role=str(Role.PATIENT),
        display_name=display_name,
        phone=phone,
        locale=locale,
    )
    repo.add(account)
    await session.flush()
    return account
