"""The patient account's pages: the family, their consultations, asking for a follow-up visit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import ValidationError

from ehospital.consultations.schemas import ConsultationCreate
from ehospital.consultations.service import MAX_EVIDENCE, ConsultationService
from ehospital.directory.schemas import CentreRead, DoctorRead
from ehospital.directory.service import DirectoryService
from ehospital.kit.errors import DomainError
from ehospital.kit.images import read_limited
from ehospital.patients.models import Relationship
from ehospital.patients.schemas import PatientCreate
from ehospital.patients.service import PatientService, to_read
from ehospital.triage.schemas import TriageIn, TriageRead
from ehospital.triage.service import TriageService
from ehospital.web.common import PatientWeb, PostedForm, Web
from ehospital.web.forms import (
    EMPTY,
    FormState,
    failed,
    field_error,
    invalid,
    optional,
    text,
    uploads,
    values_of,
)
from ehospital.web.pages.shared import MAX_ID, centre_names, clinic_names, id_text

router = APIRouter(include_in_schema=False)

MEMBER_FIELDS = ("name", "id_number", "sex", "birth_date", "relationship", "phone")
CONSULTATION_FIELDS = (
    "patient_id",
    "centre_id",
    "clinic_id",
    "doctor_id",
    "visit_type",
    "complaint",
    "prior_diagnosis",
    "prior_institution",
)


def _consultations(web: Web) -> ConsultationService:
    return ConsultationService(web.session, web.runtime.settings, web.runtime.files)


async def _home(web: Web, state: FormState = EMPTY, status_code: int = 200) -> Response:
    members = [to_read(p) for p in await PatientService(web.session).family(web.me)]
    return web.render(
        "patient_home.html",
        members=members,
        relationships=[str(r) for r in Relationship],
        state=state,
        status_code=status_code,
        here="/patient",
    )


@router.get("/patient")
async def home(web: PatientWeb) -> Response:
    """The family members of the account, and the form to add one."""
    return await _home(web)


@router.post("/patient/family")
async def add_member(web: PatientWeb, form: PostedForm) -> Response:
    values = values_of(form, *MEMBER_FIELDS)
    try:
        data = PatientCreate.model_validate({**values, "phone": optional(form, "phone")})
    except ValidationError as exc:
        return await _home(web, invalid(web.t, "member", exc, values), 422)
    try:
        async with web.atomic():
            await PatientService(web.session).add(web.me, data)
    except DomainError as exc:
        return await _home(web, failed(web.t, "member", exc, values), exc.status_code)
    return web.redirect("/patient?notice=member_added")


@router.get("/patient/consultations")
async def my_consultations(web: PatientWeb) -> Response:
    """The family's consultations, newest first."""
    found = await _consultations(web).list_for(web.me, limit=100)
    centres = await DirectoryService(web.session).centres(include_inactive=True)
    return web.render(
        "consultations.html",
        consultations=found,
        centre_names=centre_names(centres, web.lang),
        clinic_names=clinic_names(centres, web.lang),
        title_key="consultations.title_patient",
    )


async def _new_page(
    web: Web, state: FormState, status_code: int = 200, triage: TriageRead | None = None
) -> Response:
    directory = DirectoryService(web.session)
    centres: list[CentreRead] = await directory.centres()
    doctors: list[DoctorRead] = await directory.doctors()
    by_centre: dict[int, list[DoctorRead]] = {c.id: [] for c in centres}
    for doctor in doctors:
        if doctor.centre_id in by_centre:
            by_centre[doctor.centre_id].append(doctor)
    members = [to_read(p) for p in await PatientService(web.session).family(web.me)]
    return web.render(
        "consultation_new.html",
        members=members,
        centres=centres,
        doctors_by_centre=by_centre,
        clinic_names=clinic_names(centres, web.lang),
        max_evidence=MAX_EVIDENCE,
        state=state,
        triage=triage,
        status_code=status_code,
        here="/patient/consultations/new",
    )


@router.get("/patient/consultations/new")
async def new_consultation(
    web: PatientWeb,
    patient: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    centre: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    clinic: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    """The form asking for a follow-up visit (centre and clinic preselected by a referral)."""
    values = {
        "patient_id": str(patient or ""),
        "centre_id": str(centre or ""),
        "clinic_id": str(clinic or ""),
        "visit_type": "follow_up",
    }
    return await _new_page(web, FormState("consultation", values))


@router.post("/patient/consultations/new")
async def open_consultation(web: PatientWeb, form: PostedForm) -> Response:
    values = values_of(form, *CONSULTATION_FIELDS)
    raw: dict[str, Any] = {
        "patient_id": id_text(form, "patient_id"),
        "centre_id": id_text(form, "centre_id"),
        "clinic_id": id_text(form, "clinic_id") or None,
        "doctor_id": id_text(form, "doctor_id") or None,
        "visit_type": text(form, "visit_type"),
        "complaint": text(form, "complaint"),
        "prior_diagnosis": text(form, "prior_diagnosis"),
        "prior_institution": optional(form, "prior_institution"),
        "evidence_ids": [],
    }
    try:
        data = ConsultationCreate.model_validate(raw)
    except ValidationError as exc:
        return await _new_page(web, invalid(web.t, "consultation", exc, values), 422)
    files = uploads(form, "evidence")
    if len(files) > MAX_EVIDENCE:
        state = field_error(
            web.t, "consultation", "evidence", "validation.too_many", values, max=MAX_EVIDENCE
        )
        return await _new_page(web, state, 422)
    service = _consultations(web)
    try:
        # All or nothing: a refused consultation leaves no upload rows behind.
        async with web.atomic():
            evidence_ids = []
            for upload in files:
                attachment = await service.upload(
                    web.me,
                    filename=upload.filename or "evidence",
                    declared_type=upload.content_type,
                    data=await read_limited(upload, web.runtime.settings.upload_max_bytes),
                    purpose="evidence",
                )
                evidence_ids.append(attachment.id)
            consultation = await service.open(web.me, data.model_copy(update={"evidence_ids": evidence_ids}))
    except DomainError as exc:
        return await _new_page(web, failed(web.t, "consultation", exc, values), exc.status_code)
    return web.redirect(f"/consultations/{consultation.id}?notice=consultation_opened")


@router.post("/patient/consultations/triage")
async def triage_symptoms(web: PatientWeb, form: PostedForm) -> Response:
    """The new-consultation form again, with a suggested centre and clinic for the described symptoms."""
    values = values_of(form, "symptoms", "patient_id")
    try:
        # The service refuses empty or too long text with its own code (error.text_empty, …).
        data = TriageIn(text=text(form, "symptoms"), lang="zh" if web.lang == "zh" else "en")
        result = await TriageService(web.session).triage(web.me, data)
    except DomainError as exc:
        return await _new_page(web, failed(web.t, "triage", exc, values), exc.status_code)
    return await _new_page(web, FormState("triage", values), triage=result)
