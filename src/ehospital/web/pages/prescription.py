"""Prescriptions on pages: the doctor's pad (draft, check, sign, answer, revise, withdraw), the
drug search, the patient's prescriptions and the pharmacist's review queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ehospital.consultations.service import ConsultationService
from ehospital.kit.errors import DomainError
from ehospital.prescriptions.checks import PadLine
from ehospital.prescriptions.models import RxStatus
from ehospital.prescriptions.schemas import (
    DOSE_UNITS,
    FREQUENCY_CODES,
    ROUTES,
    PrescriptionIn,
    ReviewIn,
    TextIn,
)
from ehospital.web.common import DoctorWeb, PatientWeb, PharmacistWeb, PostedForm, Web
from ehospital.web.forms import EMPTY, FormState, failed, field_error, invalid, values_of
from ehospital.web.pages.consultation import consultation_page
from ehospital.web.pages.rx_view import (
    FLAG_FIELDS,
    ITEM_FIELDS,
    LINES,
    PAD_FIELDS,
    described,
    drug_label,
    reads,
    rx_view,
)
from ehospital.web.pages.shared import MAX_ID, id_text

router = APIRouter(include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=MAX_ID)]
SEARCH_LIMIT = 20


# --- the drug search ---------------------------------------------------------------------------


@router.get("/prescriptions/drugs.json")
async def drugs_json(web: DoctorWeb, q: Annotated[str, Query(max_length=60)] = "") -> Response:
    """Formulary matches for the pad's autocomplete script (cookie session, same origin)."""
    found = await reads(web).search_drugs(q, SEARCH_LIMIT) if q.strip() else []
    body = {
        "drugs": [
            {"code": d.code, "label": drug_label(web.t, d), "route": d.route, "unit": d.unit} for d in found
        ]
    }
    return web.finish(JSONResponse(body))


@router.get("/consultations/{consultation_id}/drugs")
async def drug_search(
    consultation_id: Id,
    web: DoctorWeb,
    q: Annotated[str, Query(max_length=60)] = "",
    line: Annotated[int, Query(ge=1, le=len(LINES))] = 1,
) -> Response:
    """The drug search without a script: results link back to the pad with the drug on `line`."""
    services = ConsultationService(web.session, web.runtime.settings, web.runtime.files)
    await services.read(web.me, consultation_id)  # 404 unless the consultation is mine
    found = await reads(web).search_drugs(q, SEARCH_LIMIT) if q.strip() else []
    return web.render(
        "drug_search.html",
        consultation_id=consultation_id,
        q=q,
        line=line,
        lines=LINES,
        drugs=[{"drug": d, "label": drug_label(web.t, d)} for d in found],
    )


# --- the doctor's pad --------------------------------------------------------------------------


def _pad_input(values: dict[str, str]) -> tuple[dict[str, Any], list[int]]:
    """The posted pad as PrescriptionIn's input, and the pad line of each item (empty lines skipped)."""
    items, lines = [], []
    for n in LINES:
        if values[f"drug_code_{n}"]:
            items.append({k: values[f"{k}_{n}"] for k in ITEM_FIELDS})
            lines.append(n)
    validity = values["validity_days"]
    raw: dict[str, Any] = {
        "pharmacy_id": values["pharmacy_id"],
        "items": items,
        "extended_reason": values["extended_reason"] or None,
        "validity_days": int(validity) if validity in ("1", "3") else validity,
        "note": values["note"] or None,
        **{k: values[k] == "1" for k in FLAG_FIELDS},
    }
    return raw, lines


def _live_line(values: dict[str, str], n: int) -> PadLine | None:
    code = values[f"drug_code_{n}"].strip()[:80]
    if not code:
        return None
    try:
        dose = Decimal(values[f"dose_{n}"])
        dose_text = format(dose.normalize(), "f") if dose.is_finite() and dose > 0 else None
    except (InvalidOperation, ValueError):
        dose_text = None
    days = values[f"days_{n}"]
    return PadLine(
        code=code,
        dose=dose_text,
        dose_unit=values[f"dose_unit_{n}"] if values[f"dose_unit_{n}"] in DOSE_UNITS else None,
        route=values[f"route_{n}"] if values[f"route_{n}"] in ROUTES else None,
        frequency=values[f"frequency_{n}"] if values[f"frequency_{n}"] in FREQUENCY_CODES else None,
        days=int(days) if days.isdigit() and 1 <= int(days) <= 366 else None,
    )


