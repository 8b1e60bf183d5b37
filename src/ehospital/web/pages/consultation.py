"""One consultation as its patient account and its doctor see it: details, chat and actions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ehospital.consultations.models import CHATTING_STATUSES, OPEN_STATUSES, Message, Status
from ehospital.consultations.schemas import DiagnosisIn, MessageCreate, TerminateIn
from ehospital.consultations.service import ConsultationService, changes_state
from ehospital.directory.service import DirectoryService
from ehospital.kit.errors import DomainError
from ehospital.kit.images import read_limited
from ehospital.kit.schemas import MAX_SEQ
from ehospital.prescriptions.models import RxStatus
from ehospital.web.common import CareWeb, DoctorWeb, PatientWeb, PostedForm, SignedInWeb, Web
from ehospital.web.forms import (
    EMPTY,
    FormState,
    failed,
    field_error,
    invalid,
    uploads,
    values_of,
)
from ehospital.web.pages.doctor import queue_page
from ehospital.web.pages.rx_view import LINES, described, pad_view, reads
from ehospital.web.pages.shared import MAX_ID, centre_names, clinic_names, message_view
from ehospital.web.pages.skin import chat_line, consultation_panel

router = APIRouter(include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
MESSAGE_PAGE = 200
MAX_MESSAGES = 5000


def _service(web: Web) -> ConsultationService:
    return ConsultationService(web.session, web.runtime.settings, web.runtime.files)


async def _all_messages(web: Web, consultation_id: int) -> list[Message]:
    service, after = _service(web), 0
    found: list[Message] = []
    while len(found) < MAX_MESSAGES:
        batch = await service.messages(web.me, consultation_id, after_seq=after, limit=MESSAGE_PAGE)
        found.extend(batch)
        if len(batch) < MESSAGE_PAGE:
            break
        after = batch[-1].seq
    return found


async def consultation_page(
    web: Web,
    consultation_id: int,
    state: FormState = EMPTY,
    status_code: int = 200,
    pick: tuple[int, str] | None = None,
) -> Response:
    """The page; also what a failed action re-renders, with that form's values and messages."""
    consultation = await _service(web).read(web.me, consultation_id)
    messages = await _all_messages(web, consultation_id)
    centres = await DirectoryService(web.session).centres(include_inactive=True)
    status = Status(consultation.status)
    me = web.me
    prescriptions = await reads(web).in_consultation(me, consultation_id)
    # The pad: once the diagnosis it is linked to is recorded, while the consultation is open.
    can_prescribe = (
        me.is_practising_doctor and status in CHATTING_STATUSES and bool(consultation.diagnosis_code)
    )
    drafts = [p for p in prescriptions if p.status == RxStatus.DRAFT]
    pad = await pad_view(web, drafts, state, pick) if can_prescribe else None
    # The patient's place in the queue and the first-answer promise, while nobody has answered.
    wait = (
        await _service(web).wait(me, consultation_id)
        if me.is_patient and status in (Status.REQUESTED, Status.ACCEPTED)
        else None
    )
    return web.render(
        "consultation.html",
        c=consultation,
        messages=[chat_line(web.t, message_view(web.t, me, m)) for m in messages],
        last_seq=max((m.seq for m in messages), default=0),
        centre_name=centre_names(centres, web.lang).get(consultation.centre_id, ""),
        clinic_name=clinic_names(centres, web.lang).get(consultation.clinic_id or 0, ""),
        is_open=status in OPEN_STATUSES,
        can_chat=status in (CHATTING_STATUSES if me.is_doctor else OPEN_STATUSES),
        can_cancel=me.is_patient and status in (Status.REQUESTED, Status.ACCEPTED),
        can_accept=me.is_doctor and status is Status.REQUESTED,
        can_treat=me.is_doctor and status in CHATTING_STATUSES,
        wait=wait,
        can_call=status in CHATTING_STATUSES and (me.is_practising_doctor or me.is_patient),
        pad=pad,
        prescriptions=await described(web, prescriptions),
        skin_photos=await consultation_panel(web, consultation.patient.id, consultation_id),
        state=state,
        status_code=status_code,
        here=f"/consultations/{consultation_id}",
    )


@router.get("/consultations/{consultation_id}")
async def show(
    consultation_id: Id,
    web: CareWeb,
    line: Annotated[int | None, Query(ge=1, le=len(LINES))] = None,
    drug: Annotated[str | None, Query(max_length=80)] = None,
) -> Response:
    """The consultation; `line` and `drug` put a drug picked on the search page (no script) on the pad."""
    pick = (line, drug) if line is not None and drug else None
    return await consultation_page(web, consultation_id, pick=pick)


@router.get("/consultations/{consultation_id}/messages.json")
async def messages_json(
    consultation_id: Id, web: CareWeb, after_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0
) -> Response:
    """New chat lines for the page's polling script (cookie session, same origin)."""
    found = await _service(web).messages(web.me, consultation_id, after_seq=after_seq, limit=MESSAGE_PAGE)
    body: dict[str, Any] = {
        "messages": [chat_line(web.t, message_view(web.t, web.me, m)) for m in found],
        "changed": any(changes_state(m) for m in found),
    }
    return web.finish(JSONResponse(body))


