"""Every query of the formulary and prescriptions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.kit.models import BigId, one_or_none
from ehospital.prescriptions.models import (
    DoctorKey,
    Drug,
    Finding,
    Prescription,
    PrescriptionItem,
    RxEvent,
    RxStatus,
)

# The statements every prescription step runs, built once (statement construction showed high in
# the server's profile, see docs/PERFORMANCE.md).
_ITEMS = (
    select(PrescriptionItem)
    .where(PrescriptionItem.prescription_id == bindparam("prescription_id", type_=BigId))
    .order_by(PrescriptionItem.position)
)
_DRUGS_BY_ID = select(Drug).where(Drug.id.in_(bindparam("ids", expanding=True, type_=BigId)))
_DRUGS_BY_CODE = select(Drug).where(Drug.code.in_(bindparam("codes", expanding=True)))
_FINDINGS = (
    select(Finding)
    .where(Finding.prescription_id == bindparam("prescription_id", type_=BigId))
    .order_by(Finding.id)
)
_KEY = select(DoctorKey).where(
    DoctorKey.doctor_id == bindparam("doctor_id", type_=BigId),
    DoctorKey.fingerprint == bindparam("fingerprint"),
)


class PrescriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Drug | DoctorKey | Prescription | PrescriptionItem | Finding | RxEvent) -> None:
        self.session.add(obj)

    async def drugs_by_code(self, codes: Sequence[str]) -> dict[str, Drug]:
        rows = await self.session.scalars(_DRUGS_BY_CODE, {"codes": list(codes)})
        return {d.code: d for d in rows}

    async def drug_codes(self) -> set[str]:
        return set(await self.session.scalars(select(Drug.code)))

    async def drugs(self, ids: Sequence[int]) -> dict[int, Drug]:
        return {d.id: d for d in await self.session.scalars(_DRUGS_BY_ID, {"ids": list(ids)})}

    async def search(self, text: str, limit: int) -> Sequence[Drug]:
        like = f"%{text.lower()}%"
        query = (
            select(Drug)
            .where(Drug.retired_at.is_(None))
            .where(
                Drug.generic_en.ilike(like) | Drug.generic_zh.like(f"%{text}%") | (Drug.atc == text.upper())
            )
            .order_by(Drug.generic_en, Drug.strength)
            .limit(limit)
        )
        return (await self.session.scalars(query)).all()

    async def prescription(self, prescription_id: int) -> Prescription | None:
        return await self.session.get(Prescription, prescription_id)

    async def items(self, prescription_id: int) -> Sequence[PrescriptionItem]:
        return (await self.session.scalars(_ITEMS, {"prescription_id": prescription_id})).all()

    async def replace_items(self, prescription_id: int, items: Sequence[PrescriptionItem]) -> None:
        for old in await self.items(prescription_id):
            await self.session.delete(old)
        await self.session.flush()
        self.session.add_all(items)
        await self.session.flush()

    async def key_of(self, doctor_id: int, fingerprint: str) -> DoctorKey | None:
        found = await self.session.scalars(_KEY, {"doctor_id": doctor_id, "fingerprint": fingerprint})
        return found.one_or_none()

    async def findings(self, prescription_id: int) -> Sequence[Finding]:
        return (await self.session.scalars(_FINDINGS, {"prescription_id": prescription_id})).all()

    async def events(self, prescription_id: int) -> Sequence[RxEvent]:
        return (
            await self.session.scalars(
                select(RxEvent).where(RxEvent.prescription_id == prescription_id).order_by(RxEvent.id)
            )
        ).all()

    async def review_queue(self, pharmacy_id: int, limit: int) -> Sequence[Prescription]:
        """Waiting for this pharmacy's pharmacist: most severe findings first, then oldest."""
        return (
            await self.session.scalars(
                select(Prescription)
                .where(Prescription.pharmacy_id == pharmacy_id, Prescription.status == RxStatus.AUTO_CHECKED)
                .order_by(Prescription.severity_rank.desc(), Prescription.signed_at, Prescription.id)
                .limit(limit)
            )
        ).all()

    async def for_update(self, prescription_id: int) -> Prescription | None:
        """The prescription's row, locked: two pharmacists (or a pharmacist and the doctor) cannot
        move it at the same moment."""
        query = select(Prescription).where(Prescription.id == prescription_id).with_for_update()
        return await one_or_none(self.session, query.execution_options(populate_existing=True))

    async def for_review(self, prescription_id: int) -> tuple[Prescription, int] | None:
        """The prescription's row, locked (as `for_update`), with the account of its
        consultation (whose order an approval opens)."""
        from ehospital.consultations.models import Consultation

        query = (
            select(Prescription, Consultation.account_id)
            .join(Consultation, Consultation.id == Prescription.consultation_id)
            .where(Prescription.id == prescription_id)
            .with_for_update(of=Prescription)
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(query)).first()
        return None if row is None else (row[0], row[1])

    async def due_to_expire(self, now: datetime) -> Sequence[Prescription]:
        open_states = [RxStatus.AUTO_CHECKED, RxStatus.RETURNED, RxStatus.APPROVED]
        return (
            await self.session.scalars(
                select(Prescription).where(
                    Prescription.status.in_(open_states), Prescription.expires_at <= now
                )
            )
        ).all()

    async def versions(self, lineage_id: int) -> Sequence[Prescription]:
        return (
            await self.session.scalars(
                select(Prescription)
                .where(Prescription.lineage_id == lineage_id)
                .order_by(Prescription.version)
            )
        ).all()

    async def story(self, lineage_id: int) -> Sequence[tuple[RxEvent, str | None]]:
        """Every event of every version of a prescription, with the actor's username."""
        from ehospital.auth.models import Account

        rows = await self.session.execute(
            select(RxEvent, Account.username)
            .join(Prescription, Prescription.id == RxEvent.prescription_id)
            .outerjoin(Account, Account.id == RxEvent.actor_id)
            .where(Prescription.lineage_id == lineage_id)
            .order_by(RxEvent.at, RxEvent.id)
        )
        return [(r[0], r[1]) for r in rows]

    async def of_consultation(self, consultation_id: int, *, include_drafts: bool) -> Sequence[Prescription]:
        query = select(Prescription).where(Prescription.consultation_id == consultation_id)
        if not include_drafts:
            query = query.where(Prescription.status != RxStatus.DRAFT)
        return (await self.session.scalars(query.order_by(Prescription.id))).all()

    async def signed_visible(self, visible: ColumnElement[bool], limit: int) -> Sequence[Prescription]:
        """Signed prescriptions of the consultations matching `visible` (a visibility clause)."""
        from ehospital.consultations.models import Consultation

        query = (
            select(Prescription)
            .join(Consultation, Consultation.id == Prescription.consultation_id)
            .where(visible, Prescription.status != RxStatus.DRAFT)
            .order_by(Prescription.id.desc())
            .limit(limit)
        )
        return (await self.session.scalars(query)).all()
