"""The vetting engine over HTTP: vet a prescription, browse the knowledge graph."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ehospital.auth.models import Role
from ehospital.deps import CurrentActor
from ehospital.kit.errors import Forbidden, NotFound, ServiceUnavailable
from ehospital.vetting.engine import vet
from ehospital.vetting.knowledge import Knowledge, KnowledgeUnavailable, knowledge
from ehospital.vetting.schemas import VetRequest

router = APIRouter(prefix="/api/v1", tags=["vetting"])

_CLINICIANS = (Role.DOCTOR, Role.PHARMACIST, Role.ADMIN)


def _knowledge() -> Knowledge:
    try:
        return knowledge()
    except KnowledgeUnavailable as exc:
        raise ServiceUnavailable(str(exc), code="knowledge_unavailable") from exc


@router.post("/vet")
async def vet_prescription(data: VetRequest, actor: CurrentActor) -> dict[str, Any]:
    """Vet a prescription for a patient (doctors, pharmacists): the verdict (`block`, `review`
    or `pass`), the findings with their sources, the names not recognised, and which checks ran.
    The same JSON as `ehospital vet`."""
    if actor.role not in _CLINICIANS:
        raise Forbidden("only doctors and pharmacists vet prescriptions", code="not_a_clinician")
    kb = _knowledge()
    return vet([i.to_engine() for i in data.items], data.patient.to_engine(), kb).as_dict()


@router.get("/knowledge/drugs/{name}")
async def knowledge_drug(name: Annotated[str, Path(min_length=1, max_length=200)]) -> dict[str, Any]:
    """A drug as the knowledge graph knows it, by any of its names (English, US/UK, French,
    Chinese, ATC, RxNorm, formulary code): its ingredients with their classes, interactions and
    sources."""
    found = _knowledge().describe(name)
    if found is None:
        raise NotFound("this name is not in the knowledge base", code="drug_not_known", name=name)
    return found
