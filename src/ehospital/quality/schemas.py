"""What the quality dashboard answers."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class Stats(BaseModel):
    """Outcomes and first responses of the consultations requested in a period, and the refunds
    that fell due in it."""

    requested: int = Field(description="consultations requested (the cohort the rates divide by)")
    completed: int
    expired: int = Field(description="no doctor accepted in time")
    cancelled: int = Field(description="withdrawn by the patient")
    terminated: int = Field(description="ended by the doctor and referred to a physical hospital")
    open: int = Field(description="still requested, accepted or in progress now")
    completion_rate: float | None = Field(description="completed / requested; null when none")
    expiry_rate: float | None = Field(description="expired / requested; null when none")
    cancellation_rate: float | None = Field(description="cancelled / requested; null when none")
    answered: int = Field(description="consultations with a doctor's message of substance")
    first_response_p50_s: float | None = Field(
        description="median seconds from the request to the first doctor message of substance"
    )
    first_response_p90_s: float | None
    first_response_p95_s: float | None
    refunds: int = Field(description="refunds that fell due (pharmacy order payments to give back)")
    refund_cents: int


class DayStats(Stats):
    day: date = Field(description="calendar day in China time (Asia/Shanghai)")


class CentreRef(BaseModel):
    id: int
    code: str
    name_en: str
    name_zh: str


class CentreStats(BaseModel):
    centre: CentreRef
    totals: Stats
    days: list[DayStats]


class DoctorLoad(BaseModel):
    """One doctor's work on the centres' consultations in the period."""

    doctor_id: int
    name: str
    centre_id: int
    accepted: int = Field(description="consultations accepted in the period")
    completed: int = Field(description="consultations completed in the period")
    messages: int = Field(description="messages of substance sent in the period")
    answered: int = Field(description="consultations requested in the period that they answered")
    first_response_p50_s: float | None = Field(
        description="median seconds from the request to their first message, over `answered`"
    )
    open_now: int = Field(description="consultations accepted and not yet ended, now")


class Dashboard(BaseModel):
    first_day: date
    last_day: date
    timezone: str
    generated_at: datetime
    centres: list[CentreRef] = Field(description="the centres covered")
    totals: Stats
    days: list[DayStats] = Field(description="every day of the period, all covered centres together")
    by_centre: list[CentreStats]
    doctors: list[DoctorLoad]
