"""The vetting engine over HTTP: vet a prescription, browse the knowledge graph."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from ehospital.audit.service import record
from ehospital.auth.models import Role
from ehospital.deps import (
    CurrentActor,
    RuntimeDep,
    SessionDep,
    client_address,
    get_actor,
    oauth2_scheme,
    request_id,
)
from ehospital.kit.context import Actor
from ehospital.kit.errors import Forbidden, NotFound, ServiceUnavailable, Unauthenticated, Unprocessable
from ehospital.vetting.cds import CdsRequestError, cards_for, discovery
from ehospital.vetting.cds_auth import CdsAuthError, CdsClient, JtiCache, load_clients, looks_like_jwt, verify
from ehospital.vetting.engine import vet
from ehospital.vetting.knowledge import Knowledge, KnowledgeUnavailable, knowledge
from ehospital.vetting.models import CdsCard, CdsFeedback
from ehospital.vetting.schemas import VetRequest

router = APIRouter(tags=["vetting"])

_CLINICIANS = (Role.DOCTOR, Role.PHARMACIST, Role.ADMIN)


def _require_clinician(actor: Actor, doing: str) -> None:
    if actor.role not in _CLINICIANS:
        raise Forbidden(f"only doctors and pharmacists {doing}", code="not_a_clinician")


def _knowledge() -> Knowledge:
    try:
        return knowledge()
    except KnowledgeUnavailable as exc:
        raise ServiceUnavailable(str(exc), code="knowledge_unavailable") from exc


@router.post("/api/v1/vet")
async def vet_prescription(data: VetRequest, actor: CurrentActor) -> dict[str, Any]:
    """Vet a prescription for a patient (doctors, pharmacists): the verdict (`block`, `review`
    or `pass`), the findings with their sources, the names not recognised, and which checks ran.
    The same JSON as `ehospital vet`."""
    _require_clinician(actor, "vet prescriptions")
    kb = _knowledge()
    return vet([i.to_engine() for i in data.items], data.patient.to_engine(), kb).as_dict()


@router.get("/api/v1/knowledge/drugs/{name}")
async def knowledge_drug(name: Annotated[str, Path(min_length=1, max_length=200)]) -> dict[str, Any]:
    """A drug as the knowledge graph knows it, by any of its names (English, US/UK, French,
    Chinese, ATC, RxNorm, formulary code): its ingredients with their classes, interactions and
    sources."""
    found = _knowledge().describe(name)
    if found is None:
        raise NotFound("this name is not in the knowledge base", code="drug_not_known", name=name)
    return found


# --- CDS Hooks 2.0 -----------------------------------------------------------------------------


class CdsHookRequest(BaseModel):
    """A CDS Hooks call; fields the spec adds later are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    hook: str = Field(max_length=40)
    hookInstance: str = Field(min_length=1, max_length=80)
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None


class OverrideReason(BaseModel):
    model_config = ConfigDict(extra="ignore")

    reason: dict[str, Any] | None = None
    userComment: str | None = Field(default=None, max_length=2000)


class FeedbackEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    card: str = Field(min_length=1, max_length=36)
    outcome: Literal["accepted", "overridden"]
    outcomeTimestamp: datetime
    acceptedSuggestions: list[dict[str, Any]] = Field(default_factory=list, max_length=20)
    overrideReason: OverrideReason | None = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    feedback: list[FeedbackEntry] = Field(min_length=1, max_length=100)


@dataclass(frozen=True)
class CdsCaller:
    """Who called the CDS service: an ehospital clinician, or a trusted EHR (its `iss`)."""

    actor: Actor
    client: str | None = None


_JTIS = JtiCache()


@functools.lru_cache(maxsize=4)
def _clients(path: str, _mtime: float) -> dict[str, CdsClient]:
    return load_clients(FsPath(path))


