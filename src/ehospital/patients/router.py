"""Family members of a patient account."""

from __future__ import annotations

from fastapi import APIRouter, status

from ehospital.deps import CurrentActor, SessionDep
from ehospital.kit.schemas import IdPath
from ehospital.patients.schemas import PatientCreate, PatientRead
from ehospital.patients.service import PatientService, to_read

router = APIRouter(prefix="/api/v1/patients", tags=["patients"])


@router.get("", response_model=list[PatientRead])
async def list_family(actor: CurrentActor, session: SessionDep) -> list[PatientRead]:
    """The family members of your account."""
    return [to_read(p) for p in await PatientService(session).family(actor)]


@router.post("", response_model=PatientRead, status_code=status.HTTP_201_CREATED)
async def add_member(data: PatientCreate, actor: CurrentActor, session: SessionDep) -> PatientRead:
    """Add a real-name family member (resident ID number checked)."""
    return to_read(await PatientService(session).add(actor, data))


@router.get("/{patient_id}", response_model=PatientRead)
async def get_patient(patient_id: IdPath, actor: CurrentActor, session: SessionDep) -> PatientRead:
    """One patient: a member of your family, or a patient assigned to you as doctor."""
    return to_read(await PatientService(session).get(actor, patient_id))


@router.post("/{patient_id}/archive", response_model=PatientRead)
async def archive_member(patient_id: IdPath, actor: CurrentActor, session: SessionDep) -> PatientRead:
    """Remove a member from your family list; their records are kept."""
    return to_read(await PatientService(session).archive(actor, patient_id))
