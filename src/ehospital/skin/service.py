"""The skin hospital's use cases: analyse and keep a patient's photo, show their history, let a
dermatologist confirm or correct, schedule comparable follow-up photos, and collect consented
labels for retraining."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.auth.models import Account
from ehospital.config import Settings
from ehospital.consultations.models import Consultation
from ehospital.consultations.models import Status as ConsultationStatus
from ehospital.consultations.repository import ConsultationRepository
from ehospital.consultations.service import post_system_line
from ehospital.kit.context import Actor
from ehospital.kit.errors import Forbidden, NotFound, Unprocessable
from ehospital.kit.models import utcnow
from ehospital.kit.storage import FileStore
from ehospital.notifications.service import queue as queue_notification
from ehospital.patients.models import Patient
from ehospital.patients.repository import visible_patients
from ehospital.skin.analysis import Analysis, analyze
from ehospital.skin.model import LESION_TYPES, AcneModel
from ehospital.skin.quality import explain
from ehospital.skin.report import NOT_ASSESSABLE, lang_of, wording
from ehospital.skin.repository import SkinRepository
from ehospital.skin.schemas import ReviewIn
from ehospital.skin.storage import EncryptedFileStore
from ehospital.skin.tables import VIEWS, SkinAnalysis, SkinFollowUp, SkinPhoto, SkinReview

_STORES: dict[tuple[Path, Path], EncryptedFileStore] = {}


def photo_store(settings: Settings) -> EncryptedFileStore:
    """Where skin photos live: encrypted (AES-256-GCM) in their own directory (one store, and
    one key read, per data directory and process)."""
    where = (settings.data_dir.resolve(), settings.key_dir.resolve())
    store = _STORES.get(where)
    if store is None:
        store = _STORES.setdefault(where, EncryptedFileStore.from_settings(settings))
    return store


# Analyses at once per process: each uses the cores onnxruntime is given, so more only queue.
_SLOTS = asyncio.Semaphore(max(1, int(os.environ.get("EHOSPITAL_SKIN_CONCURRENCY", "2"))))


_VIEW_NAMES = {
    "zh": {"front": "正面", "left": "左侧", "right": "右侧", "other": "其他部位"},
    "en": {"front": "front", "left": "left side", "right": "right side", "other": "other"},
}


def _followup_text(lang: str, name: str, views: Sequence[str]) -> tuple[str, str]:
    shown = ("、" if lang == "zh" else ", ").join(_VIEW_NAMES[lang].get(v, v) for v in views)
    if lang == "zh":
        return (
            f"{name}：该拍痤疮复诊照片了",
            f"请在相同光线下，按上次相同的构图拍摄（{shown}）并上传，便于医生比较变化。",
        )
    return (
        f"{name}: time for acne follow-up photos",
        f"Please take them in the same light and framing as last time ({shown}) and upload them, "
        "so the change can be compared.",
    )


@dataclass(frozen=True)
class PhotoRecord:
    """A photo with its analysis and its reviews (newest first)."""

    photo: SkinPhoto
    analysis: SkinAnalysis | None
    reviews: list[SkinReview]


class PhotoRefused(Unprocessable):
    """A photo the checks refused: 422 with the reason's code, the words and how to retake."""


def refusal(analysis: Analysis, locale: str) -> PhotoRefused:
    code = analysis.reason or "photo_refused"
    lang = lang_of(locale)
    if code == "not_assessable":
        message, retake = NOT_ASSESSABLE[lang], explain(code, lang)[1]
    else:
        message, retake = explain(code, lang)
    details: dict[str, Any] = {"retake": retake, "quality": analysis.quality}
    if analysis.detail:
        details["detail"] = analysis.detail
    return PhotoRefused(message, code=code, **details)


async def run_analysis(data: bytes, model: AcneModel) -> Analysis:
    """The analysis in a worker thread, at most a few at once per process."""
    async with _SLOTS:
        return await asyncio.to_thread(analyze, data, model)


