"""The follow-up consultation lifecycle: rules only, no web framework."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.auth.models import Account, Role
from ehospital.config import Settings
from ehospital.consultations.models import (
    CHATTING_STATUSES,
    EXPIRED_REASON,
    OPEN_STATUSES,
    Attachment,
    Call,
    Consultation,
    Message,
    Status,
)
from ehospital.consultations.repository import ConsultationRepository
from ehospital.consultations.schemas import (
    AttachmentRead,
    CallConfig,
    CallRead,
    ConsultationCreate,
    ConsultationRead,
    DiagnosisIn,
    IceServer,
    MessageCreate,
    MessageRead,
    PatientBrief,
    QueueItem,
    ReadMarkRead,
    TerminateIn,
    WaitRead,
)
from ehospital.directory.models import Doctor
from ehospital.directory.repository import DirectoryRepository
from ehospital.kit.context import Actor
from ehospital.kit.errors import Conflict, Forbidden, NotFound, Unprocessable
from ehospital.kit.images import clean_upload
from ehospital.kit.models import utcnow
from ehospital.kit.storage import FileStore
from ehospital.kit.txn import after_commit
from ehospital.notifications.service import queue as queue_notification
from ehospital.patients.models import Patient
from ehospital.patients.repository import PatientRepository
from ehospital.patients.service import age_on
from ehospital.realtime.hub import publish_after_commit

MAX_EVIDENCE = 9


HOSPITAL_ZONE = ZoneInfo("Asia/Shanghai")  # rosters are in the hospital's local time

# What the promises tell doctors (in-app): code → language → (title, body with {id}, {minutes}).
DOCTOR_NOTES: dict[str, dict[str, tuple[str, str]]] = {
    "consultation_waiting": {
        "zh": ("新的问诊待接", "问诊 #{id} 等待接诊，本中心承诺 {minutes} 分钟内首次回复。"),
        "en": (
            "A new consultation is waiting",
            "Consultation #{id} is waiting; the centre promises a first answer within {minutes} minutes.",
        ),
    },
    "consultation_late": {
        "zh": ("超时待接问诊", "问诊 #{id} 的首次回复已超时，可接手。"),
        "en": (
            "A late consultation is waiting",
            "Consultation #{id} has had no answer in time; you may take it over.",
        ),
    },
    "consultation_overdue": {
        "zh": ("问诊已超过结束时限", "问诊 #{id} 已超过本中心承诺的结束时间，请尽快完成诊断与小结或转诊。"),
        "en": (
            "A consultation is past its close promise",
            "Consultation #{id} is past the centre's close promise: please complete it (diagnosis and "
            "summary) or refer the patient.",
        ),
    },
}


def _not_found() -> NotFound:
    return NotFound("no such consultation", code="consultation_not_found")


class ConsultationService:
    def __init__(self, session: AsyncSession, settings: Settings, files: FileStore) -> None:
        self.session = session
        self.settings = settings
        self.files = files
        self.repo = ConsultationRepository(session)
        self.directory = DirectoryRepository(session)
        self.patients = PatientRepository(session)

    # --- uploads ----------------------------------------------------------------------------
    async def upload(
        self, actor: Actor, *, filename: str, declared_type: str | None, data: bytes, purpose: str
    ) -> Attachment:
        """Check and store a file (type sniffed from the bytes, metadata stripped)."""
        if actor.role not in (Role.PATIENT, Role.DOCTOR):
            raise Forbidden("only patients and doctors upload files", code="upload_forbidden")
        clean = clean_upload(
            data,
            max_bytes=self.settings.upload_max_bytes,
            max_pixels=self.settings.upload_max_pixels,
            declared_type=declared_type,
            allow_pdf=purpose == "evidence",
        )
        key = self.files.put(clean.content)
        attachment = Attachment(
            consultation_id=None,
            uploader_id=actor.account_id,
            purpose=purpose,
            filename=(filename or "upload")[-200:],
            content_type=clean.content_type,
            size=len(clean.content),
            sha256=hashlib.sha256(clean.content).hexdigest(),
            storage_key=key,
            width=clean.width,
            height=clean.height,
        )
        self.repo.add(attachment)
        await self.session.flush()
        record(self.session, actor, "upload", "attachment", attachment.id)
        return attachment

    async def read_attachment(self, actor: Actor, attachment_id: int) -> tuple[Attachment, bytes]:
        found = await self.repo.attachment_for(actor, attachment_id)
        if found is None:
            raise NotFound("no such file", code="attachment_not_found")
        attachment, patient_id = found
        record(self.session, actor, "read", "attachment", attachment.id, patient_id=patient_id)
        return attachment, self.files.get(attachment.storage_key)

    # --- opening ----------------------------------------------------------------------------
    async def open(self, actor: Actor, data: ConsultationCreate) -> Consultation:
        """A patient account asks for a follow-up visit for one of its family members."""
        if not actor.is_patient:
            raise Forbidden("only patient accounts open consultations", code="not_a_patient_account")
        if data.visit_type == "first":
            raise Unprocessable(
                "online consultations are for follow-up visits of a disease already diagnosed "
                "offline; please see a doctor in person for a first visit",
                code="first_visit_not_allowed",
            )
        patient = await self.patients.visible(actor, data.patient_id)
        if patient is None or patient.archived_at is not None:
            raise NotFound("no such patient", code="patient_not_found")
        centre = await self.directory.centre(data.centre_id)
        if centre is None or not centre.is_active:
            raise Unprocessable("no such centre", code="centre_not_found")
        if data.clinic_id is not None:
            clinic = await self.directory.clinic(data.clinic_id)
            if clinic is None or clinic.centre_id != centre.id or not clinic.is_active:
                raise Unprocessable("the clinic is not part of the centre", code="clinic_not_in_centre")
        price = await self._price(data)
        if not data.evidence_ids:
            raise Unprocessable(
                "attach at least one document or photo of the prior diagnosis",
                code="evidence_required",
            )
        ids = sorted(set(data.evidence_ids))
        uploads = await self.repo.uploads_of(actor.account_id, ids)
        if len(uploads) != len(ids):
            missing = sorted(set(ids) - {u.id for u in uploads})
            raise Unprocessable("unknown or already used uploads", code="evidence_not_found", ids=missing)
        if await self.repo.open_for_patient_in_centre(patient.id, centre.id) is not None:
            raise Conflict(
                "this patient already has an open consultation in this centre",
                code="open_consultation_exists",
            )
        now = utcnow()
        consultation = Consultation(
            patient_id=patient.id,
            account_id=actor.account_id,
            centre_id=centre.id,
            clinic_id=data.clinic_id,
            doctor_id=data.doctor_id,
            status=Status.REQUESTED,
            complaint=data.complaint,
            prior_diagnosis=data.prior_diagnosis,
            prior_institution=data.prior_institution,
            price_cents=price,
            expires_at=now + timedelta(hours=self.settings.consultation_accept_hours),
            first_response_due_at=now + timedelta(minutes=centre.first_response_minutes),
            last_seq=0,
        )
        self.repo.add(consultation)
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a parallel request opened one a moment ago
            raise Conflict(
                "this patient already has an open consultation in this centre",
                code="open_consultation_exists",
            ) from exc
        # Claimed in one UPDATE that re-checks they are still unused (parallel requests).
        if await self.repo.claim_uploads(actor.account_id, ids, consultation.id, "evidence") != len(ids):
            raise Unprocessable("unknown or already used uploads", code="evidence_not_found", ids=ids)
        self._audit(actor, "create", consultation)
        await self._offer(consultation, now, late=False)
        return consultation

    async def _price(self, data: ConsultationCreate) -> int:
        if data.doctor_id is None:
            return await self.directory.lowest_price(data.centre_id)
        doctor = await self.directory.doctor(data.doctor_id)
        if doctor is None or doctor.verified_at is None or doctor.centre_id != data.centre_id:
            raise Unprocessable("the doctor does not consult in this centre", code="doctor_not_in_centre")
        if data.clinic_id is not None and doctor.clinic_id not in (None, data.clinic_id):
            raise Unprocessable("the doctor does not consult in this clinic", code="doctor_not_in_clinic")
        return doctor.price_cents

    # --- reading ----------------------------------------------------------------------------
    async def get(self, actor: Actor, consultation_id: int) -> Consultation:
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        await self._expire_if_due(consultation)
        self._audit(actor, "read", consultation)
        return consultation

    async def read(self, actor: Actor, consultation_id: int) -> ConsultationRead:
        return await self.describe(await self.get(actor, consultation_id))

    async def describe(self, consultation: Consultation) -> ConsultationRead:
        """The full view of a consultation the caller was already allowed to act on."""
        patient = await self.session.get(Patient, consultation.patient_id)
        doctor = await self.directory.doctor(consultation.doctor_id) if consultation.doctor_id else None
        assert patient is not None
        evidence = await self.repo.attachments(consultation.id, "evidence")
        return _to_read(consultation, patient, doctor.name if doctor else None, evidence)

    async def list_for(
        self, actor: Actor, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[ConsultationRead]:
        rows = await self.repo.list_visible(actor, status=status, limit=limit, offset=offset)
        record(self.session, actor, "list", "consultation", None)
        return [_to_read(c, p, doctor_name, []) for c, p, doctor_name in rows]

    async def queue(self, actor: Actor, limit: int = 50) -> list[QueueItem]:
        """The centre's waiting consultations, oldest first, for its doctors."""
        doctor = self._require_doctor(actor)
        rows = await self.repo.queue(doctor, utcnow(), limit, actor.doctor_id)
        today = date.today()
        record(self.session, actor, "list", "queue", doctor)
        return [
            QueueItem(
                id=c.id,
                centre_id=c.centre_id,
                clinic_id=c.clinic_id,
                patient_initial=p.name[:1] + "*",
                patient_sex=p.sex,
                patient_age=age_on(p.birth_date, today),
                complaint=c.complaint,
                prior_diagnosis=c.prior_diagnosis,
                created_at=c.created_at,
                expires_at=c.expires_at,
                evidence_count=n,
                late=c.late_at is not None,
            )
            for c, p, n in rows
        ]

    def _require_doctor(self, actor: Actor) -> int:
        """The doctor's centre id; refuses non-doctors and doctors not (or no longer) verified."""
        if not actor.is_doctor or actor.doctor_centre_id is None:
            raise Forbidden("only doctors do this", code="not_a_doctor")
        if not actor.doctor_verified:
            raise Forbidden(
                "your licence has not been verified by an administrator yet", code="doctor_not_verified"
            )
        return actor.doctor_centre_id

    # --- the doctor's side ------------------------------------------------------------------
    async def accept(self, actor: Actor, consultation_id: int) -> Consultation:
        """Take a consultation from the centre queue, or one the patient addressed to me."""
        centre_id = self._require_doctor(actor)
        assert actor.doctor_id is not None
        consultation = await self.repo.visible(actor, consultation_id) or await self.repo.in_queue_of(
            centre_id, consultation_id
        )
        if consultation is None:
            late = await self.repo.late_offer_in(centre_id, consultation_id)
            if late is None:
                raise _not_found()
            return await self._take_over(actor, late)
        if await self._expire_if_due(consultation):
            raise Conflict("the consultation expired before anyone accepted it", code="consultation_expired")
        if consultation.status != Status.REQUESTED:
            raise Conflict(f"the consultation is {consultation.status}", code="invalid_state")
        doctor = await self._doctor_with_room(actor)
        now = utcnow()
        if not await self.repo.claim(consultation.id, doctor.id, now):
            raise Conflict("another doctor accepted this consultation", code="already_accepted")
        await self._promise_close(consultation.id, consultation.centre_id, now)
        await self.session.refresh(consultation)
        await self._event(consultation, f"accepted by {doctor.name}")
        self._audit(actor, "accept", consultation)
        return consultation

    async def _take_over(self, actor: Actor, consultation: Consultation) -> Consultation:
        """Another doctor of the centre takes a consultation whose first answer is late."""
        doctor = await self._doctor_with_room(actor)
        centre = await self.directory.centre(consultation.centre_id)
        now = utcnow()
        due = now + timedelta(minutes=centre.first_response_minutes if centre else 10)
        if not await self.repo.take_over(consultation.id, doctor.id, now, due):
            raise Conflict("another doctor took this consultation", code="already_accepted")
        await self._promise_close(consultation.id, consultation.centre_id, now)
        await self.session.refresh(consultation)
        await self._event(consultation, f"taken over by {doctor.name}")
        self._audit(actor, "accept", consultation)
        return consultation

    async def _doctor_with_room(self, actor: Actor) -> Doctor:
        """The acting doctor, locked (two accepts of one doctor at once cannot both pass), when
        below their limit of concurrent consultations."""
        assert actor.doctor_id is not None
        doctor = await self.directory.doctor_for_update(actor.doctor_id)
        assert doctor is not None
        if await self.repo.active_count(doctor.id) >= doctor.max_concurrent:
            raise Conflict(
                f"you already have {doctor.max_concurrent} active consultations", code="doctor_at_capacity"
            )
        return doctor

    async def _promise_close(self, consultation_id: int, centre_id: int, now: datetime) -> None:
        centre = await self.directory.centre(centre_id)
        await self.repo.set_close_due(
            consultation_id, now + timedelta(hours=centre.close_within_hours if centre else 24)
        )

    async def sweep_overdue(self, now: datetime | None = None) -> list[int]:
        """Mark accepted consultations past the centre's close promise (stored deadline): a line
        in the chat and an in-app reminder to the doctor to finish (diagnosis and summary) or
        refer. Nothing is closed automatically: ending a consultation is the doctor's decision."""
        now = now or utcnow()
        marked = []
        for consultation in await self.repo.due_overdue(now):
            consultation.overdue_at = now
            await self._event(consultation, "the consultation is past its close promise")
            doctor = await self.directory.doctor(consultation.doctor_id) if consultation.doctor_id else None
            if doctor is not None:
                await self._tell_doctor(doctor, "consultation_overdue", consultation.id, now)
            marked.append(consultation.id)
        return marked

    async def sweep_late(self, now: datetime | None = None) -> list[int]:
        """Mark consultations whose first answer is past the centre's promise (run periodically;
        the deadline is stored, so a restart loses nothing): the patient is told and may cancel
        for a full refund, and an accepted one is offered to the centre's other doctors."""
        now = now or utcnow()
        marked = []
        for consultation in await self.repo.due_late(now):
            consultation.late_at = now
            await self._event(consultation, "the first answer is late")
            if consultation.doctor_id is not None:
                await self._offer(consultation, now, late=True)
            marked.append(consultation.id)
        return marked

    async def wait(self, actor: Actor, consultation_id: int, now: datetime | None = None) -> WaitRead:
        """The patient's place in the queue and an estimate of the wait."""
        now = now or utcnow()
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        status = Status(consultation.status)
        answered = consultation.first_response_at is not None
        position = None
        if status is Status.REQUESTED:
            position = await self.repo.waiting_ahead(consultation) + 1
        on_duty = len(await self._free_on_duty(consultation, now))
        estimate = None
        if status is Status.REQUESTED and on_duty:
            recent = await self.repo.recent_accept_minutes(consultation.centre_id, now - timedelta(days=7))
            centre = await self.directory.centre(consultation.centre_id)
            typical = (
                statistics.median(recent) if recent else (centre.first_response_minutes if centre else 10) / 2
            )
            estimate = max(1, math.ceil((position or 1) / on_duty * typical))
        return WaitRead(
            status=status,
            position=position,
            doctors_on_duty=on_duty,
            estimated_wait_minutes=estimate,
            first_response_due_at=consultation.first_response_due_at,
            late=consultation.late_at is not None and not answered,
            can_cancel_for_refund=actor.is_patient and status in (Status.REQUESTED, Status.ACCEPTED),
        )

    async def _free_on_duty(
        self, consultation: Consultation, now: datetime, *, anyone_but_named: bool = False
    ) -> list[Doctor]:
        """Verified doctors of the queue (the centre's, or the one named; with `anyone_but_named`
        the centre's others) on the roster now and below their limit of concurrent consultations."""
        local = now.astimezone(HOSPITAL_ZONE)
        doctors = await self.directory.doctors(
            centre_id=consultation.centre_id, clinic_id=None, verified_only=True
        )
        if anyone_but_named:
            doctors = [d for d in doctors if d.id != consultation.doctor_id]
        elif consultation.doctor_id is not None:
            doctors = [d for d in doctors if d.id == consultation.doctor_id]
        slots = await self.directory.roster([d.id for d in doctors])
        on_roster = {
            slot.doctor_id
            for slot in slots
            if slot.weekday == local.weekday() and slot.starts <= local.time() < slot.ends
        }
        rostered = [d for d in doctors if d.id in on_roster]
        active = await self.repo.active_counts([d.id for d in rostered])
        return [d for d in rostered if active.get(d.id, 0) < d.max_concurrent]

    async def _offer(self, consultation: Consultation, now: datetime, *, late: bool) -> int:
        """Tell the doctors on duty with room for one more that a consultation waits: a new
        request of the centre queue (or to the doctor named), or a late one, offered to the
        centre's other doctors. Returns how many were told."""
        doctors = await self._free_on_duty(consultation, now, anyone_but_named=late)
        centre = await self.directory.centre(consultation.centre_id)
        minutes = centre.first_response_minutes if centre else 10
        code = "consultation_late" if late else "consultation_waiting"
        for doctor in doctors:
            await self._tell_doctor(doctor, code, consultation.id, now, minutes=minutes)
        return len(doctors)

    async def _tell_doctor(
        self, doctor: Doctor, code: str, consultation_id: int, now: datetime, **fields: object
    ) -> None:
        """An in-app notification to a doctor, in the language of their account."""
        account = await self.session.get(Account, doctor.account_id)
        lang = "zh" if account is None or account.locale.startswith("zh") else "en"
        title, body = DOCTOR_NOTES[code][lang]
        queue_notification(
            self.session,
            account_id=doctor.account_id,
            patient_id=None,
            kind="reminder",
            code=code,
            subject_id=consultation_id,
            title=title,
            body=body.format(id=consultation_id, **fields),
            now=now,
        )

    async def diagnose(self, actor: Actor, consultation_id: int, data: DiagnosisIn) -> Consultation:
        """Record the doctor's diagnosis (ICD-10) and, optionally, a summary."""
        consultation = await self._mine_as_doctor(actor, consultation_id, CHATTING_STATUSES)
        consultation.diagnosis_code = data.code
        consultation.diagnosis_text = data.text
        if data.summary is not None:
            consultation.summary = data.summary
        await self._event(consultation, f"diagnosis {data.code} {data.text}")
        self._audit(actor, "diagnose", consultation)
        return consultation

    async def complete(self, actor: Actor, consultation_id: int, summary: str) -> Consultation:
        """Close a consultation once the doctor has answered personally and diagnosed."""
        consultation = await self._mine_as_doctor(actor, consultation_id, CHATTING_STATUSES)
        if not consultation.diagnosis_code:
            raise Unprocessable("record a diagnosis before completing", code="diagnosis_required")
        if not await self.repo.has_doctor_message(consultation.id):
            raise Unprocessable(
                "answer the patient at least once before completing", code="doctor_reply_required"
            )
        consultation.summary = summary
        consultation.status = Status.COMPLETED
        consultation.ended_at = utcnow()
        await self._event(consultation, "completed")
        self._audit(actor, "complete", consultation)
        return consultation

    async def terminate(self, actor: Actor, consultation_id: int, data: TerminateIn) -> Consultation:
        """End online care and refer the patient to a physical hospital."""
        consultation = await self._mine_as_doctor(actor, consultation_id, CHATTING_STATUSES)
        consultation.status = Status.TERMINATED
        consultation.ended_at = utcnow()
        consultation.end_reason = data.reason
        consultation.referral_to = data.referral_to
        await self._event(consultation, f"terminated and referred to {data.referral_to}: {data.reason}")
        self._audit(actor, "terminate", consultation)
        return consultation

    async def _mine_as_doctor(
        self, actor: Actor, consultation_id: int, statuses: frozenset[Status]
    ) -> Consultation:
        self._require_doctor(actor)
        consultation = await self.repo.visible(actor, consultation_id, lock=True)
        if consultation is None:
            raise _not_found()
        if consultation.status not in statuses:
            raise Conflict(f"the consultation is {consultation.status}", code="invalid_state")
        return consultation

    # --- the patient's side -----------------------------------------------------------------
    async def cancel(self, actor: Actor, consultation_id: int, reason: str) -> Consultation:
        """The patient withdraws a consultation no doctor has answered yet."""
        if not actor.is_patient:
            raise _not_found()
        consultation = await self.repo.visible(actor, consultation_id, lock=True)
        if consultation is None:
            raise _not_found()
        if consultation.status not in (Status.REQUESTED, Status.ACCEPTED):
            raise Conflict(
                f"a consultation that is {consultation.status} cannot be cancelled",
                code="invalid_state",
            )
        now = utcnow()
        consultation.status = Status.CANCELLED
        consultation.ended_at = now
        consultation.end_reason = reason or "cancelled by the patient"
        # No doctor has answered yet (that is when a patient may cancel): the fee comes back in full.
        consultation.refund_cents = consultation.price_cents
        consultation.refunded_at = now
        consultation.refund_reason = "late_first_response" if consultation.late_at else "cancelled"
        await self._event(consultation, "cancelled by the patient")
        self._audit(actor, "cancel", consultation)
        return consultation

    # --- messages ---------------------------------------------------------------------------
    async def post_message(self, actor: Actor, consultation_id: int, data: MessageCreate) -> Message:
        """Append a message (text and/or an image) to an open consultation.

        With a `client_id` the sender already used in this consultation, the stored message is
        returned instead of a second copy (a client resending after a lost acknowledgement).
        """
        message, _ = await self.post_message_once(actor, consultation_id, data)
        return message

    async def post_message_once(
        self, actor: Actor, consultation_id: int, data: MessageCreate, *, look_first: bool = True
    ) -> tuple[Message, bool]:
        """(the message, whether it was stored now): False for a repeated `client_id`.

        `look_first=False` skips the look-up of the `client_id` (one round trip on the chat hot
        path): a repeat then fails on the unique index with IntegrityError, and the caller, who
        owns the transaction, rolls back and asks again with the look-up.
        """
        if not data.body and data.attachment_id is None:
            raise Unprocessable("a message needs text or an image", code="empty_message")
        allowed = CHATTING_STATUSES if actor.is_practising_doctor else OPEN_STATUSES
        if not (actor.is_patient or actor.is_practising_doctor):
            raise _not_found()
        if data.client_id is not None and look_first:
            earlier = await self.repo.message_by_client_id(consultation_id, actor.account_id, data.client_id)
            if earlier is not None:
                return earlier, False
        message = await self._store_message(actor, consultation_id, data, allowed)
        self._publish(message)
        return message, True

    async def _store_message(
        self, actor: Actor, consultation_id: int, data: MessageCreate, allowed: frozenset[Status]
    ) -> Message:
        if data.attachment_id is None and self.session.get_bind().dialect.name == "postgresql":
            fast = await self.repo.post_text_pg(actor, consultation_id, allowed, data.body, data.client_id)
            if fast is not None:
                message, status = fast
                if actor.is_doctor and status == Status.ACCEPTED:
                    await self.repo.mark_started(consultation_id, utcnow())
                return message
            return await self._refuse_message(actor, consultation_id)
        # Checks who may write, that it is open, and numbers the message: one statement.
        taken = await self.repo.take_seq(actor, consultation_id, allowed)
        if taken is None:
            return await self._refuse_message(actor, consultation_id)
        seq, status, patient_id = taken
        kind = "text"
        if data.attachment_id is not None:
            uploads = await self.repo.uploads_of(actor.account_id, [data.attachment_id])
            if (
                not uploads
                or not uploads[0].content_type.startswith("image/")
                or not await self.repo.claim_uploads(
                    actor.account_id, [data.attachment_id], consultation_id, "message"
                )
            ):
                raise Unprocessable("unknown or already used image upload", code="attachment_not_found")
            kind = "image"
        if actor.is_doctor and status == Status.ACCEPTED:
            await self.repo.mark_started(consultation_id, utcnow())
        message = await self.repo.insert_message(
            consultation_id=consultation_id,
            seq=seq,
            sender_id=actor.account_id,
            sender_role=str(actor.role),
            kind=kind,
            body=data.body,
            attachment_id=data.attachment_id,
            client_id=data.client_id,
        )
        record(self.session, actor, "create", "message", message.id, patient_id=patient_id)
        return message

    def _publish(self, message: Message) -> None:
        """Hand the message to live chat once it is committed."""
        publish_after_commit(self.session, message.consultation_id, lambda: message_event(message))

    async def mark_read(self, actor: Actor, consultation_id: int, seq: int) -> ReadMarkRead:
        """Record that the actor has read the chat up to `seq`; tells the other side live."""
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        seq = min(seq, consultation.last_seq)
        now = utcnow()
        stored = await self.repo.mark_read(consultation.id, actor.account_id, seq, now)
        account_id, role = actor.account_id, str(actor.role)
        publish_after_commit(
            self.session,
            consultation.id,
            lambda: {
                "type": "read",
                "consultation_id": consultation_id,
                "account_id": account_id,
                "role": role,
                "seq": stored,
            },
        )
        return ReadMarkRead(account_id=account_id, role=role, seq=stored, read_at=now)

    async def read_marks(self, actor: Actor, consultation_id: int) -> list[ReadMarkRead]:
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        return [
            ReadMarkRead(account_id=mark.account_id, role=role, seq=mark.seq, read_at=mark.read_at)
            for mark, role in await self.repo.read_marks(consultation.id)
        ]

    async def _refuse_message(self, actor: Actor, consultation_id: int) -> Message:
        """Why a message could not be added: not theirs (404) or not open (409)."""
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        raise Conflict(f"the consultation is {consultation.status}", code="consultation_closed")

    async def messages(
        self, actor: Actor, consultation_id: int, *, after_seq: int = 0, limit: int = 100
    ) -> list[Message]:
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        found = list(await self.repo.messages(consultation.id, after_seq, limit))
        # A poll that finds nothing new has read nothing: no audit row every few seconds for
        # an open chat page. Every read that returns messages is recorded.
        if found or after_seq == 0:
            record(
                self.session, actor, "list", "message", consultation.id, patient_id=consultation.patient_id
            )
        return found

    # --- video calls (WebRTC; the server only rings, relays signals and keeps the record) ------
    def call_config(self) -> CallConfig:
        servers = []
        for entry in self.settings.ice_servers:
            urls = entry.get("urls", [])
            servers.append(
                IceServer(
                    urls=[urls] if isinstance(urls, str) else list(urls),
                    username=entry.get("username"),
                    credential=entry.get("credential"),
                )
            )
        return CallConfig(ice_servers=servers)

    async def start_call(self, actor: Actor, consultation_id: int) -> Call:
        """The doctor rings the patient; one call at a time per consultation."""
        if not actor.is_practising_doctor:
            raise Forbidden("only the consultation's doctor starts a video call", code="wrong_role")
        consultation = await self.repo.visible(actor, consultation_id, lock=True)
        if consultation is None:
            raise _not_found()
        if consultation.status not in CHATTING_STATUSES:
            raise Conflict(f"the consultation is {consultation.status}", code="consultation_closed")
        if await self.repo.open_call(consultation.id) is not None:
            raise Conflict("a video call is already going on", code="call_in_progress")
        call = Call(consultation_id=consultation.id, started_by=actor.account_id)
        self.repo.add(call)
        await self.session.flush()
        await self._event(consultation, "video call started")
        self._audit(actor, "call", consultation)
        self._publish_call(call, "ring")
        return call

    async def call_connected(self, actor: Actor, consultation_id: int, call_id: int) -> Call:
        """A browser reports the media connection is up (the first report counts)."""
        call = await self._my_call(actor, consultation_id, call_id)
        if call.ended_at is not None:
            raise Conflict("the call has ended", code="call_ended")
        if call.connected_at is None:
            call.connected_at = utcnow()
            self._publish_call(call, "connected")
        return call

    async def end_call(self, actor: Actor, consultation_id: int, call_id: int, reason: str) -> Call:
        """Hang up (either side); records the end and how long the call was connected."""
        call = await self._my_call(actor, consultation_id, call_id)
        if call.ended_at is not None:
            return call  # both sides hang up at once: the first one is recorded
        now = utcnow()
        call.ended_at = now
        call.ended_by = actor.account_id
        call.end_reason = reason
        call.duration_seconds = (
            0 if call.connected_at is None else max(0, round((now - call.connected_at).total_seconds()))
        )
        consultation = await self.repo.get(consultation_id)
        assert consultation is not None
        minutes, seconds = divmod(call.duration_seconds, 60)
        await self._event(consultation, f"video call ended after {minutes}:{seconds:02d}")
        self._publish_call(call, "ended")
        return call

    async def calls(self, actor: Actor, consultation_id: int) -> list[CallRead]:
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        return [CallRead.model_validate(c) for c in await self.repo.calls(consultation.id)]

    async def _my_call(self, actor: Actor, consultation_id: int, call_id: int) -> Call:
        consultation = await self.repo.visible(actor, consultation_id)
        if consultation is None:
            raise _not_found()
        call = await self.repo.call(consultation.id, call_id, lock=True)
        if call is None:
            raise NotFound("no such call in this consultation", code="call_not_found")
        return call

    def _publish_call(self, call: Call, event: str) -> None:
        publish_after_commit(
            self.session,
            call.consultation_id,
            lambda: {
                "type": "call",
                "event": event,
                "consultation_id": call.consultation_id,
                "call": CallRead.model_validate(call).model_dump(mode="json"),
            },
        )

    def _audit(self, actor: Actor, action: str, consultation: Consultation) -> None:
        record(
            self.session, actor, action, "consultation", consultation.id, patient_id=consultation.patient_id
        )

    async def _event(self, consultation: Consultation, text: str) -> None:
        """A system line in the chat, so both sides see each change of state in order."""
        await post_system_line(self.session, consultation.id, text)

    async def _expire_if_due(self, consultation: Consultation) -> bool:
        if consultation.status == Status.REQUESTED and consultation.expires_at <= utcnow():
            consultation.status = Status.EXPIRED
            consultation.ended_at = utcnow()
            consultation.end_reason = EXPIRED_REASON
            return True
        return False

    async def sweep_uploads(self, max_age_hours: float = 24.0) -> tuple[int, int]:
        """Remove what was uploaded but never became part of a record.

        Uploads never attached to a consultation within `max_age_hours`, and files left on disk
        by requests that failed after storing them. Attached files are clinical records and
        are never removed. Returns (upload rows removed, files removed).
        """
        before = utcnow() - timedelta(hours=max_age_hours)
        removed_rows = await self.repo.delete_unattached_before(before)
        await self.session.flush()
        orphans = list(self.files.keys_older_than(max_age_hours * 3600))
        known: set[str] = set()
        for start in range(0, len(orphans), 500):
            known |= await self.repo.known_keys(orphans[start : start + 500])
        doomed = set(removed_rows) | (set(orphans) - known)

        # Files go only once the rows' removal is committed (a rollback keeps both).
        def remove_files() -> None:
            for key in doomed:
                self.files.delete(key)

        after_commit(self.session, remove_files)
        return len(removed_rows), len(doomed)

    async def expire_due(self) -> int:
        """Expire every requested consultation past its deadline (run periodically)."""
        return len(await self.repo.expire_due(utcnow()))


