"""Symptom triage: which centre and clinic to ask."""

from __future__ import annotations

from fastapi import APIRouter

from ehospital.deps import CurrentActor, SessionDep
from ehospital.triage.schemas import TriageIn, TriageRead
from ehospital.triage.service import TriageService

router = APIRouter(prefix="/api/v1", tags=["triage"])


@router.post("/triage", response_model=TriageRead)
async def triage(data: TriageIn, actor: CurrentActor, session: SessionDep) -> TriageRead:
    """Suggest a centre and clinic for symptoms in Chinese or English (a suggestion, not a diagnosis)."""
    return await TriageService(session).triage(actor, data)
