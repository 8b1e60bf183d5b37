"""Every query of the directory."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.directory.models import Centre, Clinic, Doctor, Organisation, Pharmacist, RosterSlot
from ehospital.kit.models import one_or_none


class DirectoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Organisation | Centre | Clinic | Doctor | RosterSlot | Pharmacist) -> None:
        self.session.add(obj)

    async def organisations(self) -> Sequence[Organisation]:
        return (await self.session.scalars(select(Organisation).order_by(Organisation.id))).all()

    async def organisation(self, organisation_id: int) -> Organisation | None:
        return await self.session.get(Organisation, organisation_id)

    async def centres(self, *, include_inactive: bool = False) -> Sequence[Centre]:
        query = select(Centre).order_by(Centre.id)
        if not include_inactive:
            query = query.where(Centre.is_active.is_(True))
        return (await self.session.scalars(query)).all()

    async def centre(self, centre_id: int) -> Centre | None:
        return await self.session.get(Centre, centre_id)

    async def centre_by_code(self, code: str) -> Centre | None:
        return await one_or_none(self.session, select(Centre).where(Centre.code == code))

    async def clinics(self, centre_ids: Sequence[int], *, include_inactive: bool = False) -> Sequence[Clinic]:
        query = select(Clinic).where(Clinic.centre_id.in_(centre_ids)).order_by(Clinic.id)
        if not include_inactive:
            query = query.where(Clinic.is_active.is_(True))
        return (await self.session.scalars(query)).all()

    async def clinic(self, clinic_id: int) -> Clinic | None:
        return await self.session.get(Clinic, clinic_id)

    async def doctors(
        self, *, centre_id: int | None, clinic_id: int | None, verified_only: bool
    ) -> Sequence[Doctor]:
        query = select(Doctor).order_by(Doctor.id)
        if centre_id is not None:
            query = query.where(Doctor.centre_id == centre_id)
        if clinic_id is not None:
            query = query.where(Doctor.clinic_id == clinic_id)
        if verified_only:
            query = query.where(Doctor.verified_at.is_not(None))
        return (await self.session.scalars(query)).all()

    async def lowest_price(self, centre_id: int) -> int:
        """What a queue consultation costs: the lowest price of the centre's verified doctors."""
        price = await self.session.scalar(
            select(func.min(Doctor.price_cents)).where(
                Doctor.centre_id == centre_id, Doctor.verified_at.is_not(None)
            )
        )
        return int(price or 0)

    async def doctor(self, doctor_id: int) -> Doctor | None:
        return await self.session.get(Doctor, doctor_id)

    async def doctor_for_update(self, doctor_id: int) -> Doctor | None:
        """The doctor's row, locked until the transaction ends (PostgreSQL; SQLite locks it all)."""
        return await one_or_none(
            self.session,
            select(Doctor)
            .where(Doctor.id == doctor_id)
            .with_for_update()
            .execution_options(populate_existing=True),
        )

    async def doctor_by_licence(self, licence_number: str) -> Doctor | None:
        return await one_or_none(self.session, select(Doctor).where(Doctor.licence_number == licence_number))

    async def roster(self, doctor_ids: Sequence[int]) -> Sequence[RosterSlot]:
        return (
            await self.session.scalars(
                select(RosterSlot)
                .where(RosterSlot.doctor_id.in_(doctor_ids))
                .order_by(RosterSlot.weekday, RosterSlot.starts)
            )
        ).all()

    async def replace_roster(self, doctor_id: int, slots: Sequence[RosterSlot]) -> None:
        await self.session.execute(delete(RosterSlot).where(RosterSlot.doctor_id == doctor_id))
        self.session.add_all(slots)
        await self.session.flush()
