"""Uploads, consultations and their messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, UploadFile, status

from ehospital.consultations.schemas import (
    AttachmentRead,
    CallConfig,
    CallEndIn,
    CallRead,
    CancelIn,
    CompleteIn,
    ConsultationCreate,
    ConsultationRead,
    DiagnosisIn,
    MessageCreate,
    MessageRead,
    QueueItem,
    ReadIn,
    ReadMarkRead,
    TerminateIn,
    WaitRead,
)
from ehospital.consultations.service import ConsultationService
from ehospital.deps import CurrentActor, RuntimeDep, SessionDep
from ehospital.kit.images import read_limited
from ehospital.kit.schemas import MAX_SEQ, IdPath

router = APIRouter(prefix="/api/v1", tags=["consultations"])


def _service(session: SessionDep, runtime: RuntimeDep) -> ConsultationService:
    return ConsultationService(session, runtime.settings, runtime.files)


@router.post("/uploads", response_model=AttachmentRead, status_code=status.HTTP_201_CREATED)
async def upload(
    file: UploadFile,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    purpose: Annotated[str, Query(pattern="^(evidence|message)$")] = "evidence",
) -> AttachmentRead:
    """Upload a photo (JPEG/PNG/WebP) or, as evidence, a PDF; metadata is stripped."""
    data = await read_limited(file, runtime.settings.upload_max_bytes)
    attachment = await _service(session, runtime).upload(
        actor,
        filename=file.filename or "upload",
        declared_type=file.content_type,
        data=data,
        purpose=purpose,
    )
    return AttachmentRead.model_validate(attachment)


@router.get("/attachments/{attachment_id}", response_class=Response)
async def download(
    attachment_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """The bytes of a file you may see."""
    attachment, content = await _service(session, runtime).read_attachment(actor, attachment_id)
    return Response(
        content,
        media_type=attachment.content_type,
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/consultations", response_model=ConsultationRead, status_code=status.HTTP_201_CREATED)
async def open_consultation(
    data: ConsultationCreate, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> ConsultationRead:
    """Ask for a follow-up consultation for a family member, with prior-diagnosis evidence."""
    service = _service(session, runtime)
    return await service.describe(await service.open(actor, data))


@router.get("/consultations", response_model=list[ConsultationRead])
async def list_consultations(
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    status_: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ConsultationRead]:
    """Your family's consultations, or those assigned to you as doctor; newest first."""
    return await _service(session, runtime).list_for(actor, status=status_, limit=limit, offset=offset)


