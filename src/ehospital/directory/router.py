"""Organisations, centres, clinics and doctors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from ehospital.deps import CurrentActor, CurrentAdmin, SessionDep
from ehospital.directory.schemas import (
    CentreCreate,
    CentreRead,
    CentreUpdate,
    ClinicCreate,
    ClinicRead,
    ClinicUpdate,
    DoctorRead,
    OrganisationCreate,
    OrganisationRead,
    RosterSlotIn,
)
from ehospital.directory.service import DirectoryService
from ehospital.kit.schemas import MAX_DB_ID, IdPath, Input

router = APIRouter(prefix="/api/v1", tags=["directory"])


class VerifyIn(Input):
    verified: bool = True


@router.get("/organisations", response_model=list[OrganisationRead])
async def organisations(session: SessionDep) -> list[OrganisationRead]:
    """Hospitals and pharmacies."""
    return [OrganisationRead.model_validate(o) for o in await DirectoryService(session).organisations()]


@router.post("/organisations", response_model=OrganisationRead, status_code=status.HTTP_201_CREATED)
async def create_organisation(
    data: OrganisationCreate, actor: CurrentAdmin, session: SessionDep
) -> OrganisationRead:
    """Register a hospital or pharmacy (admin)."""
    return OrganisationRead.model_validate(await DirectoryService(session).create_organisation(actor, data))


@router.get("/centres", response_model=list[CentreRead])
async def centres(session: SessionDep) -> list[CentreRead]:
    """Specialised centres with their clinics."""
    return await DirectoryService(session).centres()


@router.post("/centres", response_model=CentreRead, status_code=status.HTTP_201_CREATED)
async def create_centre(data: CentreCreate, actor: CurrentAdmin, session: SessionDep) -> CentreRead:
    """Open a centre (admin)."""
    return await DirectoryService(session).create_centre(actor, data)


@router.get("/centres/{centre_id}", response_model=CentreRead)
async def centre(centre_id: IdPath, session: SessionDep) -> CentreRead:
    """One centre with its clinics."""
    return await DirectoryService(session).centre(centre_id)


@router.patch("/centres/{centre_id}", response_model=CentreRead)
async def update_centre(
    centre_id: IdPath, data: CentreUpdate, actor: CurrentAdmin, session: SessionDep
) -> CentreRead:
    """Rename, describe, open or close a centre (admin)."""
    return await DirectoryService(session).update_centre(actor, centre_id, data)


@router.post("/centres/{centre_id}/clinics", response_model=ClinicRead, status_code=status.HTTP_201_CREATED)
async def create_clinic(
    centre_id: IdPath, data: ClinicCreate, actor: CurrentAdmin, session: SessionDep
) -> ClinicRead:
    """Add a clinic to a centre (admin)."""
    return ClinicRead.model_validate(await DirectoryService(session).create_clinic(actor, centre_id, data))


@router.patch("/clinics/{clinic_id}", response_model=ClinicRead)
async def update_clinic(
    clinic_id: IdPath, data: ClinicUpdate, actor: CurrentAdmin, session: SessionDep
) -> ClinicRead:
    """Rename, open or close a clinic (admin)."""
    return ClinicRead.model_validate(await DirectoryService(session).update_clinic(actor, clinic_id, data))


@router.get("/doctors", response_model=list[DoctorRead])
async def doctors(
    session: SessionDep,
    centre_id: Annotated[int | None, Query(ge=1, le=MAX_DB_ID)] = None,
    clinic_id: Annotated[int | None, Query(ge=1, le=MAX_DB_ID)] = None,
) -> list[DoctorRead]:
    """Verified doctors, optionally of one centre or clinic, with their weekly roster."""
    return await DirectoryService(session).doctors(centre_id=centre_id, clinic_id=clinic_id)


@router.get("/admin/doctors", response_model=list[DoctorRead])
async def all_doctors(
    actor: CurrentAdmin, session: SessionDep, unverified: Annotated[bool, Query()] = False
) -> list[DoctorRead]:
    """Every doctor, or only those awaiting verification (admin)."""
    found = await DirectoryService(session).doctors(include_unverified=True)
    return [d for d in found if not d.verified] if unverified else found


@router.get("/doctors/{doctor_id}", response_model=DoctorRead)
async def doctor(doctor_id: IdPath, session: SessionDep) -> DoctorRead:
    """One verified doctor with the weekly roster."""
    return await DirectoryService(session).doctor(doctor_id)


@router.post("/doctors/{doctor_id}/verify", response_model=DoctorRead)
async def verify_doctor(
    doctor_id: IdPath, data: VerifyIn, actor: CurrentAdmin, session: SessionDep
) -> DoctorRead:
    """Confirm (or withdraw) a doctor's licence (admin)."""
    return await DirectoryService(session).verify_doctor(actor, doctor_id, verified=data.verified)


@router.put("/doctors/{doctor_id}/roster", response_model=DoctorRead)
async def set_roster(
    doctor_id: IdPath, slots: list[RosterSlotIn], actor: CurrentActor, session: SessionDep
) -> DoctorRead:
    """Replace the weekly roster (the doctor, their centre manager, or an admin)."""
    return await DirectoryService(session).set_roster(actor, doctor_id, slots)