async def post_system_line(session: AsyncSession, consultation_id: int, body: str) -> Message:
    """Add a system line (a change of state, or a structured item such as a report link or a
    prescription ready) to a consultation's chat, numbered in order and sent live once committed.

    Other domains (skin reports, prescriptions) post through this, so every line reaches the
    sockets the same way."""
    repo = ConsultationRepository(session)
    message = Message(
        consultation_id=consultation_id,
        seq=await repo.next_seq(consultation_id),
        sender_id=None,
        sender_role="system",
        kind="event",
        body=body,
    )
    repo.add(message)
    publish_after_commit(session, consultation_id, lambda: message_event(message))
    return message


# System lines that report something without changing the consultation's state (a page showing
# it need not reload: a reload would end a video call).
INFORMATIONAL_LINES = ("video call ",)


def changes_state(message: Message) -> bool:
    """Whether a chat line marks a change of the consultation's state."""
    return message.kind == "event" and not message.body.startswith(INFORMATIONAL_LINES)


def message_event(message: Message) -> dict[str, Any]:
    """The live-chat event of a stored message."""
    return {
        "type": "message",
        "consultation_id": message.consultation_id,
        "message": MessageRead.model_validate(message).model_dump(mode="json"),
    }


def _to_read(
    c: Consultation, p: Patient, doctor_name: str | None, evidence: Sequence[Attachment]
) -> ConsultationRead:
    return ConsultationRead(
        id=c.id,
        status=c.status,
        patient=PatientBrief(id=p.id, name=p.name, sex=p.sex, age=age_on(p.birth_date, date.today())),
        centre_id=c.centre_id,
        clinic_id=c.clinic_id,
        doctor_id=c.doctor_id,
        doctor_name=doctor_name,
        complaint=c.complaint,
        prior_diagnosis=c.prior_diagnosis,
        prior_institution=c.prior_institution,
        price_cents=c.price_cents,
        created_at=c.created_at,
        expires_at=c.expires_at,
        accepted_at=c.accepted_at,
        started_at=c.started_at,
        ended_at=c.ended_at,
        end_reason=c.end_reason,
        first_response_due_at=c.first_response_due_at,
        first_response_at=c.first_response_at,
        late_at=c.late_at,
        close_due_at=c.close_due_at,
        overdue_at=c.overdue_at,
        refund_cents=c.refund_cents,
        refunded_at=c.refunded_at,
        refund_reason=c.refund_reason,
        referral_to=c.referral_to,
        diagnosis_code=c.diagnosis_code,
        diagnosis_text=c.diagnosis_text,
        summary=c.summary,
        last_seq=c.last_seq,
        evidence=[AttachmentRead.model_validate(a) for a in evidence],
    )
