"""Organisations, specialised centres, clinics, doctors and their weekly roster."""

from __future__ import annotations

from datetime import datetime, time
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, Time, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class OrganisationKind(StrEnum):
    HOSPITAL = "hospital"
    PHARMACY = "pharmacy"


class DoctorTitle(StrEnum):
    """Professional titles of Chinese physicians (主任医师 … 住院医师)."""

    CHIEF = "chief_physician"
    ASSOCIATE_CHIEF = "associate_chief_physician"
    ATTENDING = "attending_physician"
    RESIDENT = "resident_physician"


class Organisation(IdMixin, CreatedMixin, Base):
    """A licensed legal entity: a hospital or a pharmacy (FHIR Organization)."""

    __tablename__ = "organisations"

    kind: Mapped[str] = mapped_column(String(16))
    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200))
    licence_number: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(300))
    parent_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("organisations.id"))


class Centre(IdMixin, CreatedMixin, Base):
    """A specialised medical centre (or a specialist hospital such as the skin hospital)."""

    __tablename__ = "centres"

    organisation_id: Mapped[int] = mapped_column(BigId, ForeignKey("organisations.id"))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200))
    description_en: Mapped[str] = mapped_column(Text, default="")
    description_zh: Mapped[str] = mapped_column(Text, default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The centre's promise: a doctor answers a consultation within this many minutes of the
    # request; past it the consultation is offered to other doctors and may be cancelled for a
    # full refund.
    first_response_minutes: Mapped[int] = mapped_column(Integer, default=10, server_default=text("10"))
    # ... and closes an accepted consultation within this many hours (reminded, then marked overdue).
    close_within_hours: Mapped[int] = mapped_column(Integer, default=24, server_default=text("24"))


class Clinic(IdMixin, CreatedMixin, Base):
    """A clinic inside a centre (e.g. the acne clinic of the skin hospital)."""

    __tablename__ = "clinics"
    __table_args__ = (UniqueConstraint("centre_id", "code"),)

    centre_id: Mapped[int] = mapped_column(BigId, ForeignKey("centres.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name_en: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)


class Doctor(IdMixin, CreatedMixin, Base):
    """A practitioner working in a centre; consults only once an admin has verified them."""

    __tablename__ = "doctors"

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    licence_number: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(40))
    institution: Mapped[str] = mapped_column(String(200))
    centre_id: Mapped[int] = mapped_column(BigId, ForeignKey("centres.id"), index=True)
    clinic_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("clinics.id"))
    price_cents: Mapped[int] = mapped_column(Integer)
    bio_en: Mapped[str] = mapped_column(Text, default="")
    bio_zh: Mapped[str] = mapped_column(Text, default="")
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    verified_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    max_concurrent: Mapped[int] = mapped_column(Integer, default=10)


class RosterSlot(IdMixin, Base):
    """A weekly on-duty period of a doctor (weekday 0 = Monday, local hospital time)."""

    __tablename__ = "roster_slots"

    doctor_id: Mapped[int] = mapped_column(BigId, ForeignKey("doctors.id"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)
    starts: Mapped[time] = mapped_column(Time)
    ends: Mapped[time] = mapped_column(Time)


class Pharmacist(IdMixin, CreatedMixin, Base):
    """A licensed pharmacist of a pharmacy, who reviews prescriptions."""

    __tablename__ = "pharmacists"

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    licence_number: Mapped[str] = mapped_column(String(64), unique=True)
    organisation_id: Mapped[int] = mapped_column(BigId, ForeignKey("organisations.id"))
