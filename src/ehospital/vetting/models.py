"""CDS Hooks cards the service issued, and the feedback clients sent about them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class CdsCard(CreatedMixin, Base):
    """A card as it was answered (so feedback can name it)."""

    __tablename__ = "cds_cards"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(80))
    hook: Mapped[str] = mapped_column(String(40))
    hook_instance: Mapped[str] = mapped_column(String(80), index=True)
    account_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    client: Mapped[str | None] = mapped_column(String(200))  # the trusted EHR's iss, if it called
    indicator: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(String(140))
    source: Mapped[str] = mapped_column(Text)


class CdsFeedback(IdMixin, CreatedMixin, Base):
    """What the clinician did with a card: accepted (with the suggestions taken) or overridden
    (with the reason)."""

    __tablename__ = "cds_feedback"

    card_uuid: Mapped[str] = mapped_column(String(36), ForeignKey("cds_cards.uuid"), index=True)
    account_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    client: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # accepted | overridden
    accepted_suggestions: Mapped[str] = mapped_column(Text, default="")  # JSON list of uuids
    override_code: Mapped[str | None] = mapped_column(String(64))
    override_display: Mapped[str | None] = mapped_column(String(200))
    user_comment: Mapped[str | None] = mapped_column(Text)
    outcome_at: Mapped[datetime] = mapped_column(UTCDateTime())