class SkinService:
    def __init__(self, session: AsyncSession, files: FileStore, model: AcneModel | None = None) -> None:
        self.session = session
        self.files = files
        self.repo = SkinRepository(session)
        self._model = model

    @property
    def model(self) -> AcneModel:
        if self._model is None:
            self._model = AcneModel.load()
        return self._model

    async def _patient(self, actor: Actor, patient_id: int) -> Patient:
        found = await self.session.scalar(visible_patients(actor).where(Patient.id == patient_id))
        if found is None:
            raise NotFound("no such patient", code="patient_not_found")
        return found

    # --- photos -----------------------------------------------------------------------------------

    async def submit(
        self,
        actor: Actor,
        patient_id: int,
        data: bytes,
        *,
        view: str = "front",
        consultation_id: int | None = None,
        training_consent: bool = False,
        analysis: Analysis | None = None,
    ) -> PhotoRecord:
        """Check and analyse a photo, then keep it (encrypted) with its report. A photo the
        checks refuse is not kept: 422 with the reason and how to retake."""
        if not (actor.is_patient or actor.is_practising_doctor):
            raise Forbidden("only patients and their doctors upload skin photos", code="upload_forbidden")
        if view not in VIEWS:
            raise Unprocessable(f"view must be one of {', '.join(VIEWS)}", code="invalid_view")
        patient = await self._patient(actor, patient_id)
        consultation = await self._consultation_of(actor, patient, consultation_id)
        if analysis is None:
            analysis = await run_analysis(data, self.model)
        if not analysis.ok:
            raise refusal(analysis, actor.locale)
        assert analysis.photo is not None and analysis.prediction is not None
        prediction = analysis.prediction
        with Image.open(io.BytesIO(analysis.photo.clean)) as stored:
            stored_width, stored_height = stored.size
        photo = SkinPhoto(
            patient_id=patient.id,
            uploaded_by=actor.account_id,
            consultation_id=consultation.id if consultation else None,
            view=view,
            storage_key=await asyncio.to_thread(self.files.put, analysis.photo.clean),
            overlay_key=(
                await asyncio.to_thread(self.files.put, analysis.overlay) if analysis.overlay else None
            ),
            sha256=analysis.photo.sha256,
            # The stored copy's size (upright, EXIF orientation applied): what lesion fractions
            # and the pages refer to.
            width=stored_width,
            height=stored_height,
            training_consent_at=utcnow() if training_consent else None,
        )
        self.repo.add(photo)
        await self.session.flush()
        result = SkinAnalysis(
            photo_id=photo.id,
            model_version=prediction.model_version,
            assessable=True,
            grade=prediction.grade,
            lesion_count=len(prediction.lesions),
            by_type=json.dumps({k: int(prediction.by_type.get(k, 0)) for k in LESION_TYPES}),
            lesions=json.dumps(analysis.lesions_normalised()),
            grade_probabilities=json.dumps([round(p, 4) for p in prediction.grade_probabilities]),
            ood_distance=float(prediction.ood_distance),
            quality=json.dumps(analysis.quality),
            referral=analysis.referral,
            elapsed_ms=round(analysis.elapsed_ms, 1),
        )
        self.repo.add(result)
        await self.session.flush()
        if consultation is not None:
            await self._post_to_consultation(consultation, photo, result)
        await self.move_due_after_upload(patient.id)
        record(self.session, actor, "create", "skin_photo", photo.id, patient_id=patient.id)
        return PhotoRecord(photo, result, [])

    async def _consultation_of(
        self, actor: Actor, patient: Patient, consultation_id: int | None
    ) -> Consultation | None:
        if consultation_id is None:
            return None
        consultation = await ConsultationRepository(self.session).visible(actor, consultation_id)
        if consultation is None or consultation.patient_id != patient.id:
            raise NotFound("no such consultation of this patient", code="consultation_not_found")
        if consultation.status in (
            ConsultationStatus.CANCELLED,
            ConsultationStatus.EXPIRED,
            ConsultationStatus.TERMINATED,
        ):
            raise Unprocessable("the consultation is closed", code="consultation_closed")
        return consultation

    async def _post_to_consultation(
        self, consultation: Consultation, photo: SkinPhoto, result: SkinAnalysis
    ) -> None:
        """A line in the consultation's chat pointing at the report, so the doctor sees it there."""
        words = wording(result.grade or 0, json.loads(result.by_type), "zh")
        body = json.dumps(
            {
                "skin_photo_id": photo.id,
                "grade": result.grade,
                "lesions": result.lesion_count,
                "text": f"AI 皮肤报告：痤疮{words['grade_name']}，{result.lesion_count} 个皮损 / "
                f"AI skin report: {['mild', 'moderate', 'severe', 'very severe'][result.grade or 0]} "
                f"acne, {result.lesion_count} lesions",
            },
            ensure_ascii=False,
        )
        await post_system_line(self.session, consultation.id, body)

    async def get(self, actor: Actor, photo_id: int) -> PhotoRecord:
        photo = await self.repo.photo(photo_id)
        if photo is None:
            raise NotFound("no such photo", code="photo_not_found")
        await self._patient(actor, photo.patient_id)  # 404 unless the caller may see the patient
        analysis = await self.repo.analysis_of(photo.id)
        reviews = (await self.repo.reviews_of([photo.id])).get(photo.id, [])
        record(self.session, actor, "read", "skin_photo", photo.id, patient_id=photo.patient_id)
        return PhotoRecord(photo, analysis, reviews)

    async def image(self, actor: Actor, photo_id: int, *, overlay: bool = False) -> bytes:
        found = await self.get(actor, photo_id)
        key = found.photo.overlay_key if overlay else found.photo.storage_key
        if key is None:
            raise NotFound("this photo has no overlay", code="overlay_not_found")
        return await asyncio.to_thread(self.files.get, key)

    async def history(self, actor: Actor, patient_id: int, limit: int = 200) -> list[PhotoRecord]:
        """The patient's photos, oldest first, each with its analysis and latest review."""
        patient = await self._patient(actor, patient_id)
        rows = await self.repo.newest_photos(patient.id, limit)
        reviews = await self.repo.reviews_of([photo.id for photo, _ in rows])
        record(self.session, actor, "read", "skin_photo", None, patient_id=patient.id)
        return [PhotoRecord(photo, analysis, reviews.get(photo.id, [])) for photo, analysis in reversed(rows)]

    async def set_consent(self, actor: Actor, photo_id: int, consent: bool) -> SkinPhoto:
        """The patient's account gives or withdraws consent to use the photo for model training."""
        found = await self.get(actor, photo_id)
        if not actor.is_patient:
            raise Forbidden("only the patient's account decides on consent", code="not_the_patient")
        photo = found.photo
        if consent and photo.training_consent_at is None:
            photo.training_consent_at = utcnow()
        elif not consent:
            photo.training_consent_at = None
        record(self.session, actor, "consent" if consent else "withdraw", "skin_photo", photo.id)
        return photo

    async def delete(self, actor: Actor, photo_id: int) -> None:
        """The patient's account removes a photo: the files go, the row stays marked deleted."""
        found = await self.get(actor, photo_id)
        if not actor.is_patient:
            raise Forbidden("only the patient's account deletes its photos", code="not_the_patient")
        photo = found.photo
        photo.deleted_at = utcnow()
        photo.training_consent_at = None
        for key in (photo.storage_key, photo.overlay_key):
            if key:
                await asyncio.to_thread(self.files.delete, key)
        record(self.session, actor, "delete", "skin_photo", photo.id, patient_id=photo.patient_id)

    # --- the dermatologist ------------------------------------------------------------------------

    async def review(self, actor: Actor, photo_id: int, data: ReviewIn) -> SkinReview:
        """A dermatologist who has seen the patient confirms or corrects the AI's reading, and may
        ask for comparable photos of the same view every `followup_days`."""
        if not actor.is_practising_doctor or actor.doctor_id is None:
            raise Forbidden("only the patient's doctors review skin photos", code="not_a_doctor")
        found = await self.get(actor, photo_id)
        photo = found.photo
        if data.consultation_id is not None:
            patient = await self._patient(actor, photo.patient_id)
            await self._consultation_of(actor, patient, data.consultation_id)
        lesions = None
        if data.lesions is not None:
            lesions = json.dumps(
                [[round(le.x, 5), round(le.y, 5), round(le.radius, 5), le.kind] for le in data.lesions]
            )
        review = SkinReview(
            photo_id=photo.id,
            doctor_id=actor.doctor_id,
            consultation_id=data.consultation_id or photo.consultation_id,
            confirmed_grade=data.confirmed_grade,
            lesions=lesions,
            diagnosis_code=data.diagnosis_code,
            diagnosis_text=data.diagnosis_text,
            notes=data.notes,
        )
        self.repo.add(review)
        await self.session.flush()
        record(self.session, actor, "create", "skin_review", review.id, patient_id=photo.patient_id)
        if data.followup_days is not None:
            await self.set_followup(
                actor, photo.patient_id, interval_days=data.followup_days, views=[photo.view]
            )
        return review

    # --- follow-up --------------------------------------------------------------------------------

    async def set_followup(
        self, actor: Actor, patient_id: int, *, interval_days: int, views: Sequence[str], active: bool = True
    ) -> SkinFollowUp:
        """When to take the next comparable photos; set by the patient's account or their doctor."""
        patient = await self._patient(actor, patient_id)
        bad = [v for v in views if v not in VIEWS]
        if bad or not views:
            raise Unprocessable(f"views must be some of {', '.join(VIEWS)}", code="invalid_view")
        plan = await self.repo.followup_of(patient.id)
        now = utcnow()
        last = await self.repo.last_photo_at(patient.id)
        due = (last or now) + timedelta(days=interval_days)
        if plan is None:
            plan = SkinFollowUp(patient_id=patient.id, set_by=actor.account_id, interval_days=interval_days)
            self.repo.add(plan)
        plan.set_by = actor.account_id
        plan.interval_days = interval_days
        plan.views = ",".join(dict.fromkeys(views))
        plan.next_due_at = max(due, now)
        plan.active = active
        await self.session.flush()
        record(self.session, actor, "update", "skin_followup", plan.id, patient_id=patient.id)
        return plan

    async def followup(self, actor: Actor, patient_id: int) -> SkinFollowUp | None:
        patient = await self._patient(actor, patient_id)
        return await self.repo.followup_of(patient.id)

    async def remind_due(self, now: datetime | None = None) -> int:
        """Queue a reminder for every follow-up that is due and not yet reminded; the next one
        is due an interval later. Rows are claimed with SKIP LOCKED on PostgreSQL."""
        now = now or utcnow()
        plans = await self.repo.due_followups(now)
        for plan in plans:
            patient = await self.session.get(Patient, plan.patient_id)
            account = await self.session.get(Account, patient.account_id) if patient else None
            if patient is None or account is None:
                continue
            title, body = _followup_text(lang_of(account.locale), patient.name, plan.views.split(","))
            queue_notification(
                self.session,
                account_id=patient.account_id,
                patient_id=patient.id,
                kind="skin",
                code="skin_followup_due",
                subject_id=plan.id,
                title=title,
                body=body,
                now=now,
            )
            plan.last_reminded_at = now
            plan.next_due_at = now + timedelta(days=plan.interval_days)
        await self.session.flush()
        return len(plans)

    async def move_due_after_upload(self, patient_id: int) -> None:
        """A new photo restarts the follow-up interval."""
        plan = await self.repo.followup_of(patient_id)
        if plan is not None and plan.active:
            plan.next_due_at = utcnow() + timedelta(days=plan.interval_days)
