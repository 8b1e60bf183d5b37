"""Real-name patients: the family members one patient account manages."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class Relationship(StrEnum):
    SELF = "self"
    SPOUSE = "spouse"
    CHILD = "child"
    PARENT = "parent"
    GRANDPARENT = "grandparent"
    OTHER = "other"


class Patient(IdMixin, CreatedMixin, Base):
    """A real-name person cared for (FHIR Patient), owned by one account."""

    __tablename__ = "patients"
    __table_args__ = (
        UniqueConstraint("account_id", "id_number"),
        # One account holder ("self") per account, even for requests racing.
        Index(
            "uq_patients_self_per_account",
            "account_id",
            unique=True,
            postgresql_where=text("relationship = 'self'"),
            sqlite_where=text("relationship = 'self'"),
        ),
    )

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    id_number: Mapped[str] = mapped_column(String(18))
    sex: Mapped[str] = mapped_column(String(8))
    birth_date: Mapped[date] = mapped_column(Date)
    relationship: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str | None] = mapped_column(String(32))
    # Clinical records are never deleted; a member removed from the family is archived.
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
