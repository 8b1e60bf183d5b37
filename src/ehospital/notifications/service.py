"""The notification outbox: queue messages in the transaction of the event that caused them,
read the in-app inbox, and deliver the other channels from a dispatcher that any number of
server processes may run at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ehospital.auth.models import Account
from ehospital.db import session_scope
from ehospital.kit.context import Actor
from ehospital.kit.errors import NotFound
from ehospital.kit.models import one_or_none, utcnow
from ehospital.notifications.adapters import DeliveryError, Notifier, Recipient
from ehospital.notifications.models import Notification, NotificationStatus

log = logging.getLogger("ehospital.notifications")

IN_APP = "in_app"
CHANNELS = frozenset({IN_APP, "sms", "wechat"})
MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
# A claimed notification is reserved for the process sending it for this long: longer than a
# whole batch can take (sends run SEND_CONCURRENCY at a time, each cut off after SEND_TIMEOUT).
# Should that process die mid-send, the notification is due again when the lease runs out.
CLAIM_LEASE = timedelta(minutes=10)
SEND_TIMEOUT = 30.0
SEND_CONCURRENCY = 8
_TITLE_MAX = 200
_ERROR_MAX = 500


class NotificationNotFound(NotFound):
    code = "notification_not_found"


def queue(
    session: AsyncSession,
    *,
    account_id: int,
    patient_id: int | None,
    kind: str,
    code: str,
    subject_id: int | None,
    title: str,
    body: str,
    channels: Sequence[str] = (IN_APP,),
    now: datetime | None = None,
) -> list[Notification]:
    """Add one notification per channel to the caller's transaction (the outbox: they commit or
    roll back with the event that caused them). In-app ones are delivered by being stored; the
    others wait for the dispatcher. Nothing is flushed."""
    if isinstance(channels, str):  # a str is a Sequence[str] too: "sms" would be three channels
        raise ValueError(f"channels must be a sequence of channel names, not the string {channels!r}")
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        raise ValueError(f"unknown notification channel(s) {unknown}; known: {sorted(CHANNELS)}")
    if len(kind) > 16 or len(code) > 32:
        raise ValueError("a notification's kind is at most 16 characters and its code at most 32")
    at = now if now is not None else utcnow()
    # A long name in a title must not cost the patient the alert: shorten rather than refuse.
    if len(title) > _TITLE_MAX:
        title = title[: _TITLE_MAX - 1] + "…"
    rows = []
    for channel in dict.fromkeys(channels):  # each channel once, in the order given
        in_app = channel == IN_APP
        rows.append(
            Notification(
                account_id=account_id,
                patient_id=patient_id,
                channel=channel,
                kind=kind,
                code=code,
                subject_id=subject_id,
                title=title,
                body=body,
                status=NotificationStatus.SENT if in_app else NotificationStatus.QUEUED,
                attempts=0,
                sent_at=at if in_app else None,
                next_attempt_at=None if in_app else at,
                created_at=at,
            )
        )
    session.add_all(rows)
    return rows


# --- the in-app inbox --------------------------------------------------------------------------


class NotificationRepository:
    """Every query of the inbox; only the account's own in-app rows are ever reachable."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def inbox(
        self, account_id: int, *, unread_only: bool, limit: int, before_id: int | None
    ) -> list[Notification]:
        query = select(Notification).where(
            Notification.account_id == account_id, Notification.channel == IN_APP
        )
        if unread_only:
            query = query.where(Notification.read_at.is_(None))
        if before_id is not None:
            query = query.where(Notification.id < before_id)
        rows = await self.session.scalars(query.order_by(Notification.id.desc()).limit(limit))
        return list(rows)

    async def own(self, account_id: int, notification_id: int) -> Notification | None:
        return await one_or_none(
            self.session,
            select(Notification)
            .where(
                Notification.id == notification_id,
                Notification.account_id == account_id,
                Notification.channel == IN_APP,
            )
            .execution_options(populate_existing=True),
        )

    async def mark_read(self, account_id: int, *, at: datetime, notification_id: int | None = None) -> int:
        """Mark unread rows read (one, or all of the account's); the first reading time stays."""
        stmt = (
            update(Notification)
            .where(
                Notification.account_id == account_id,
                Notification.channel == IN_APP,
                Notification.read_at.is_(None),
            )
            .values(read_at=at)
            .execution_options(synchronize_session=False)
        )
        if notification_id is not None:
            stmt = stmt.where(Notification.id == notification_id)
        result = await self.session.execute(stmt)
        return int(result.rowcount)  # type: ignore[attr-defined]


class NotificationService:
    """The signed-in account's in-app notifications."""

    def __init__(self, session: AsyncSession) -> None:
        self.repo = NotificationRepository(session)

    async def inbox(
        self, actor: Actor, *, unread_only: bool = False, limit: int = 50, before_id: int | None = None
    ) -> list[Notification]:
        """Newest first; `before_id` continues from the last one of the previous page."""
        return await self.repo.inbox(
            actor.account_id, unread_only=unread_only, limit=limit, before_id=before_id
        )

    async def mark_read(
        self, actor: Actor, notification_id: int, *, now: datetime | None = None
    ) -> Notification:
        """Idempotent: reading again keeps the time it was first read."""
        at = now if now is not None else utcnow()
        await self.repo.mark_read(actor.account_id, at=at, notification_id=notification_id)
        found = await self.repo.own(actor.account_id, notification_id)
        if found is None:
            raise NotificationNotFound("no such notification", notification_id=notification_id)
        return found

    async def mark_all_read(self, actor: Actor, *, now: datetime | None = None) -> int:
        """How many were unread."""
        return await self.repo.mark_read(actor.account_id, at=now if now is not None else utcnow())


