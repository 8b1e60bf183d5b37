"""Glucose care: devices registered to patients, their readings, care plans, alerts and
reports."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class DeviceKind(StrEnum):
    CGM = "cgm"
    METER = "meter"


class Device(IdMixin, CreatedMixin, Base):
    """A glucose meter or CGM (or the phone app uploading for it) registered to one patient.

    It authenticates uploads with a secret shown once at registration; Nightscout uploaders
    send its SHA-1 (hex) as `api-secret`, and the table keeps only SHA-256 of that."""

    __tablename__ = "glucose_devices"

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"), index=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True)  # public: MQTT topic, API paths
    kind: Mapped[str] = mapped_column(String(8))
    label: Mapped[str] = mapped_column(String(100))
    unit: Mapped[str] = mapped_column(String(8))  # what the device measures in
    # The device's clock offset from UTC, used for readings that carry no offset of their own.
    utc_offset_minutes: Mapped[int] = mapped_column(SmallInteger, default=480)
    secret_digest: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    registered_by: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    last_reading_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Reading(Base):
    """One glucose value: canonical mg/dL for computing, the value and unit as measured for
    display, the instant in UTC and the device's offset for local time."""

    __tablename__ = "glucose_readings"
    __table_args__ = (
        # The same device never reports two values for one instant: a retry or a re-sent
        # backlog is recognised here and ignored.
        UniqueConstraint("device_id", "measured_at"),
        # No index by patient: a patient's readings are read through their devices' index
        # (device_id IN (…)); a second index slowed every insert.
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign keys on this table, on purpose: PostgreSQL checks each one with a trigger per
    # row, which more than doubled the database's CPU per reading in bench/glucose.py. The
    # service writes only the ids of the device it has just authenticated in the same
    # transaction, and devices and patients are never deleted (retired, archived).
    patient_id: Mapped[int] = mapped_column(BigId)
    device_id: Mapped[int] = mapped_column(BigId)
    measured_at: Mapped[datetime] = mapped_column(UTCDateTime())
    utc_offset_minutes: Mapped[int] = mapped_column(SmallInteger)
    mgdl: Mapped[float] = mapped_column(Float)
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))  # cgm | smbg (fingerstick)
    source: Mapped[str] = mapped_column(String(12))  # api | fhir | nightscout | mqtt
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CarePlan(IdMixin, CreatedMixin, Base):
    """One version of a patient's personalised diabetes plan; the highest version is current
    and earlier ones are kept unchanged as its history."""

    __tablename__ = "care_plans"
    __table_args__ = (UniqueConstraint("patient_id", "version"),)

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    version: Mapped[int] = mapped_column(Integer)
    doctor_id: Mapped[int] = mapped_column(BigId, ForeignKey("doctors.id"), index=True)
    targets: Mapped[str] = mapped_column(String(24))  # standard | older_high_risk | pregnancy_t1
    timezone: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(8))  # the unit the patient reads values in
    thresholds: Mapped[str] = mapped_column(Text)  # JSON, see glucose.alerts.Thresholds
    monitoring: Mapped[str] = mapped_column(Text)  # JSON list of reminders {time, what, note}
    diet: Mapped[str] = mapped_column(Text)
    exercise: Mapped[str] = mapped_column(Text)
    medications: Mapped[str] = mapped_column(Text)  # JSON list {name, dose, times, prescription_id}
    note: Mapped[str] = mapped_column(Text)


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


_UNRESOLVED_SQL = "status <> 'resolved'"


class Alert(IdMixin, Base):
    """A glucose condition that began (urgent low, low, high, sustained high, rapid fall, no
    data): open until acknowledged, resolved when the condition has ended."""

    __tablename__ = "glucose_alerts"
    __table_args__ = (
        # One live alert per patient and condition, even for uploads racing each other.
        Index(
            "uq_glucose_alerts_live",
            "patient_id",
            "condition",
            unique=True,
            postgresql_where=text(_UNRESOLVED_SQL),
            sqlite_where=text(_UNRESOLVED_SQL),
        ),
        Index("ix_glucose_alerts_patient_id_raised_at", "patient_id", "raised_at"),
    )

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    condition: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    began_at: Mapped[datetime] = mapped_column(UTCDateTime())  # the reading's time
    value_mgdl: Mapped[float | None] = mapped_column(Float)  # the reading that raised it
    unit: Mapped[str] = mapped_column(String(8))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when we learnt of it
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    snoozed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GlucoseReport(IdMixin, CreatedMixin, Base):
    """A report made automatically (daily for the patient, weekly for the doctor): its window
    and headline figures (the dashboard orders patients by them); the page is drawn from the
    readings of the window when opened."""

    __tablename__ = "glucose_reports"
    __table_args__ = (
        UniqueConstraint("patient_id", "audience", "window_end"),
        Index("ix_glucose_reports_patient_id_created_at", "patient_id", "created_at"),
    )

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    audience: Mapped[str] = mapped_column(String(8))  # patient (daily) | doctor (weekly)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    summary: Mapped[str] = mapped_column(Text)  # JSON headline metrics


class ReminderSent(Base):
    """A care-plan reminder queued for one local day (so every process sends it once)."""

    __tablename__ = "care_plan_reminders_sent"

    plan_id: Mapped[int] = mapped_column(BigId, ForeignKey("care_plans.id"), primary_key=True)
    item: Mapped[int] = mapped_column(Integer, primary_key=True)
    local_date: Mapped[date] = mapped_column(Date, primary_key=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime())
