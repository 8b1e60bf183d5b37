"""Inputs and outputs of the skin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from ehospital.kit.schemas import Input
from ehospital.skin.model import LESION_TYPES

View = Literal["front", "left", "right", "other"]


class LesionIn(Input):
    """A lesion as the dermatologist marks it, in fractions of the photo's width and height."""

    x: float = Field(ge=0, le=1)
    y: float = Field(ge=0, le=1)
    radius: float = Field(default=0.02, gt=0, le=0.5)
    kind: str

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in LESION_TYPES:
            raise ValueError(f"kind must be one of {', '.join(LESION_TYPES)}")
        return value


class ReviewIn(Input):
    """A dermatologist's confirmation or correction of an AI reading."""

    confirmed_grade: int | None = Field(default=None, ge=0, le=3)
    lesions: list[LesionIn] | None = Field(default=None, max_length=500)
    diagnosis_code: str | None = Field(default=None, max_length=16)
    diagnosis_text: str = Field(default="", max_length=500)
    notes: str = Field(default="", max_length=4000)
    consultation_id: int | None = Field(default=None, ge=1)
    # Ask the patient for comparable photos (the same view as this one) every so many days.
    followup_days: int | None = Field(default=None, ge=7, le=180)


class ConsentIn(Input):
    training: bool


class FollowUpIn(Input):
    interval_days: int = Field(ge=7, le=180)
    views: list[View] = Field(default_factory=lambda: list[View](["front"]), min_length=1, max_length=4)
    active: bool = True


class FollowUpRead(BaseModel):
    patient_id: int
    interval_days: int
    views: list[str]
    next_due_at: datetime
    last_reminded_at: datetime | None
    active: bool


class LesionRead(BaseModel):
    x: float
    y: float
    radius: float
    kind: str
    score: float | None = None


class ReviewRead(BaseModel):
    id: int
    doctor_id: int
    doctor_name: str | None = None
    consultation_id: int | None
    confirmed_grade: int | None
    lesions: list[LesionRead] | None
    diagnosis_code: str | None
    diagnosis_text: str
    notes: str
    created_at: datetime


class AcneRead(BaseModel):
    grade: int
    lesions: int
    by_type: dict[str, int]
    grade_probabilities: list[float]


class SkinReportRead(BaseModel):
    """One photo's report: what the AI found, in words for the reader, and the doctor's review."""

    photo_id: int
    patient_id: int
    consultation_id: int | None
    view: str
    taken_at: datetime
    width: int
    height: int
    image_url: str
    overlay_url: str | None
    model: str | None
    acne: AcneRead | None
    lesions: list[LesionRead]
    referral: bool
    quality: dict[str, Any]
    elapsed_ms: float | None
    words: dict[str, Any] = Field(description="grade name, advice, referral text, disclaimer")
    training_consent: bool
    review: ReviewRead | None = Field(default=None, description="the latest dermatologist's review")
    reviews: int = 0
