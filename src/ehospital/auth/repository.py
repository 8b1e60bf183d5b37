"""Every query of the auth domain."""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import Select, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.models import AccessToken, Account, LoginAttempt
from ehospital.directory.models import Doctor
from ehospital.kit.models import one_or_none


class AuthRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def account_by_username(self, username: str) -> Account | None:
        return await one_or_none(self.session, select(Account).where(Account.username == username))

    async def account(self, account_id: int) -> Account | None:
        return await self.session.get(Account, account_id)

    async def lock_attempts(self, username: str, address: str) -> None:
        """Serialise sign-in attempts per username and per address until the transaction ends."""
        if self.session.get_bind().dialect.name != "postgresql":
            return  # SQLite: every transaction already holds the database's write lock
        for space, key in ((1, username), (2, address)):
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"), {"space": space, "key": key}
            )

    async def failures_since(self, *, username: str | None, address: str | None, since: datetime) -> int:
        query = (
            select(func.count())
            .select_from(LoginAttempt)
            .where(LoginAttempt.at >= since, LoginAttempt.success.is_(False))
        )
        if username is not None:
            query = query.where(LoginAttempt.username == username)
        if address is not None:
            query = query.where(LoginAttempt.address == address)
        return int(await self.session.scalar(query) or 0)

    def add(self, obj: AccessToken | LoginAttempt | Account) -> None:
        self.session.add(obj)

    async def principal(
        self, token_hash: bytes, now: datetime, kind: str
    ) -> tuple[AccessToken, Account, Doctor | None] | None:
        """The live token with its account (and doctor profile), or None."""
        row = (
            await self.session.execute(
                _principal_statement(), {"p_hash": token_hash, "p_kind": kind, "p_now": now}
            )
        ).first()
        return None if row is None else (row[0], row[1], row[2])

    async def revoke(self, token_hash: bytes, account_id: int, now: datetime) -> bool:
        result = await self.session.execute(
            update(AccessToken)
            .where(
                AccessToken.token_hash == token_hash,
                AccessToken.account_id == account_id,
                AccessToken.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_all(self, account_id: int, now: datetime) -> int:
        result = await self.session.execute(
            update(AccessToken)
            .where(AccessToken.account_id == account_id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


@functools.cache
def _principal_statement() -> Select[tuple[AccessToken, Account, Doctor]]:
    """Built once (every request and live-chat frame whose token is not cached runs it; building
    the statement cost more than running it)."""
    return (
        select(AccessToken, Account, Doctor)
        .join(Account, Account.id == AccessToken.account_id)
        .outerjoin(Doctor, Doctor.account_id == Account.id)
        .where(
            AccessToken.token_hash == bindparam("p_hash", type_=AccessToken.__table__.c.token_hash.type),
            AccessToken.kind == bindparam("p_kind", type_=AccessToken.__table__.c.kind.type),
            AccessToken.revoked_at.is_(None),
            AccessToken.expires_at > bindparam("p_now", type_=AccessToken.__table__.c.expires_at.type),
            Account.is_active.is_(True),
        )
    )
