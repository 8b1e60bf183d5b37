"""Accounts, access tokens and sign-in attempts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class Role(StrEnum):
    PATIENT = "patient"
    DOCTOR = "doctor"
    PHARMACIST = "pharmacist"
    PHARMACY_STAFF = "pharmacy_staff"
    CENTRE_MANAGER = "centre_manager"
    ADMIN = "admin"


class Account(IdMixin, CreatedMixin, Base):
    """Someone who signs in. A patient account holds a family of Patients."""

    __tablename__ = "accounts"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    display_name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Staff affiliation: the pharmacy of a pharmacist or pharmacy staff, the centre of a manager.
    organisation_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("organisations.id"))
    centre_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("centres.id"))


class AccessToken(Base):
    """An issued bearer token or web session; only its SHA-256 is stored."""

    __tablename__ = "access_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "bearer" or "session"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[str | None] = mapped_column(String(64))


class LoginAttempt(IdMixin, Base):
    """One sign-in attempt; failures within a window are counted per account and per address."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_address_at", "address", "at"),
    )

    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    success: Mapped[bool] = mapped_column(Boolean)
