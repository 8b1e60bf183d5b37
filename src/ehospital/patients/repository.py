"""Every query of patients, filtered by who is asking."""

from __future__ import annotations

from sqlalchemy import Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.consultations.models import Consultation
from ehospital.kit.context import Actor
from ehospital.kit.models import one_or_none
from ehospital.patients.models import Patient


def visible_patients(actor: Actor) -> Select[tuple[Patient]]:
    """Patients the actor may see: their own family, or the patients assigned to them as doctor."""
    query = select(Patient)
    if actor.is_patient:
        return query.where(Patient.account_id == actor.account_id)
    if actor.is_practising_doctor:
        return query.where(
            exists().where(Consultation.patient_id == Patient.id, Consultation.doctor_id == actor.doctor_id)
        )
    return query.where(Patient.id.is_(None))  # nobody else sees patient records


class PatientRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def family(self, account_id: int) -> list[Patient]:
        rows = await self.session.scalars(
            select(Patient)
            .where(Patient.account_id == account_id, Patient.archived_at.is_(None))
            .order_by(Patient.id)
        )
        return list(rows)

    async def visible(self, actor: Actor, patient_id: int) -> Patient | None:
        return await one_or_none(self.session, visible_patients(actor).where(Patient.id == patient_id))

    async def by_id_number(self, account_id: int, id_number: str) -> Patient | None:
        return await one_or_none(
            self.session,
            select(Patient).where(Patient.account_id == account_id, Patient.id_number == id_number),
        )

    def add(self, patient: Patient) -> None:
        self.session.add(patient)
