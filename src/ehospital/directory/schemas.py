"""Directory payloads."""

from __future__ import annotations

from datetime import datetime, time

from pydantic import Field, model_validator

from ehospital.directory.models import DoctorTitle, OrganisationKind
from ehospital.kit.schemas import DbId, Input, Output, Password


class OrganisationCreate(Input):
    kind: OrganisationKind
    name_en: str = Field(min_length=1, max_length=200)
    name_zh: str = Field(min_length=1, max_length=200)
    licence_number: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=300)
    parent_id: DbId | None = None


class OrganisationRead(Output):
    id: int
    kind: str
    name_en: str
    name_zh: str
    licence_number: str | None
    address: str | None
    parent_id: int | None


class ClinicCreate(Input):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    name_en: str = Field(min_length=1, max_length=200)
    name_zh: str = Field(min_length=1, max_length=200)


class ClinicUpdate(Input):
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    is_active: bool | None = None


class ClinicRead(Output):
    id: int
    centre_id: int
    code: str
    name_en: str
    name_zh: str
    is_active: bool


class CentreCreate(Input):
    organisation_id: DbId
    code: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9_-]+$")
    name_en: str = Field(min_length=1, max_length=200)
    name_zh: str = Field(min_length=1, max_length=200)
    description_en: str = Field(default="", max_length=2000)
    description_zh: str = Field(default="", max_length=2000)
    first_response_minutes: int = Field(
        default=10, ge=1, le=1440, description="the promise: a doctor's first answer within this many minutes"
    )
    close_within_hours: int = Field(
        default=24,
        ge=1,
        le=720,
        description="the promise: an accepted consultation ends within this many hours",
    )


class CentreUpdate(Input):
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    description_en: str | None = Field(default=None, max_length=2000)
    description_zh: str | None = Field(default=None, max_length=2000)
    is_active: bool | None = None
    first_response_minutes: int | None = Field(default=None, ge=1, le=1440)
    close_within_hours: int | None = Field(default=None, ge=1, le=720)


class CentreRead(Output):
    id: int
    organisation_id: int
    code: str
    name_en: str
    name_zh: str
    description_en: str
    description_zh: str
    is_active: bool
    first_response_minutes: int = 10
    close_within_hours: int = 24
    clinics: list[ClinicRead] = Field(default_factory=list)


class RosterSlotIn(Input):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    starts: time
    ends: time

    @model_validator(mode="after")
    def _ordered(self) -> RosterSlotIn:
        if self.starts.tzinfo is not None or self.ends.tzinfo is not None:
            raise ValueError("roster times are local hospital times, without a UTC offset")
        if self.ends <= self.starts:
            raise ValueError("a roster slot must end after it starts")
        return self


class RosterSlotRead(Output):
    weekday: int
    starts: time
    ends: time


class DoctorRegister(Input):
    """A doctor signs up; they cannot consult until an admin verifies the licence."""

    username: str = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: Password
    name: str = Field(min_length=1, max_length=100)
    licence_number: str = Field(min_length=5, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    title: DoctorTitle
    institution: str = Field(min_length=1, max_length=200)
    centre_id: DbId
    clinic_id: DbId | None = None
    price_cents: int = Field(ge=0, le=10_000_00)
    bio_en: str = Field(default="", max_length=2000)
    bio_zh: str = Field(default="", max_length=2000)


class DoctorRead(Output):
    id: int
    name: str
    title: str
    institution: str
    licence_number: str
    centre_id: int
    clinic_id: int | None
    price_cents: int
    bio_en: str
    bio_zh: str
    verified: bool
    verified_at: datetime | None
    roster: list[RosterSlotRead] = Field(default_factory=list)
