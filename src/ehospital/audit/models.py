"""The append-only audit trail; rows are chained by SHA-256 once sealed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, IdMixin, UTCDateTime


class AuditEvent(IdMixin, Base):
    """Who did what to which record, when, from where.

    Requests insert rows unchained (so writers never queue behind one another); the sealer
    gives them consecutive `seq` numbers and the hash chain, in one place at a time.
    """

    __tablename__ = "audit_events"
    # Only the rows the sealer has still to chain (it looks for seq IS NULL, oldest first).
    __table_args__ = (
        Index(
            "ix_audit_events_unsealed",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
    )

    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48))
    resource_type: Mapped[str] = mapped_column(String(48))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[int | None] = mapped_column(BigId, index=True)
    address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(48), default="ok")
    seq: Mapped[int | None] = mapped_column(Integer, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
