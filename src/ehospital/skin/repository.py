"""Every query of the skin domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.skin.tables import SkinAnalysis, SkinFollowUp, SkinPhoto, SkinReview


class SkinRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: SkinPhoto | SkinAnalysis | SkinReview | SkinFollowUp) -> None:
        self.session.add(obj)

    async def photo(self, photo_id: int) -> SkinPhoto | None:
        """A photo that has not been deleted."""
        photo = await self.session.get(SkinPhoto, photo_id)
        return photo if photo is not None and photo.deleted_at is None else None

    async def analysis_of(self, photo_id: int) -> SkinAnalysis | None:
        found: SkinAnalysis | None = await self.session.scalar(
            select(SkinAnalysis).where(SkinAnalysis.photo_id == photo_id)
        )
        return found

    async def reviews_of(self, photo_ids: Sequence[int]) -> dict[int, list[SkinReview]]:
        """Each photo's reviews, newest first."""
        out: dict[int, list[SkinReview]] = {}
        if not photo_ids:
            return out
        for review in await self.session.scalars(
            select(SkinReview)
            .where(SkinReview.photo_id.in_(photo_ids))
            .order_by(SkinReview.created_at.desc(), SkinReview.id.desc())
        ):
            out.setdefault(review.photo_id, []).append(review)
        return out

    async def newest_photos(self, patient_id: int, limit: int) -> list[tuple[SkinPhoto, SkinAnalysis | None]]:
        """The patient's latest photos (newest first) with their analyses."""
        rows = await self.session.execute(
            select(SkinPhoto, SkinAnalysis)
            .outerjoin(SkinAnalysis, SkinAnalysis.photo_id == SkinPhoto.id)
            .where(SkinPhoto.patient_id == patient_id, SkinPhoto.deleted_at.is_(None))
            .order_by(SkinPhoto.created_at.desc(), SkinPhoto.id.desc())
            .limit(limit)
        )
        return [(photo, analysis) for photo, analysis in rows.all()]

    async def last_photo_at(self, patient_id: int) -> datetime | None:
        found: datetime | None = await self.session.scalar(
            select(SkinPhoto.created_at)
            .where(SkinPhoto.patient_id == patient_id, SkinPhoto.deleted_at.is_(None))
            .order_by(SkinPhoto.created_at.desc())
            .limit(1)
        )
        return found

    async def followup_of(self, patient_id: int) -> SkinFollowUp | None:
        found: SkinFollowUp | None = await self.session.scalar(
            select(SkinFollowUp).where(SkinFollowUp.patient_id == patient_id)
        )
        return found

    async def due_followups(self, now: datetime, limit: int = 500) -> list[SkinFollowUp]:
        """Active schedules that are due, locked (SKIP LOCKED: processes share the work)."""
        rows = await self.session.scalars(
            select(SkinFollowUp)
            .where(SkinFollowUp.active.is_(True), SkinFollowUp.next_due_at <= now)
            .order_by(SkinFollowUp.next_due_at)
            .with_for_update(skip_locked=True)
            .limit(limit)
        )
        return list(rows)

    async def consented(self, since: datetime | None = None) -> list[tuple[SkinPhoto, SkinAnalysis]]:
        """Photos whose patients consented to model training, with their analyses, oldest first."""
        query = (
            select(SkinPhoto, SkinAnalysis)
            .join(SkinAnalysis, SkinAnalysis.photo_id == SkinPhoto.id)
            .where(SkinPhoto.training_consent_at.is_not(None), SkinPhoto.deleted_at.is_(None))
            .order_by(SkinPhoto.id)
        )
        if since is not None:
            query = query.where(SkinPhoto.created_at >= since)
        rows = await self.session.execute(query)
        return [(photo, analysis) for photo, analysis in rows.all()]
