"""The skin API: photos in, AI reports out, history, the dermatologist's review, consent and
follow-up schedules."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Response, UploadFile, status
from sqlalchemy import select

from ehospital.deps import CurrentActor, RuntimeDep, SessionDep
from ehospital.directory.models import Doctor
from ehospital.kit.images import read_limited
from ehospital.kit.schemas import IdPath
from ehospital.skin.model import LESION_TYPES
from ehospital.skin.report import wording
from ehospital.skin.schemas import (
    AcneRead,
    ConsentIn,
    FollowUpIn,
    FollowUpRead,
    LesionRead,
    ReviewIn,
    ReviewRead,
    SkinReportRead,
    View,
)
from ehospital.skin.service import PhotoRecord, SkinService, photo_store
from ehospital.skin.tables import SkinFollowUp, SkinReview

router = APIRouter(prefix="/api/v1/skin", tags=["skin"])

MAX_PHOTO_BYTES = 15 * 1024 * 1024


def service(session: SessionDep, runtime: RuntimeDep) -> SkinService:
    return SkinService(session, photo_store(runtime.settings))


def _lesions(raw: str | None) -> list[LesionRead]:
    out = []
    for item in json.loads(raw or "[]"):
        x, y, radius, kind = item[:4]
        out.append(LesionRead(x=x, y=y, radius=radius, kind=kind, score=item[4] if len(item) > 4 else None))
    return out


def review_read(review: SkinReview, doctor_name: str | None = None) -> ReviewRead:
    return ReviewRead(
        id=review.id,
        doctor_id=review.doctor_id,
        doctor_name=doctor_name,
        consultation_id=review.consultation_id,
        confirmed_grade=review.confirmed_grade,
        lesions=_lesions(review.lesions) if review.lesions is not None else None,
        diagnosis_code=review.diagnosis_code,
        diagnosis_text=review.diagnosis_text,
        notes=review.notes,
        created_at=review.created_at,
    )


def report_read(found: PhotoRecord, locale: str, doctor_name: str | None = None) -> SkinReportRead:
    """The API's view of a photo and what was found in it, worded in the reader's language."""
    photo, analysis = found.photo, found.analysis
    acne = None
    words: dict[str, object] = {}
    if analysis is not None and analysis.grade is not None:
        by_type = {k: int(v) for k, v in json.loads(analysis.by_type).items()}
        acne = AcneRead(
            grade=analysis.grade,
            lesions=analysis.lesion_count or 0,
            by_type={k: by_type.get(k, 0) for k in LESION_TYPES},
            grade_probabilities=json.loads(analysis.grade_probabilities),
        )
        words = wording(analysis.grade, acne.by_type, locale)
    latest = found.reviews[0] if found.reviews else None
    return SkinReportRead(
        photo_id=photo.id,
        patient_id=photo.patient_id,
        consultation_id=photo.consultation_id,
        view=photo.view,
        taken_at=photo.created_at,
        width=photo.width,
        height=photo.height,
        image_url=f"/api/v1/skin/photos/{photo.id}/image",
        overlay_url=f"/api/v1/skin/photos/{photo.id}/overlay" if photo.overlay_key else None,
        model=analysis.model_version if analysis else None,
        acne=acne,
        lesions=_lesions(analysis.lesions) if analysis else [],
        referral=bool(analysis and analysis.referral),
        quality=json.loads(analysis.quality) if analysis else {},
        elapsed_ms=analysis.elapsed_ms if analysis else None,
        words=words,
        training_consent=photo.training_consent_at is not None,
        review=review_read(latest, doctor_name) if latest else None,
        reviews=len(found.reviews),
    )


async def _doctor_name(session: SessionDep, found: PhotoRecord) -> str | None:
    if not found.reviews:
        return None
    name: str | None = await session.scalar(
        select(Doctor.name).where(Doctor.id == found.reviews[0].doctor_id)
    )
    return name


def followup_read(plan: SkinFollowUp) -> FollowUpRead:
    return FollowUpRead(
        patient_id=plan.patient_id,
        interval_days=plan.interval_days,
        views=plan.views.split(","),
        next_due_at=plan.next_due_at,
        last_reminded_at=plan.last_reminded_at,
        active=plan.active,
    )


@router.post(
    "/patients/{patient_id}/photos", response_model=SkinReportRead, status_code=status.HTTP_201_CREATED
)
async def submit_photo(
    patient_id: IdPath,
    file: UploadFile,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    view: Annotated[View, Form()] = "front",
    consultation_id: Annotated[int | None, Form(ge=1)] = None,
    training_consent: Annotated[bool, Form()] = False,
) -> SkinReportRead:
    """A facial photo (JPEG, PNG or WebP) in, the AI skin report out, synchronously. A photo the
    checks refuse is not kept: 422 with `code` (too_dark, too_blurry, not_enough_skin,
    not_assessable, …), the reason in words and `details.retake`, how to retake it."""
    data = await read_limited(file, MAX_PHOTO_BYTES)
    found = await service(session, runtime).submit(
        actor,
        patient_id,
        data,
        view=view,
        consultation_id=consultation_id,
        training_consent=training_consent,
    )
    return report_read(found, actor.locale)


@router.get("/patients/{patient_id}/photos", response_model=list[SkinReportRead])
async def history(
    patient_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> list[SkinReportRead]:
    """The patient's photos and reports, oldest first: the acne trend."""
    rows = await service(session, runtime).history(actor, patient_id)
    return [report_read(found, actor.locale) for found in rows]


