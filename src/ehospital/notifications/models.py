"""The notification outbox shared by every domain that tells people something."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class NotificationStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"


class Notification(IdMixin, CreatedMixin, Base):
    """The outbox: a message to one account on one channel, written in the same transaction
    as what caused it; in-app ones are read from here, the others are sent by the dispatcher
    through an adapter (SMS, WeChat) and retried with backoff."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_account_id_created_at", "account_id", "created_at"),
        Index("ix_notifications_status_next_attempt_at", "status", "next_attempt_at"),
    )

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    patient_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("patients.id"))
    channel: Mapped[str] = mapped_column(String(12))  # in_app | sms | wechat
    kind: Mapped[str] = mapped_column(String(16))  # alert | reminder | report
    code: Mapped[str] = mapped_column(String(32))  # e.g. urgent_low, measure, daily_report
    subject_id: Mapped[int | None] = mapped_column(BigId)  # the alert / plan / report
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(500))
