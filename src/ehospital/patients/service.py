"""Rules for real-name family members."""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.kit import resident_id
from ehospital.kit.context import Actor
from ehospital.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from ehospital.kit.models import utcnow
from ehospital.patients.models import Patient, Relationship
from ehospital.patients.repository import PatientRepository
from ehospital.patients.schemas import PatientCreate, PatientRead

MAX_FAMILY = 12


def age_on(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def to_read(patient: Patient) -> PatientRead:
    return PatientRead(
        id=patient.id,
        name=patient.name,
        id_number_masked=resident_id.mask(patient.id_number),
        sex=patient.sex,
        birth_date=patient.birth_date,
        age=age_on(patient.birth_date, date.today()),
        relationship=patient.relationship,
        phone=patient.phone,
        created_at=patient.created_at,
    )


class PatientService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = PatientRepository(session)

    async def family(self, actor: Actor) -> list[Patient]:
        """The family members of a patient account."""
        if not actor.is_patient:
            raise Forbidden("only patient accounts have a family", code="not_a_patient_account")
        members = await self.repo.family(actor.account_id)
        record(self.session, actor, "list", "patient", None)
        return members

    async def get(self, actor: Actor, patient_id: int) -> Patient:
        """One patient the actor may see (404 otherwise, whether or not it exists)."""
        patient = await self.repo.visible(actor, patient_id)
        if patient is None:
            raise NotFound("no such patient", code="patient_not_found")
        record(self.session, actor, "read", "patient", patient.id, patient_id=patient.id)
        return patient

    async def add(self, actor: Actor, data: PatientCreate) -> Patient:
        """Register a real-name family member after checking the resident ID number."""
        if not actor.is_patient:
            raise Forbidden("only patient accounts add family members", code="not_a_patient_account")
        try:
            rid = resident_id.parse(data.id_number)
        except resident_id.InvalidResidentId as exc:
            raise Unprocessable(str(exc), code="invalid_id_number", reason=exc.reason) from exc
        mismatches = {}
        if rid.birth_date != data.birth_date:
            mismatches["birth_date"] = rid.birth_date.isoformat()
        if rid.sex != data.sex:
            mismatches["sex"] = rid.sex
        if mismatches:
            raise Unprocessable(
                "the birth date or sex entered does not match the resident ID number",
                code="id_number_mismatch",
                derived=mismatches,
            )
        family = await self.repo.family(actor.account_id)
        if len(family) >= MAX_FAMILY:
            raise Conflict(f"an account holds at most {MAX_FAMILY} family members", code="family_full")
        if data.relationship is Relationship.SELF and any(
            p.relationship == Relationship.SELF for p in family
        ):
            raise Conflict("this account already has its holder ('self')", code="self_exists")
        if await self.repo.by_id_number(actor.account_id, rid.number) is not None:
            raise Conflict("this person is already in the family", code="duplicate_patient")
        patient = Patient(
            account_id=actor.account_id,
            name=data.name,
            id_number=rid.number,
            sex=rid.sex,
            birth_date=rid.birth_date,
            relationship=str(data.relationship),
            phone=data.phone,
        )
        self.repo.add(patient)
        await self.session.flush()
        record(self.session, actor, "create", "patient", patient.id, patient_id=patient.id)
        return patient

    async def archive(self, actor: Actor, patient_id: int) -> Patient:
        """Remove a member from the family list; their records are kept."""
        patient = await self.get(actor, patient_id)
        if not actor.is_patient:
            raise NotFound("no such patient", code="patient_not_found")
        patient.archived_at = utcnow()
        record(self.session, actor, "archive", "patient", patient.id, patient_id=patient.id)
        return patient
