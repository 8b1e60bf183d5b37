"""Inputs and outputs of the glucose API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ehospital.glucose.alerts import Thresholds

Unit = Literal["mg/dL", "mmol/L"]
_LOCAL_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceCreate(Strict):
    kind: Literal["cgm", "meter"]
    label: str = Field(min_length=1, max_length=100)
    unit: Unit = "mmol/L"
    # The device clock's offset from UTC in minutes (China: +480), for readings without one.
    utc_offset_minutes: int = Field(default=480, ge=-720, le=840)


class DeviceRead(BaseModel):
    uid: str
    patient_id: int
    kind: str
    label: str
    unit: str
    utc_offset_minutes: int
    created_at: datetime
    last_reading_at: datetime | None
    retired_at: datetime | None


class DeviceRegistered(DeviceRead):
    secret: str = Field(description="Shown once: the uploader's secret")
    api_secret: str = Field(description="SHA-1 of the secret: Nightscout uploaders' `api-secret`")
    mqtt_topic: str


class ThresholdsIn(Strict):
    """Alert thresholds in mg/dL (omitted ones take the defaults)."""

    urgent_low: float | None = None
    low: float | None = None
    high: float | None = None
    sustained_high: float | None = None
    sustained_minutes: int | None = None
    rapid_fall: float | None = None
    no_data_minutes: int | None = None

    def to_thresholds(self) -> Thresholds:
        return Thresholds.of(self.model_dump(exclude_none=True))

    @model_validator(mode="after")
    def _consistent(self) -> ThresholdsIn:
        try:
            self.to_thresholds()
        except (ValueError, TypeError) as exc:
            raise ValueError(str(exc)) from None
        return self


class Reminder(Strict):
    time: str = Field(description="Local time HH:MM")
    what: Literal["measure", "medication", "meal", "exercise"]
    note: str = Field(default="", max_length=200)

    @field_validator("time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _LOCAL_TIME.match(value):
            raise ValueError("time must be HH:MM (00:00 to 23:59)")
        return value


class Medication(Strict):
    name: str = Field(min_length=1, max_length=100)
    dose: str = Field(min_length=1, max_length=100)
    times: list[str] = Field(default_factory=list, max_length=8)
    prescription_id: int | None = Field(default=None, ge=1)

    @field_validator("times")
    @classmethod
    def _hhmm(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _LOCAL_TIME.match(value):
                raise ValueError("times must be HH:MM (00:00 to 23:59)")
        return values


class CarePlanIn(Strict):
    targets: Literal["standard", "older_high_risk", "pregnancy_t1"] = "standard"
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    unit: Unit = "mmol/L"
    thresholds: ThresholdsIn = Field(default_factory=ThresholdsIn)
    monitoring: list[Reminder] = Field(default_factory=list, max_length=24)
    diet: str = Field(default="", max_length=4000)
    exercise: str = Field(default="", max_length=4000)
    medications: list[Medication] = Field(default_factory=list, max_length=20)
    note: str = Field(default="", max_length=4000)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (IANA names, e.g. Asia/Shanghai)") from None
        return value


class CarePlanRead(BaseModel):
    id: int
    patient_id: int
    version: int
    doctor_id: int
    doctor_name: str
    created_at: datetime
    targets: str
    timezone: str
    unit: str
    thresholds: dict[str, float | int]
    monitoring: list[Reminder]
    diet: str
    exercise: str
    medications: list[Medication]
    note: str


class AlertRead(BaseModel):
    id: int
    patient_id: int
    condition: str
    status: str
    began_at: datetime
    value: float | None = Field(description="The reading that raised it, in `unit` (none for no data)")
    unit: str
    value_mgdl: float | None
    raised_at: datetime
    snoozed_until: datetime | None
    acknowledged_at: datetime | None
    resolved_at: datetime | None


class SnoozeIn(Strict):
    minutes: int = Field(ge=5, le=24 * 60)