# --- the dispatcher ----------------------------------------------------------------------------


def backoff(attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: 30 s, 1, 2, 4 … minutes, at most an hour."""
    wait: timedelta = FIRST_RETRY * 2 ** max(attempts - 1, 0)
    return min(wait, MAX_RETRY)


async def dispatch_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    adapters: Mapping[str, Notifier],
    *,
    now: datetime | None = None,
    batch: int = 100,
) -> int:
    """Send up to `batch` due notifications through their channel's adapter; returns how many
    were attempted (call again while it returns `batch`).

    No lock is held while sending: one short transaction claims the due rows (bumping
    `attempts` and pushing `next_attempt_at` out by CLAIM_LEASE; on PostgreSQL with
    `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers take disjoint rows), the sends follow,
    and each outcome is written in a transaction of its own, guarded by the claimed attempt
    number. Delivery is at least once: a process that dies between sending and recording sends
    again when the lease expires (the adapters pass the notification id for gateways to dedupe)."""

    def clock() -> datetime:
        return now if now is not None else utcnow()

    claimed, recipients = await _claim(sessionmaker, clock(), batch)
    if not claimed:
        return 0
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def attempt(n: Notification) -> tuple[Notification, DeliveryError | None]:
        async with gate:
            return n, await _deliver(n, recipients.get(n.account_id), adapters)

    tasks = [asyncio.create_task(attempt(n)) for n in claimed]
    try:
        for next_done in asyncio.as_completed(tasks):
            n, failure = await next_done
            await _record(sessionmaker, n, failure, clock())
    finally:  # cancelled (shutdown) or the database failed: what is unrecorded waits for its lease
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(claimed)


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime, batch: int
) -> tuple[list[Notification], dict[int, Recipient]]:
    due = (
        select(Notification.id)
        .where(Notification.status == NotificationStatus.QUEUED, Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(batch)
        .with_for_update(skip_locked=True)  # rendered on PostgreSQL only; SQLite has one writer
        .cte("due")
        # Run once: as a plain `IN (subquery)`, PostgreSQL may rescan the subquery, whose
        # SKIP LOCKED then passes over the rows this statement just claimed and claims more.
        .prefix_with("MATERIALIZED")
    )
    claim = (
        update(Notification)
        .where(
            Notification.id.in_(select(due.c.id)),
            Notification.status == NotificationStatus.QUEUED,
            Notification.next_attempt_at <= now,
        )
        .values(attempts=Notification.attempts + 1, next_attempt_at=now + CLAIM_LEASE)
        .returning(Notification)
        .execution_options(synchronize_session=False)
    )
    async with session_scope(sessionmaker) as session:
        claimed = list(await session.scalars(claim))
        account_ids = {n.account_id for n in claimed}
        accounts = await session.execute(
            select(Account.id, Account.phone, Account.locale).where(
                Account.id.in_(account_ids), Account.is_active.is_(True)
            )
        )
        recipients = {row.id: Recipient(row.id, row.phone, row.locale) for row in accounts}
        session.expunge_all()  # keep the loaded values readable after the commit
    return sorted(claimed, key=lambda n: n.id), recipients


async def _deliver(
    n: Notification, recipient: Recipient | None, adapters: Mapping[str, Notifier]
) -> DeliveryError | None:
    adapter = adapters.get(n.channel)
    if adapter is None:
        return DeliveryError(f"no adapter is configured for the channel {n.channel!r}", permanent=True)
    if recipient is None:
        return DeliveryError("the account is deactivated", permanent=True)
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            await adapter.send(n, recipient)
    except DeliveryError as exc:
        return exc
    except TimeoutError:
        return DeliveryError(f"not delivered within {SEND_TIMEOUT:g} s", permanent=False)
    except Exception as exc:  # an adapter's bug or an unforeseen answer: retry, and say so
        log.warning("notifier %s failed on notification %s", n.channel, n.id, exc_info=True)
        return DeliveryError(f"{type(exc).__name__}: {exc}", permanent=False)
    return None


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    n: Notification,
    failure: DeliveryError | None,
    at: datetime,
) -> None:
    values: dict[str, Any]
    if failure is None:
        values = {"status": NotificationStatus.SENT, "sent_at": at, "next_attempt_at": None, "error": None}
    else:
        error = failure.message[:_ERROR_MAX]
        if failure.permanent or n.attempts >= MAX_ATTEMPTS:
            log.info("notification %s (%s) failed: %s", n.id, n.channel, error)
            values = {"status": NotificationStatus.FAILED, "next_attempt_at": None, "error": error}
        else:
            values = {"next_attempt_at": at + backoff(n.attempts), "error": error}
    async with session_scope(sessionmaker) as session:
        await session.execute(
            update(Notification)
            .where(
                Notification.id == n.id,
                Notification.status == NotificationStatus.QUEUED,
                Notification.attempts == n.attempts,  # still our claim (not re-claimed after the lease)
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
