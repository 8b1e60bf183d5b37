"""Patient payloads."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from ehospital.kit.schemas import Input, Output
from ehospital.patients.models import Relationship

SexIn = Literal["male", "female"]


class PatientCreate(Input):
    name: str = Field(min_length=1, max_length=50)
    id_number: str = Field(min_length=1, max_length=32, description="Resident ID number (GB 11643)")
    sex: SexIn
    birth_date: date
    relationship: Relationship
    phone: str | None = Field(default=None, pattern=r"^\+?[0-9 -]{5,20}$")


class PatientRead(Output):
    id: int
    name: str
    id_number_masked: str
    sex: str
    birth_date: date
    age: int
    relationship: str
    phone: str | None
    created_at: datetime