async def cds_caller(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> CdsCaller:
    """A trusted EHR's signed JWT (when clients are configured), or a clinician's bearer token."""
    path = runtime.settings.cds_clients_file
    if token and path is not None and looks_like_jwt(token):
        try:
            clients = _clients(str(path), path.stat().st_mtime)
        except (OSError, ValueError) as exc:
            raise ServiceUnavailable(str(exc), code="cds_clients_unavailable") from exc
        audience = str(request.url.replace(query=""))
        try:
            iss = verify(token, clients, audience, _JTIS)
        except CdsAuthError as exc:
            raise Unauthenticated(str(exc), code=exc.code) from exc
        actor = Actor(
            account_id=0,
            role=Role.DOCTOR,
            username=f"cds-client:{iss}",
            display_name=iss,
            address=client_address(request),
            request_id=request_id(request),
        )
        return CdsCaller(actor, iss)
    actor = await get_actor(request, session, runtime, token)
    _require_clinician(actor, "call the CDS service")
    return CdsCaller(actor)


CdsCallerDep = Annotated[CdsCaller, Depends(cds_caller)]


@router.get("/cds-services", include_in_schema=True)
async def cds_discovery() -> dict[str, Any]:
    """CDS Hooks discovery: the prescription vetting service for `order-sign` and `order-select`."""
    return discovery()


@router.post("/cds-services/{service_id}")
async def cds_service(
    service_id: Annotated[str, Path(max_length=80)],
    data: CdsHookRequest,
    caller: CdsCallerDep,
    session: SessionDep,
) -> dict[str, Any]:
    """A CDS Hooks call: the draft MedicationRequests vetted, one card per finding (indicator,
    summary, detail, source, suggestions to remove the order, override reasons)."""
    actor = caller.actor
    kb = _knowledge()
    try:
        cards, verdict = cards_for(kb, service_id, data.model_dump())
    except CdsRequestError as exc:
        if exc.code == "unknown_service":
            raise NotFound(str(exc), code=exc.code) from exc
        raise Unprocessable(str(exc), code=exc.code) from exc
    for card in cards:
        session.add(
            CdsCard(
                uuid=card.uuid,
                service_id=service_id,
                hook=data.hook,
                hook_instance=data.hookInstance,
                account_id=actor.account_id or None,
                client=caller.client,
                indicator=card.indicator,
                category=card.category,
                summary=card.summary,
                source=card.source,
            )
        )
    record(session, actor, "cds_call", "cds_service", f"{service_id} {caller.client or ''}".strip())
    return {"cards": [c.body for c in cards], "decision": verdict.decision, "unresolved": verdict.unresolved}


@router.post("/cds-services/{service_id}/feedback")
async def cds_feedback(
    service_id: Annotated[str, Path(max_length=80)],
    data: FeedbackIn,
    caller: CdsCallerDep,
    session: SessionDep,
) -> dict[str, Any]:
    """CDS Hooks feedback: whether each card was accepted (which suggestions) or overridden
    (with the reason), recorded for the card the service issued."""
    actor = caller.actor
    for entry in data.feedback:
        card = await session.get(CdsCard, entry.card)
        if card is None or card.service_id != service_id:
            raise NotFound("no such card from this service", code="card_not_found", card=entry.card)
        reason = entry.overrideReason.reason if entry.overrideReason and entry.overrideReason.reason else {}
        if (
            entry.outcome == "overridden"
            and not reason
            and not (entry.overrideReason and entry.overrideReason.userComment)
        ):
            raise Unprocessable("say why the card was overridden", code="override_reason_required")
        session.add(
            CdsFeedback(
                card_uuid=card.uuid,
                account_id=actor.account_id or None,
                client=caller.client,
                outcome=entry.outcome,
                accepted_suggestions=json.dumps([str(s.get("id", "")) for s in entry.acceptedSuggestions]),
                override_code=str(reason.get("code"))[:64] if reason.get("code") else None,
                override_display=str(reason.get("display"))[:200] if reason.get("display") else None,
                user_comment=entry.overrideReason.userComment if entry.overrideReason else None,
                outcome_at=entry.outcomeTimestamp,
            )
        )
        record(session, actor, f"cds_{entry.outcome}", "cds_card", card.uuid)
    return {}
