"""Rules of the directory: who may change it, and doctor verification."""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.auth.models import Account, Role
from ehospital.auth.passwords import hash_password
from ehospital.auth.repository import AuthRepository
from ehospital.auth.service import evict_now_and_after_commit, principals
from ehospital.directory.models import Centre, Clinic, Doctor, Organisation, RosterSlot
from ehospital.directory.repository import DirectoryRepository
from ehospital.directory.schemas import (
    CentreCreate,
    CentreRead,
    CentreUpdate,
    ClinicCreate,
    ClinicRead,
    ClinicUpdate,
    DoctorRead,
    DoctorRegister,
    OrganisationCreate,
    RosterSlotIn,
    RosterSlotRead,
)
from ehospital.kit.context import Actor
from ehospital.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from ehospital.kit.models import utcnow


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("only an administrator may do this", code="admin_only")


class DirectoryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = DirectoryRepository(session)

    # --- reading ---------------------------------------------------------------------------
    async def organisations(self) -> Sequence[Organisation]:
        return await self.repo.organisations()

    async def centres(self, *, include_inactive: bool = False) -> list[CentreRead]:
        """Centres with their clinics."""
        centres = await self.repo.centres(include_inactive=include_inactive)
        clinics = await self.repo.clinics([c.id for c in centres], include_inactive=include_inactive)
        by_centre: dict[int, list[ClinicRead]] = defaultdict(list)
        for clinic in clinics:
            by_centre[clinic.centre_id].append(ClinicRead.model_validate(clinic))
        return [CentreRead.model_validate(c).model_copy(update={"clinics": by_centre[c.id]}) for c in centres]

    async def centre(self, centre_id: int) -> CentreRead:
        centre = await self.repo.centre(centre_id)
        if centre is None:
            raise NotFound("no such centre", code="centre_not_found")
        clinics = await self.repo.clinics([centre.id])
        return CentreRead.model_validate(centre).model_copy(
            update={"clinics": [ClinicRead.model_validate(c) for c in clinics]}
        )

    async def doctors(
        self,
        *,
        centre_id: int | None = None,
        clinic_id: int | None = None,
        include_unverified: bool = False,
    ) -> list[DoctorRead]:
        doctors = await self.repo.doctors(
            centre_id=centre_id, clinic_id=clinic_id, verified_only=not include_unverified
        )
        return await self._with_roster(doctors)

    async def doctor(self, doctor_id: int, *, include_unverified: bool = False) -> DoctorRead:
        doctor = await self.repo.doctor(doctor_id)
        if doctor is None or (doctor.verified_at is None and not include_unverified):
            raise NotFound("no such doctor", code="doctor_not_found")
        return (await self._with_roster([doctor]))[0]

    async def _with_roster(self, doctors: Sequence[Doctor]) -> list[DoctorRead]:
        slots = await self.repo.roster([d.id for d in doctors])
        by_doctor: dict[int, list[RosterSlotRead]] = defaultdict(list)
        for slot in slots:
            by_doctor[slot.doctor_id].append(RosterSlotRead.model_validate(slot))
        return [
            DoctorRead.model_validate(
                {
                    **_doctor_fields(d),
                    "verified": d.verified_at is not None,
                    "roster": by_doctor[d.id],
                }
            )
            for d in doctors
        ]

    # --- administration --------------------------------------------------------------------
    async def create_organisation(self, actor: Actor, data: OrganisationCreate) -> Organisation:
        _require_admin(actor)
        if data.parent_id is not None and await self.repo.organisation(data.parent_id) is None:
            raise Unprocessable("the parent organisation does not exist", code="organisation_not_found")
        org = Organisation(**data.model_dump(mode="json"))
        self.repo.add(org)
        await self.session.flush()
        record(self.session, actor, "create", "organisation", org.id)
        return org

    async def create_centre(self, actor: Actor, data: CentreCreate) -> CentreRead:
        _require_admin(actor)
        org = await self.repo.organisation(data.organisation_id)
        if org is None or org.kind != "hospital":
            raise Unprocessable("centres belong to a hospital organisation", code="organisation_not_found")
        if await self.repo.centre_by_code(data.code) is not None:
            raise Conflict("a centre with this code exists", code="duplicate_code")
        centre = Centre(**data.model_dump())
        self.repo.add(centre)
        await self.session.flush()
        record(self.session, actor, "create", "centre", centre.id)
        return await self.centre(centre.id)

    async def update_centre(self, actor: Actor, centre_id: int, data: CentreUpdate) -> CentreRead:
        _require_admin(actor)
        centre = await self.repo.centre(centre_id)
        if centre is None:
            raise NotFound("no such centre", code="centre_not_found")
        for key, value in data.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(centre, key, value)
        record(self.session, actor, "update", "centre", centre.id)
        return await self.centre(centre.id)

    async def create_clinic(self, actor: Actor, centre_id: int, data: ClinicCreate) -> Clinic:
        _require_admin(actor)
        if await self.repo.centre(centre_id) is None:
            raise NotFound("no such centre", code="centre_not_found")
        if any(c.code == data.code for c in await self.repo.clinics([centre_id], include_inactive=True)):
            raise Conflict("this centre already has a clinic with this code", code="duplicate_code")
        clinic = Clinic(centre_id=centre_id, **data.model_dump())
        self.repo.add(clinic)
        await self.session.flush()
        record(self.session, actor, "create", "clinic", clinic.id)
        return clinic

    async def update_clinic(self, actor: Actor, clinic_id: int, data: ClinicUpdate) -> Clinic:
        _require_admin(actor)
        clinic = await self.repo.clinic(clinic_id)
        if clinic is None:
            raise NotFound("no such clinic", code="clinic_not_found")
        for key, value in data.model_dump(exclude_unset=True).items():
            if value is not None:
                setattr(clinic, key, value)
        record(self.session, actor, "update", "clinic", clinic.id)
        return clinic

    async def register_doctor(self, data: DoctorRegister, actor: Actor) -> Doctor:
        """Create a doctor account and profile, unverified."""
        centre = await self.repo.centre(data.centre_id)
        if centre is None or not centre.is_active:
            raise Unprocessable("no such centre", code="centre_not_found")
        if data.clinic_id is not None:
            clinic = await self.repo.clinic(data.clinic_id)
            if clinic is None or clinic.centre_id != centre.id:
                raise Unprocessable("the clinic is not part of the centre", code="clinic_not_in_centre")
        auth = AuthRepository(self.session)
        if await auth.account_by_username(data.username) is not None:
            raise Conflict("this username is taken", code="username_taken")
        if await self.repo.doctor_by_licence(data.licence_number) is not None:
            raise Conflict("a doctor with this licence number exists", code="duplicate_licence")
        account = Account(
            username=data.username,
            password_hash=await asyncio.to_thread(hash_password, data.password),
            role=str(Role.DOCTOR),
            display_name=data.name,
            locale="zh",
        )
        auth.add(account)
        await self.session.flush()
        doctor = Doctor(
            account_id=account.id,
            **data.model_dump(exclude={"username", "password"}, mode="json"),
        )
        self.repo.add(doctor)
        await self.session.flush()
        record(self.session, actor, "register", "doctor", doctor.id)
        return doctor

    async def verify_doctor(self, actor: Actor, doctor_id: int, *, verified: bool = True) -> DoctorRead:
        """An admin confirms (or withdraws) a doctor's licence."""
        _require_admin(actor)
        doctor = await self.repo.doctor(doctor_id)
        if doctor is None:
            raise NotFound("no such doctor", code="doctor_not_found")
        account_id = doctor.account_id  # its cached sign-in still says otherwise
        evict_now_and_after_commit(self.session, lambda: principals.evict_account(account_id))
        doctor.verified_at = utcnow() if verified else None
        doctor.verified_by = actor.account_id if verified else None
        record(self.session, actor, "verify" if verified else "unverify", "doctor", doctor.id)
        return await self.doctor(doctor.id, include_unverified=True)

    async def set_roster(self, actor: Actor, doctor_id: int, slots: list[RosterSlotIn]) -> DoctorRead:
        """Replace a doctor's weekly roster (the doctor, their centre's manager, or an admin)."""
        doctor = await self.repo.doctor(doctor_id)
        if doctor is None:
            raise NotFound("no such doctor", code="doctor_not_found")
        allowed = (
            actor.is_admin
            or actor.doctor_id == doctor.id
            or (actor.role is Role.CENTRE_MANAGER and actor.centre_id == doctor.centre_id)
        )
        if not allowed:
            raise Forbidden("you may not change this roster", code="roster_forbidden")
        ordered = sorted(slots, key=lambda s: (s.weekday, s.starts))
        for a, b in itertools.pairwise(ordered):
            if a.weekday == b.weekday and b.starts < a.ends:
                raise Unprocessable("roster slots overlap", code="roster_overlap", weekday=a.weekday)
        await self.repo.replace_roster(
            doctor.id, [RosterSlot(doctor_id=doctor.id, **s.model_dump()) for s in ordered]
        )
        record(self.session, actor, "update", "roster", doctor.id)
        return await self.doctor(doctor.id, include_unverified=True)


def _doctor_fields(d: Doctor) -> dict[str, object]:
    return {
        "id": d.id,
        "name": d.name,
        "title": d.title,
        "institution": d.institution,
        "licence_number": d.licence_number,
        "centre_id": d.centre_id,
        "clinic_id": d.clinic_id,
        "price_cents": d.price_cents,
        "bio_en": d.bio_en,
        "bio_zh": d.bio_zh,
        "verified_at": d.verified_at,
    }