@router.get("/consultations/queue", response_model=list[QueueItem])
async def queue(
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[QueueItem]:
    """Consultations waiting in your centre's queue (doctors)."""
    return await _service(session, runtime).queue(actor, limit)


@router.get("/consultations/{consultation_id}", response_model=ConsultationRead)
async def get_consultation(
    consultation_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> ConsultationRead:
    """One consultation you take part in."""
    return await _service(session, runtime).read(actor, consultation_id)


@router.post("/consultations/{consultation_id}/accept", response_model=ConsultationRead)
async def accept(
    consultation_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> ConsultationRead:
    """Accept a consultation of your centre's queue or one addressed to you (verified doctors)."""
    service = _service(session, runtime)
    return await service.describe(await service.accept(actor, consultation_id))


@router.post("/consultations/{consultation_id}/diagnosis", response_model=ConsultationRead)
async def diagnose(
    consultation_id: IdPath,
    data: DiagnosisIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConsultationRead:
    """Record the diagnosis (ICD-10 code and text)."""
    service = _service(session, runtime)
    return await service.describe(await service.diagnose(actor, consultation_id, data))


@router.post("/consultations/{consultation_id}/complete", response_model=ConsultationRead)
async def complete(
    consultation_id: IdPath,
    data: CompleteIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConsultationRead:
    """Complete the consultation with a summary (needs a diagnosis and a reply of yours)."""
    service = _service(session, runtime)
    return await service.describe(await service.complete(actor, consultation_id, data.summary))


@router.post("/consultations/{consultation_id}/terminate", response_model=ConsultationRead)
async def terminate(
    consultation_id: IdPath,
    data: TerminateIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConsultationRead:
    """End online care and refer the patient to a physical hospital, with the reason."""
    service = _service(session, runtime)
    return await service.describe(await service.terminate(actor, consultation_id, data))


@router.post("/consultations/{consultation_id}/cancel", response_model=ConsultationRead)
async def cancel(
    consultation_id: IdPath,
    data: CancelIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ConsultationRead:
    """Withdraw a consultation that no doctor has answered yet (patients)."""
    service = _service(session, runtime)
    return await service.describe(await service.cancel(actor, consultation_id, data.reason))


@router.get("/consultations/{consultation_id}/messages", response_model=list[MessageRead])
async def messages(
    consultation_id: IdPath,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[MessageRead]:
    """Messages after a sequence number, in order."""
    found = await _service(session, runtime).messages(
        actor, consultation_id, after_seq=after_seq, limit=limit
    )
    return [MessageRead.model_validate(m) for m in found]


@router.post(
    "/consultations/{consultation_id}/messages",
    response_model=MessageRead,
    status_code=status.HTTP_201_CREATED,
)
async def post_message(
    consultation_id: IdPath,
    data: MessageCreate,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> MessageRead:
    """Send a text message or an image (upload it first with purpose=message)."""
    message = await _service(session, runtime).post_message(actor, consultation_id, data)
    return MessageRead.model_validate(message)


@router.post("/consultations/{consultation_id}/read", response_model=ReadMarkRead)
async def mark_read(
    consultation_id: IdPath,
    data: ReadIn,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
) -> ReadMarkRead:
    """Record that the caller has read the chat up to `seq` (a read receipt for the other side)."""
    return await _service(session, runtime).mark_read(actor, consultation_id, data.seq)


@router.get("/consultations/{consultation_id}/read", response_model=list[ReadMarkRead])
async def read_marks(
    consultation_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> list[ReadMarkRead]:
    """How far each participant has read the chat."""
    return await _service(session, runtime).read_marks(actor, consultation_id)


@router.get("/calls/config", response_model=CallConfig)
async def call_config(actor: CurrentActor, session: SessionDep, runtime: RuntimeDep) -> CallConfig:
    """The STUN/TURN servers a browser uses for a video call."""
    return _service(session, runtime).call_config()


@router.post(
    "/consultations/{consultation_id}/calls", response_model=CallRead, status_code=status.HTTP_201_CREATED
)
async def start_call(
    consultation_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> CallRead:
    """The doctor starts a video call: the patient's page rings; signalling goes over the live socket."""
    return CallRead.model_validate(await _service(session, runtime).start_call(actor, consultation_id))


@router.get("/consultations/{consultation_id}/calls", response_model=list[CallRead])
async def list_calls(
    consultation_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> list[CallRead]:
    """The consultation's video calls with their start, end and duration."""
    return await _service(session, runtime).calls(actor, consultation_id)


@router.post("/consultations/{consultation_id}/calls/{call_id}/end", response_model=CallRead)
async def end_call(
    consultation_id: IdPath,
    call_id: IdPath,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    data: CallEndIn | None = None,
) -> CallRead:
    """Hang up (either participant)."""
    reason = data.reason if data is not None else "hangup"
    return CallRead.model_validate(
        await _service(session, runtime).end_call(actor, consultation_id, call_id, reason)
    )


@router.get("/consultations/{consultation_id}/wait", response_model=WaitRead)
async def wait(
    consultation_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> WaitRead:
    """The place in the queue, doctors on duty, an estimated wait, and whether the first answer is
    late (then the patient may cancel for a full refund)."""
    return await _service(session, runtime).wait(actor, consultation_id)