@router.post("/consultations/{consultation_id}/prescriptions/check")
async def check_live(consultation_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """The clinical check of the pad as typed (JSON for the pad's script; nothing is saved)."""
    values = values_of(form, *PAD_FIELDS)
    lines = [line for n in LINES if (line := _live_line(values, n)) is not None]
    found = await reads(web).clinical_preview_of_lines(web.me, consultation_id, lines)
    body = {
        "findings": [
            {
                "severity": str(f.severity),
                "label": web.t.label("severity", str(f.severity)),
                "text": f.message_zh if web.lang == "zh" and f.message_zh else f.message,
                "source": f.source,
            }
            for f in found
        ],
        "none": web.t("rx.clinical_none"),
        "source_label": web.t("rx.source"),
    }
    return web.finish(JSONResponse(body))


@router.post("/consultations/{consultation_id}/prescriptions")
async def save_draft(consultation_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """Create the draft, or change the draft named by prescription_id; the page then shows the
    rules it still breaks next to its lines."""
    values = values_of(form, *PAD_FIELDS)
    values["pharmacy_id"] = id_text(form, "pharmacy_id")
    raw, lines = _pad_input(values)

    def locate(loc: tuple[int | str, ...]) -> str:
        if loc and loc[0] == "items":
            if len(loc) >= 3 and isinstance(loc[1], int) and loc[1] < len(lines):
                return f"{loc[2]}_{lines[loc[1]]}"
            return "drug_code_1"
        return str(loc[0]) if loc else "form"

    try:
        data = PrescriptionIn.model_validate(raw)
    except ValidationError as exc:
        state = invalid(web.t, "rx", exc, values, locate=locate)
        return await consultation_page(web, consultation_id, state, 422)
    draft_id = id_text(form, "prescription_id")
    service = reads(web)
    try:
        async with web.atomic():
            if draft_id.isdigit():
                await service.update(web.me, int(draft_id), data)
            else:
                await service.create(web.me, consultation_id, data)
    except DomainError as exc:
        state = failed(web.t, "rx", exc, values)
        if exc.code == "unknown_drug":
            codes = exc.details.get("codes") or []
            state = FormState(
                form="rx",
                values={**values, "unknown_codes": "\n".join(str(c) for c in codes)},
                error=state.error,
                code=state.code,
            )
        return await consultation_page(web, consultation_id, state, exc.status_code)
    return web.redirect(f"/consultations/{consultation_id}?notice=rx_saved#rx-pad")


async def _doctor_act(
    web: Web,
    prescription_id: int,
    form_name: str,
    notice: str,
    values: dict[str, str],
    action: Callable[[], Awaitable[Any]],
    anchor: str = "",
) -> Response:
    """Run one action on a prescription of mine; on a refusal show its consultation with the
    message (next to the prescription's card, or on the pad); else go back to `anchor` (the card)."""
    service = reads(web)
    prescription = await service.get(web.me, prescription_id)  # 404 unless the consultation is mine
    consultation_id = prescription.consultation_id
    try:
        async with web.atomic():
            await action()
    except DomainError as exc:
        return await consultation_page(
            web, consultation_id, failed(web.t, form_name, exc, values), exc.status_code
        )
    anchor = anchor or f"rx-{prescription_id}"
    return web.redirect(f"/consultations/{consultation_id}?notice={notice}#{anchor}")


@router.post("/prescriptions/{prescription_id}/sign")
async def sign(prescription_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """Sign the draft; refused with every broken rule (the pad shows them next to their lines)."""
    return await _doctor_act(
        web, prescription_id, "rx_sign", "rx_signed", {}, lambda: reads(web).sign(web.me, prescription_id)
    )


async def _text_act(
    web: Web,
    prescription_id: int,
    form: PostedForm,
    kind: str,
    action: Callable[[str], Awaitable[Any]],
) -> Response:
    """Answer or withdraw: both need a text (the answer, the reason)."""
    values = values_of(form, "text")
    form_name = f"rx_{kind}-{prescription_id}"
    try:
        data = TextIn.model_validate(values)
    except ValidationError as exc:
        prescription = await reads(web).get(web.me, prescription_id)  # 404 unless it is mine
        if values["text"]:
            state = invalid(web.t, form_name, exc, values)
        else:  # nothing written: "required", not "at least 2 characters"
            state = field_error(web.t, form_name, "text", "validation.required", values)
        return await consultation_page(web, prescription.consultation_id, state, 422)
    return await _doctor_act(
        web, prescription_id, form_name, f"rx_{kind}_done", values, lambda: action(data.text)
    )


@router.post("/prescriptions/{prescription_id}/answer")
async def answer(prescription_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """Answer the pharmacist's question: the prescription goes back to review unchanged."""
    return await _text_act(
        web, prescription_id, form, "answer", lambda t: reads(web).answer(web.me, prescription_id, t)
    )


@router.post("/prescriptions/{prescription_id}/withdraw")
async def withdraw(prescription_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """Take back a prescription the pharmacist has not approved yet, saying why."""
    return await _text_act(
        web, prescription_id, form, "withdraw", lambda t: reads(web).withdraw(web.me, prescription_id, t)
    )


@router.post("/prescriptions/{prescription_id}/revise")
async def revise(prescription_id: Id, web: DoctorWeb, form: PostedForm) -> Response:
    """A new draft version of a returned prescription, opened on the pad. Asked again while that
    draft is unsigned (a second click, another tab), it opens the same draft instead of a second
    version 2 (which the database would refuse as a conflict)."""
    service = reads(web)
    old = await service.get(web.me, prescription_id)  # 404 unless the consultation is mine
    if old.status == RxStatus.RETURNED and old.doctor_id == web.me.doctor_id:
        for other in await service.in_consultation(web.me, old.consultation_id):
            if other.status == RxStatus.DRAFT and other.lineage_id == old.lineage_id:
                return web.redirect(f"/consultations/{old.consultation_id}?notice=rx_revised#rx-pad")
    return await _doctor_act(
        web,
        prescription_id,
        f"rx_revise-{prescription_id}",
        "rx_revised",
        {},
        lambda: service.revise(web.me, prescription_id),
        anchor="rx-pad",
    )


# --- the patient -------------------------------------------------------------------------------


@router.get("/patient/prescriptions")
async def my_prescriptions(web: PatientWeb) -> Response:
    """The family's signed prescriptions (never drafts), newest first."""
    found = await reads(web).of_account(web.me)
    return web.render("prescriptions.html", prescriptions=await described(web, found))


# --- the pharmacist ----------------------------------------------------------------------------


def _waited(since: datetime | None) -> int:
    """Whole minutes since a time (0 if unknown)."""
    if since is None:
        return 0
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return max(0, int((datetime.now(UTC) - since).total_seconds() // 60))


SEVERITY = {4: "contraindicated", 3: "major", 2: "moderate", 1: "minor", 0: "none"}


@router.get("/pharmacy")
async def review_queue(web: PharmacistWeb) -> Response:
    """Prescriptions waiting for my pharmacy: the most severe findings first, then the oldest."""
    entries = await reads(web).review_queue(web.me)
    return web.render(
        "pharmacy_queue.html",
        entries=[
            {"e": e, "severity": SEVERITY.get(e.severity_rank, "none"), "waited": _waited(e.signed_at)}
            for e in entries
        ],
        here="/pharmacy",
    )


async def _review_page(
    web: Web, prescription_id: int, state: FormState = EMPTY, status_code: int = 200
) -> Response:
    service = reads(web)
    prescription, patient = await service.for_review(web.me, prescription_id)
    # The question asked when it was returned and, once it is back, the doctor's answer to it
    # (while it is returned again, the latest answer belongs to an earlier question).
    question = await service.latest_text(prescription, "review_return")
    answer = None
    if question is not None and prescription.status != RxStatus.RETURNED:
        answer = await service.latest_text(prescription, "answer")
    view = rx_view(web, await service.describe(prescription), question)
    return web.render(
        "pharmacy_review.html",
        view=view,
        answer=answer,
        patient=patient,
        can_review=prescription.status == "auto_checked",
        state=state,
        status_code=status_code,
        here=f"/pharmacy/prescriptions/{prescription_id}",
    )


@router.get("/pharmacy/prescriptions/{prescription_id}")
async def review_page(prescription_id: Id, web: PharmacistWeb) -> Response:
    return await _review_page(web, prescription_id)


@router.post("/pharmacy/prescriptions/{prescription_id}/review")
async def review(prescription_id: Id, web: PharmacistWeb, form: PostedForm) -> Response:
    """Approve, reject with a reason, or return to the doctor with a question."""
    values = values_of(form, "decision", "reason")
    try:
        data = ReviewIn.model_validate({"decision": values["decision"], "reason": values["reason"] or None})
    except ValidationError as exc:
        return await _review_page(web, prescription_id, invalid(web.t, "review", exc, values), 422)
    if data.decision != "approve" and not data.reason:
        state = field_error(web.t, "review", "reason", "rx.reason_required", values)
        return await _review_page(web, prescription_id, state, 422)
    try:
        async with web.atomic():
            await reads(web).review(web.me, prescription_id, data)
    except DomainError as exc:
        return await _review_page(web, prescription_id, failed(web.t, "review", exc, values), exc.status_code)
    return web.redirect(f"/pharmacy?notice=review_{data.decision}_done")
