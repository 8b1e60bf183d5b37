"""The audit trail, for administrators and regulators."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from ehospital.audit.service import recent, verify
from ehospital.deps import CurrentAdmin, SessionDep
from ehospital.kit.schemas import MAX_DB_ID, Output

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEventRead(Output):
    id: int
    seq: int | None
    at: datetime
    actor_id: int | None
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: int | None
    address: str | None
    request_id: str | None
    outcome: str


@router.get("/events", response_model=list[AuditEventRead])
async def events(
    actor: CurrentAdmin,
    session: SessionDep,
    patient_id: Annotated[int | None, Query(ge=1, le=MAX_DB_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEventRead]:
    """The newest audit rows, optionally about one patient (admin)."""
    return [AuditEventRead.model_validate(e) for e in await recent(session, patient_id, limit)]


@router.get("/verify")
async def verify_chain(actor: CurrentAdmin, session: SessionDep) -> dict[str, object]:
    """Walk the hash chain and report the first broken link (admin)."""
    return (await verify(session)).as_dict()