async def _act(
    web: Web,
    consultation_id: int,
    form_name: str,
    values: dict[str, str],
    action: Callable[[], Awaitable[object]],
) -> Response:
    """Run one action; on a refusal undo everything and show the page with the message."""
    try:
        async with web.atomic():
            await action()
    except DomainError as exc:
        return await consultation_page(
            web, consultation_id, failed(web.t, form_name, exc, values), exc.status_code
        )
    notice = "" if form_name == "message" else f"?notice={form_name}_done"
    return web.redirect(f"/consultations/{consultation_id}{notice}#chat")


@router.post("/consultations/{consultation_id}/messages")
async def post_message(consultation_id: Id, web: CareWeb, form: PostedForm) -> Response:
    """Send text and/or an image."""
    values = values_of(form, "body")
    images = uploads(form, "image")
    if len(images) > 1:
        state = field_error(web.t, "message", "image", "validation.too_many", values, max=1)
        return await consultation_page(web, consultation_id, state, 422)
    if not values["body"] and not images:
        state = field_error(web.t, "message", "body", "validation.message_empty", values)
        return await consultation_page(web, consultation_id, state, 422)
    try:
        MessageCreate.model_validate({"body": values["body"]})
    except ValidationError as exc:
        return await consultation_page(web, consultation_id, invalid(web.t, "message", exc, values), 422)
    service = _service(web)

    async def send() -> None:
        attachment_id = None
        if images:
            attachment = await service.upload(
                web.me,
                filename=images[0].filename or "image",
                declared_type=images[0].content_type,
                data=await read_limited(images[0], web.runtime.settings.upload_max_bytes),
                purpose="message",
            )
            attachment_id = attachment.id
        await service.post_message(
            web.me, consultation_id, MessageCreate(body=values["body"], attachment_id=attachment_id)
        )

    return await _act(web, consultation_id, "message", values, send)


@router.post("/consultations/{consultation_id}/cancel")
async def cancel(consultation_id: Id, web: PatientWeb, form: PostedForm) -> Response:
    values = values_of(form, "reason")
    if len(values["reason"]) > 500:
        state = field_error(web.t, "cancel", "reason", "validation.max_length", values, max=500)
        return await consultation_page(web, consultation_id, state, 422)
    return await _act(
        web,
        consultation_id,
        "cancel",
        values,
        lambda: _service(web).cancel(web.me, consultation_id, values["reason"]),
    )


@router.post("/consultations/{consultation_id}/accept")
async def accept(consultation_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """Take a consultation from the queue (or one addressed to me)."""
    try:
        async with web.atomic():
            await _service(web).accept(web.me, consultation_id)
    except DomainError as exc:
        return await queue_page(web, failed(web.t, "accept", exc, {}), exc.status_code)
    return web.redirect(f"/consultations/{consultation_id}?notice=accept_done")


@router.post("/consultations/{consultation_id}/diagnosis")
async def diagnose(consultation_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    values = values_of(form, "code", "text", "summary")
    raw = {"code": values["code"].upper(), "text": values["text"], "summary": values["summary"] or None}
    try:
        data = DiagnosisIn.model_validate(raw)
    except ValidationError as exc:
        return await consultation_page(web, consultation_id, invalid(web.t, "diagnosis", exc, values), 422)
    return await _act(
        web,
        consultation_id,
        "diagnosis",
        values,
        lambda: _service(web).diagnose(web.me, consultation_id, data),
    )


@router.post("/consultations/{consultation_id}/complete")
async def complete(consultation_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    values = values_of(form, "summary")
    if len(values["summary"]) < 2 or len(values["summary"]) > 4000:
        key = "validation.min_length" if len(values["summary"]) < 2 else "validation.max_length"
        state = field_error(web.t, "complete", "summary", key, values, min=2, max=4000)
        return await consultation_page(web, consultation_id, state, 422)
    return await _act(
        web,
        consultation_id,
        "complete",
        values,
        lambda: _service(web).complete(web.me, consultation_id, values["summary"]),
    )


@router.post("/consultations/{consultation_id}/terminate")
async def terminate(consultation_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """End online care and refer the patient to a hospital."""
    values = values_of(form, "reason", "referral_to")
    try:
        data = TerminateIn.model_validate(values)
    except ValidationError as exc:
        return await consultation_page(web, consultation_id, invalid(web.t, "terminate", exc, values), 422)
    return await _act(
        web,
        consultation_id,
        "terminate",
        values,
        lambda: _service(web).terminate(web.me, consultation_id, data),
    )


@router.get("/files/{attachment_id}")
async def file(attachment_id: Id, web: SignedInWeb) -> Response:
    """An evidence file or chat image, to those who may see it; never cached."""
    attachment, content = await _service(web).read_attachment(web.me, attachment_id)
    disposition = "inline" if attachment.content_type.startswith("image/") else "attachment"
    return Response(
        content,
        media_type=attachment.content_type,
        headers={
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(attachment.filename)}",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
        },
    )
