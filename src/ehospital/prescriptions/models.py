"""The formulary and prescriptions (FHIR Medication / MedicationRequest)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class Control(StrEnum):
    """Special-control classes of Chinese drug law: none of these may be prescribed online."""

    NONE = "none"
    NARCOTIC = "narcotic"
    PSYCHOTROPIC_1 = "psychotropic_1"
    PSYCHOTROPIC_2 = "psychotropic_2"
    TOXIC = "toxic"
    RADIOACTIVE = "radioactive"


class RxStatus(StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    AUTO_CHECKED = "auto_checked"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"
    PAID = "paid"
    DISPENSED = "dispensed"
    DELIVERED = "delivered"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The only moves the server allows; anything else is 409 with the current state.
TRANSITIONS: dict[RxStatus, frozenset[RxStatus]] = {
    RxStatus.DRAFT: frozenset({RxStatus.SIGNED, RxStatus.WITHDRAWN}),
    RxStatus.SIGNED: frozenset({RxStatus.AUTO_CHECKED}),
    RxStatus.AUTO_CHECKED: frozenset(
        {RxStatus.APPROVED, RxStatus.REJECTED, RxStatus.RETURNED, RxStatus.WITHDRAWN, RxStatus.EXPIRED}
    ),
    RxStatus.RETURNED: frozenset(
        {RxStatus.AUTO_CHECKED, RxStatus.SUPERSEDED, RxStatus.WITHDRAWN, RxStatus.EXPIRED}
    ),
    RxStatus.APPROVED: frozenset({RxStatus.PAID, RxStatus.CANCELLED, RxStatus.EXPIRED}),
    RxStatus.PAID: frozenset({RxStatus.DISPENSED}),
    RxStatus.DISPENSED: frozenset({RxStatus.DELIVERED}),
}


class Severity(StrEnum):
    """Trade severity levels (CDS Hooks: critical / warning / info)."""

    CONTRAINDICATED = "contraindicated"
    MAJOR = "major"
    MODERATE = "moderate"
    MINOR = "minor"


SEVERITY_RANK = {Severity.CONTRAINDICATED: 4, Severity.MAJOR: 3, Severity.MODERATE: 2, Severity.MINOR: 1}


class Drug(IdMixin, CreatedMixin, Base):
    """One product of the formulary: a generic in a form and strength."""

    __tablename__ = "drugs"

    code: Mapped[str] = mapped_column(String(80), unique=True)
    generic_en: Mapped[str] = mapped_column(String(120), index=True)
    generic_zh: Mapped[str] = mapped_column(String(60), index=True)
    form: Mapped[str] = mapped_column(String(24))
    strength: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(16))
    atc: Mapped[str] = mapped_column(String(7), index=True)
    rx_only: Mapped[bool] = mapped_column(Boolean)
    control: Mapped[str] = mapped_column(String(16))
    price_cents: Mapped[int] = mapped_column(Integer)
    category: Mapped[str] = mapped_column(String(24))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DoctorKey(CreatedMixin, Base):
    """A doctor's Ed25519 public key; anyone can verify prescriptions with it."""

    __tablename__ = "doctor_keys"

    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    doctor_id: Mapped[int] = mapped_column(BigId, ForeignKey("doctors.id"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))


class Prescription(IdMixin, CreatedMixin, Base):
    """A prescription written in a consultation; once signed it never changes (a revision is a
    new version that points at the one it replaces)."""

    __tablename__ = "prescriptions"
    __table_args__ = (UniqueConstraint("lineage_id", "version"),)

    consultation_id: Mapped[int] = mapped_column(BigId, ForeignKey("consultations.id"), index=True)
    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"), index=True)
    doctor_id: Mapped[int] = mapped_column(BigId, ForeignKey("doctors.id"), index=True)
    # All versions of one prescription share the lineage id (the id of version 1).
    lineage_id: Mapped[int | None] = mapped_column(BigId, index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))
    diagnosis_code: Mapped[str] = mapped_column(String(16))
    diagnosis_text: Mapped[str] = mapped_column(Text)
    chronic: Mapped[bool] = mapped_column(Boolean, default=False)
    long_term: Mapped[bool] = mapped_column(Boolean, default=False)
    extended_reason: Mapped[str | None] = mapped_column(Text)
    guardian_present: Mapped[bool] = mapped_column(Boolean, default=False)
    validity_days: Mapped[int] = mapped_column(Integer, default=1)
    pharmacy_id: Mapped[int] = mapped_column(BigId, ForeignKey("organisations.id"), index=True)
    # Highest severity the automatic check found (0 none … 4 contraindicated): orders the queue.
    severity_rank: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))
    canonical: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[bytes | None] = mapped_column(LargeBinary(64))


class PrescriptionItem(IdMixin, Base):
    __tablename__ = "prescription_items"
    __table_args__ = (UniqueConstraint("prescription_id", "position"),)

    prescription_id: Mapped[int] = mapped_column(BigId, ForeignKey("prescriptions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    drug_id: Mapped[int] = mapped_column(BigId, ForeignKey("drugs.id"))
    dose: Mapped[str] = mapped_column(String(24))  # a decimal, kept as its exact text
    dose_unit: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(16))
    frequency: Mapped[str] = mapped_column(String(8))
    days: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    instructions: Mapped[str] = mapped_column(Text, default="")


class Finding(IdMixin, CreatedMixin, Base):
    """What the automatic check found: stored with the prescription for the pharmacist."""

    __tablename__ = "prescription_findings"

    prescription_id: Mapped[int] = mapped_column(BigId, ForeignKey("prescriptions.id"), index=True)
    rule: Mapped[str] = mapped_column(String(80))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    message_zh: Mapped[str] = mapped_column(Text, default="")
    evidence: Mapped[str] = mapped_column(Text, default="")  # JSON
    source: Mapped[str] = mapped_column(Text)  # full references (the vetting engine cites them)


class RxEvent(IdMixin, Base):
    """One step of a prescription's story: who moved it from which state to which, and why."""

    __tablename__ = "prescription_events"

    prescription_id: Mapped[int] = mapped_column(BigId, ForeignKey("prescriptions.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    text: Mapped[str | None] = mapped_column(Text)
