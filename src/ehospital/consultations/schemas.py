"""Consultation payloads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ehospital.kit.schemas import DbId, Input, Output

ICD10_PATTERN = r"^[A-TV-Z][0-9][0-9A-B](\.[0-9A-Z]{1,4})?$"


class ConsultationCreate(Input):
    patient_id: DbId
    centre_id: DbId
    clinic_id: DbId | None = None
    doctor_id: DbId | None = Field(default=None, description="A named doctor, or none for the queue")
    visit_type: Literal["follow_up", "first"] = Field(
        description="Online care is for follow-up visits only; 'first' is refused"
    )
    complaint: str = Field(min_length=2, max_length=2000)
    prior_diagnosis: str = Field(min_length=2, max_length=500, description="Diagnosis made offline")
    prior_institution: str | None = Field(default=None, max_length=200)
    evidence_ids: list[DbId] = Field(
        max_length=9, description="Uploads (report, prescription, photo) proving the diagnosis"
    )


class AttachmentRead(Output):
    id: int
    filename: str
    content_type: str
    size: int
    width: int | None
    height: int | None
    purpose: str
    created_at: datetime


class PatientBrief(Output):
    id: int
    name: str
    sex: str
    age: int


class ConsultationRead(Output):
    id: int
    status: str
    patient: PatientBrief
    centre_id: int
    clinic_id: int | None
    doctor_id: int | None
    doctor_name: str | None
    complaint: str
    prior_diagnosis: str
    prior_institution: str | None
    price_cents: int
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    referral_to: str | None
    diagnosis_code: str | None
    diagnosis_text: str | None
    summary: str | None
    last_seq: int
    evidence: list[AttachmentRead]
    first_response_due_at: datetime | None = None
    first_response_at: datetime | None = None
    late_at: datetime | None = Field(default=None, description="when the first answer was found late")
    close_due_at: datetime | None = None
    overdue_at: datetime | None = Field(default=None, description="when it was found past its close promise")
    refund_cents: int | None = None
    refunded_at: datetime | None = None
    refund_reason: str | None = None


class QueueItem(Output):
    """What a doctor of the centre sees before accepting: no identity, no files."""

    id: int
    centre_id: int
    clinic_id: int | None
    patient_initial: str
    patient_sex: str
    patient_age: int
    complaint: str
    prior_diagnosis: str
    created_at: datetime
    expires_at: datetime
    evidence_count: int
    late: bool = Field(default=False, description="accepted by another doctor whose first answer is late")


CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class MessageCreate(Input):
    body: str = Field(default="", max_length=4000)
    attachment_id: DbId | None = None
    client_id: str | None = Field(
        default=None,
        pattern=CLIENT_ID_PATTERN,
        description="the sender's own id for this message: sending it again returns the stored message",
    )


class MessageRead(Output):
    id: int
    seq: int
    sender_id: int | None
    sender_role: str
    kind: str
    body: str
    attachment_id: int | None
    client_id: str | None = None
    created_at: datetime


class ReadIn(Input):
    seq: int = Field(ge=0, le=2_000_000_000, description="the last message read")


class ReadMarkRead(Output):
    account_id: int
    role: str
    seq: int
    read_at: datetime


class DiagnosisIn(Input):
    code: str = Field(pattern=ICD10_PATTERN, description="ICD-10 code, e.g. E11.9")
    text: str = Field(min_length=2, max_length=500)
    summary: str | None = Field(default=None, max_length=4000)


class CompleteIn(Input):
    summary: str = Field(min_length=2, max_length=4000)


class CancelIn(Input):
    reason: str = Field(default="", max_length=500)


class TerminateIn(Input):
    reason: str = Field(min_length=2, max_length=500)
    referral_to: str = Field(min_length=2, max_length=200, description="Where to go offline")


class CallRead(Output):
    id: int
    consultation_id: int
    started_by: int
    created_at: datetime
    connected_at: datetime | None
    ended_at: datetime | None
    ended_by: int | None
    end_reason: str | None
    duration_seconds: int | None = Field(description="from connection to hang-up; 0 when it never connected")


class CallEndIn(Input):
    reason: Literal["hangup", "declined", "no_answer", "failed"] = "hangup"


class IceServer(Output):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class CallConfig(Output):
    ice_servers: list[IceServer]


class WaitRead(Output):
    """Where a waiting consultation stands, for the patient."""

    status: str
    position: int | None = Field(description="1 = next; None once a doctor has taken it")
    doctors_on_duty: int = Field(description="doctors of the centre on duty now with room for one more")
    estimated_wait_minutes: int | None = Field(description="None when nobody is on duty or rostered")
    first_response_due_at: datetime | None
    late: bool
    can_cancel_for_refund: bool