@router.get("/photos/{photo_id}", response_model=SkinReportRead)
async def get_report(
    photo_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> SkinReportRead:
    found = await service(session, runtime).get(actor, photo_id)
    return report_read(found, actor.locale, await _doctor_name(session, found))


def _jpeg(content: bytes) -> Response:
    return Response(
        content,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/photos/{photo_id}/image", response_class=Response)
async def photo_image(
    photo_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """The photo as stored (JPEG, without any metadata)."""
    return _jpeg(await service(session, runtime).image(actor, photo_id))


@router.get("/photos/{photo_id}/overlay", response_class=Response)
async def photo_overlay(
    photo_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """The photo with each lesion the AI found marked."""
    return _jpeg(await service(session, runtime).image(actor, photo_id, overlay=True))


@router.post("/photos/{photo_id}/reviews", response_model=ReviewRead, status_code=status.HTTP_201_CREATED)
async def review_photo(
    photo_id: IdPath, data: ReviewIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> ReviewRead:
    """A dermatologist confirms the grade, corrects the lesions and records a diagnosis."""
    review = await service(session, runtime).review(actor, photo_id, data)
    return review_read(review, actor.display_name)


@router.put("/photos/{photo_id}/consent", response_model=SkinReportRead)
async def set_consent(
    photo_id: IdPath, data: ConsentIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> SkinReportRead:
    """Give or withdraw consent to use this photo and its labels to improve the model."""
    svc = service(session, runtime)
    await svc.set_consent(actor, photo_id, data.training)
    return report_read(await svc.get(actor, photo_id), actor.locale)


@router.delete("/photos/{photo_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_photo(
    photo_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> None:
    await service(session, runtime).delete(actor, photo_id)


@router.put("/patients/{patient_id}/followup", response_model=FollowUpRead)
async def set_followup(
    patient_id: IdPath, data: FollowUpIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> FollowUpRead:
    """Schedule reminders to take comparable follow-up photos every `interval_days`."""
    plan = await service(session, runtime).set_followup(
        actor, patient_id, interval_days=data.interval_days, views=data.views, active=data.active
    )
    return followup_read(plan)


@router.get("/patients/{patient_id}/followup", response_model=FollowUpRead | None)
async def get_followup(
    patient_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> FollowUpRead | None:
    plan = await service(session, runtime).followup(actor, patient_id)
    return followup_read(plan) if plan else None
