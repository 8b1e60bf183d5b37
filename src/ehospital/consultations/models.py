"""Follow-up consultations (FHIR Encounter), their messages and attachments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class Status(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    TERMINATED = "terminated"


OPEN_STATUSES = frozenset({Status.REQUESTED, Status.ACCEPTED, Status.IN_PROGRESS})
CHATTING_STATUSES = frozenset({Status.ACCEPTED, Status.IN_PROGRESS})
EXPIRED_REASON = "no doctor accepted in time"
_OPEN_SQL = "status IN ('requested', 'accepted', 'in_progress')"


class Consultation(IdMixin, CreatedMixin, Base):
    """An online follow-up visit of one patient in a centre (or clinic), with one doctor."""

    __tablename__ = "consultations"
    __table_args__ = (
        Index("ix_consultations_doctor_id_status", "doctor_id", "status"),
        Index("ix_consultations_centre_id_status", "centre_id", "status"),
        # At most one open consultation per patient and centre, even for requests racing.
        Index(
            "uq_consultations_open_patient_centre",
            "patient_id",
            "centre_id",
            unique=True,
            postgresql_where=text(_OPEN_SQL),
            sqlite_where=text(_OPEN_SQL),
        ),
    )

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    centre_id: Mapped[int] = mapped_column(BigId, ForeignKey("centres.id"))
    clinic_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("clinics.id"))
    doctor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("doctors.id"))
    status: Mapped[str] = mapped_column(String(16))
    complaint: Mapped[str] = mapped_column(Text)
    prior_diagnosis: Mapped[str] = mapped_column(Text)
    prior_institution: Mapped[str | None] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_reason: Mapped[str | None] = mapped_column(Text)
    referral_to: Mapped[str | None] = mapped_column(String(200))
    diagnosis_code: Mapped[str | None] = mapped_column(String(16))
    diagnosis_text: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    # Highest message sequence number handed out; bumped atomically per message.
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The centre's first-response promise as a stored deadline (timers survive restarts), when
    # the doctor's first message of substance came, and when the sweep found the answer late.
    first_response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    late_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The close promise: an accepted consultation should end by then; the sweep marks it overdue.
    close_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The fee refunded in full: cancelled before any answer, or expired with no doctor.
    refund_cents: Mapped[int | None] = mapped_column(Integer)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refund_reason: Mapped[str | None] = mapped_column(String(32))


class Attachment(IdMixin, CreatedMixin, Base):
    """A stored file: prior-diagnosis evidence or an image sent in the chat."""

    __tablename__ = "attachments"

    # Null until the upload is attached to the consultation it was made for.
    consultation_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("consultations.id"), index=True)
    uploader_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "evidence" or "message"
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)


class Message(IdMixin, CreatedMixin, Base):
    """One chat message; `seq` orders the messages of a consultation without gaps."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("consultation_id", "seq"),)

    consultation_id: Mapped[int] = mapped_column(BigId, ForeignKey("consultations.id"))
    seq: Mapped[int] = mapped_column(Integer)
    sender_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    sender_role: Mapped[str] = mapped_column(String(32))  # a Role, or "system"
    kind: Mapped[str] = mapped_column(String(16))  # "text", "image", "event"
    body: Mapped[str] = mapped_column(Text, default="")
    attachment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("attachments.id"))
    # The sender's own id for the message (live chat): a client that resends after a lost
    # acknowledgement gets the stored message back instead of a copy.
    client_id: Mapped[str | None] = mapped_column(String(64))


Index(
    "uq_messages_client_id",
    Message.consultation_id,
    Message.sender_id,
    Message.client_id,
    unique=True,
    postgresql_where=text("client_id IS NOT NULL"),
    sqlite_where=text("client_id IS NOT NULL"),
)


class ReadMark(Base):
    """How far one participant has read a consultation's chat (read receipts)."""

    __tablename__ = "message_reads"

    consultation_id: Mapped[int] = mapped_column(BigId, ForeignKey("consultations.id"), primary_key=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    read_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Call(IdMixin, CreatedMixin, Base):
    """A video call inside a consultation: rung (created), connected, ended, and how long it lasted.

    The media flow browser to browser (WebRTC); only the signalling passes through the server.
    """

    __tablename__ = "consultation_calls"

    consultation_id: Mapped[int] = mapped_column(BigId, ForeignKey("consultations.id"), index=True)
    started_by: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
