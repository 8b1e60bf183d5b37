"""The formulary, and writing, signing and verifying prescriptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from ehospital.deps import CurrentActor, RuntimeDep, SessionDep
from ehospital.kit.schemas import IdPath
from ehospital.prescriptions.schemas import (
    DrugCreate,
    DrugRead,
    PrescriptionIn,
    PrescriptionRead,
    QueueEntry,
    ReviewIn,
    TextIn,
    VerifyResult,
)
from ehospital.prescriptions.service import PrescriptionService, drug_read

router = APIRouter(prefix="/api/v1", tags=["prescriptions"])


def _service(session: SessionDep, runtime: RuntimeDep) -> PrescriptionService:
    return PrescriptionService(session, runtime.keys)


@router.get("/drugs", response_model=list[DrugRead])
async def search_drugs(
    session: SessionDep,
    runtime: RuntimeDep,
    q: Annotated[str, Query(min_length=1, max_length=60, description="Name (en/zh) or ATC code")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[DrugRead]:
    """Search the formulary (drugs that may still be prescribed)."""
    return await _service(session, runtime).search_drugs(q, limit)


@router.post("/drugs", response_model=DrugRead, status_code=status.HTTP_201_CREATED)
async def add_drug(
    data: DrugCreate, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> DrugRead:
    """Add a product to the formulary (admin)."""
    return drug_read(await _service(session, runtime).add_drug(actor, data))


@router.post("/drugs/{code}/retire", response_model=DrugRead)
async def retire_drug(
    code: Annotated[str, Path(max_length=80)], actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> DrugRead:
    """Retire a product: it can no longer be prescribed (admin)."""
    return drug_read(await _service(session, runtime).retire_drug(actor, code))


@router.post(
    "/consultations/{consultation_id}/prescriptions",
    response_model=PrescriptionRead,
    status_code=status.HTTP_201_CREATED,
)
async def create_prescription(
    consultation_id: IdPath,
    data: PrescriptionIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> PrescriptionRead:
    """Write a draft prescription in a consultation assigned to you."""
    service = _service(session, runtime)
    return await service.describe(await service.create(actor, consultation_id, data))


@router.put("/prescriptions/{prescription_id}", response_model=PrescriptionRead)
async def update_prescription(
    prescription_id: IdPath,
    data: PrescriptionIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> PrescriptionRead:
    """Change a draft (signed prescriptions never change)."""
    service = _service(session, runtime)
    return await service.describe(await service.update(actor, prescription_id, data))


@router.get("/prescriptions/{prescription_id}/check")
async def check_prescription(
    prescription_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> dict[str, object]:
    """The prescribing rules the draft still breaks."""
    failures = await _service(session, runtime).check(actor, prescription_id)
    return {"ok": not failures, "failures": [f.as_dict() for f in failures]}


@router.post("/prescriptions/{prescription_id}/sign", response_model=PrescriptionRead)
async def sign_prescription(
    prescription_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> PrescriptionRead:
    """Check the rules and sign with your key (422 lists every rule broken)."""
    service = _service(session, runtime)
    return await service.describe(await service.sign(actor, prescription_id))


@router.get("/prescriptions/{prescription_id}", response_model=PrescriptionRead)
async def get_prescription(
    prescription_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> PrescriptionRead:
    """A prescription of a consultation you take part in."""
    service = _service(session, runtime)
    return await service.describe(await service.get(actor, prescription_id))


@router.get("/prescriptions/{prescription_id}/verify", response_model=VerifyResult)
async def verify_prescription(
    prescription_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> VerifyResult:
    """Verify the doctor's signature over the prescription."""
    service = _service(session, runtime)
    await service.get(actor, prescription_id)
    return await service.verify(prescription_id)


@router.get("/pharmacy/reviews", response_model=list[QueueEntry])
async def review_queue(
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[QueueEntry]:
    """Prescriptions waiting for your pharmacy's review: most severe findings first (pharmacists)."""
    return await _service(session, runtime).review_queue(actor, limit)


@router.post("/prescriptions/{prescription_id}/review", response_model=PrescriptionRead)
async def review_prescription(
    prescription_id: IdPath, data: ReviewIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> PrescriptionRead:
    """Approve, reject with a reason, or return to the doctor with a question (pharmacists)."""
    service = _service(session, runtime)
    return await service.describe(await service.review(actor, prescription_id, data))


@router.post("/prescriptions/{prescription_id}/answer", response_model=PrescriptionRead)
async def answer_prescription(
    prescription_id: IdPath, data: TextIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> PrescriptionRead:
    """Answer the pharmacist's question; the prescription goes back to review unchanged."""
    service = _service(session, runtime)
    return await service.describe(await service.answer(actor, prescription_id, data.text))


@router.post("/prescriptions/{prescription_id}/withdraw", response_model=PrescriptionRead)
async def withdraw_prescription(
    prescription_id: IdPath, data: TextIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> PrescriptionRead:
    """Withdraw your prescription before it is approved."""
    service = _service(session, runtime)
    return await service.describe(await service.withdraw(actor, prescription_id, data.text))


@router.post(
    "/prescriptions/{prescription_id}/revise",
    response_model=PrescriptionRead,
    status_code=status.HTTP_201_CREATED,
)
async def revise_prescription(
    prescription_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> PrescriptionRead:
    """Start a new version of a returned prescription (a draft to change and sign)."""
    service = _service(session, runtime)
    return await service.describe(await service.revise(actor, prescription_id))
