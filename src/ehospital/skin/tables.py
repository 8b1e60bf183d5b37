"""Skin photos, their AI analyses, dermatologists' reviews and acne follow-up schedules."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime

# Framings a follow-up photo repeats, so photos months apart compare.
VIEWS = ("front", "left", "right", "other")


class SkinPhoto(IdMixin, CreatedMixin, Base):
    """A patient's facial photo: stored encrypted, EXIF stripped, re-encoded as JPEG."""

    __tablename__ = "skin_photos"
    __table_args__ = (Index("ix_skin_photos_patient_id_created_at", "patient_id", "created_at"),)

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    uploaded_by: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    # The acne-clinic consultation the photo was taken for (its report attaches there).
    consultation_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("consultations.id"), index=True)
    view: Mapped[str] = mapped_column(String(8))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    overlay_key: Mapped[str | None] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # Explicit consent to use this photo and its labels for model improvement; withdrawn = null.
    training_consent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SkinAnalysis(IdMixin, CreatedMixin, Base):
    """What the model found in one photo. Lesion positions are in pixels of the stored photo."""

    __tablename__ = "skin_analyses"

    photo_id: Mapped[int] = mapped_column(BigId, ForeignKey("skin_photos.id"), unique=True)
    model_version: Mapped[str] = mapped_column(String(40))
    assessable: Mapped[bool] = mapped_column(Boolean)
    grade: Mapped[int | None] = mapped_column(SmallInteger)
    lesion_count: Mapped[int | None] = mapped_column(Integer)
    by_type: Mapped[str] = mapped_column(Text)  # JSON {kind: n}
    lesions: Mapped[str] = mapped_column(Text)  # JSON [[x, y, radius, kind, score], …]
    grade_probabilities: Mapped[str] = mapped_column(Text)  # JSON [p0, p1, p2, p3]
    ood_distance: Mapped[float] = mapped_column(Float)
    quality: Mapped[str] = mapped_column(Text)  # JSON of the photo checks' metrics
    referral: Mapped[bool] = mapped_column(Boolean)
    elapsed_ms: Mapped[float] = mapped_column(Float)


class SkinReview(IdMixin, CreatedMixin, Base):
    """A dermatologist's reading of a photo: the grade they confirm, lesion corrections and a
    diagnosis. The latest review of a photo is the one that counts."""

    __tablename__ = "skin_reviews"

    photo_id: Mapped[int] = mapped_column(BigId, ForeignKey("skin_photos.id"), index=True)
    doctor_id: Mapped[int] = mapped_column(BigId, ForeignKey("doctors.id"))
    consultation_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("consultations.id"))
    confirmed_grade: Mapped[int | None] = mapped_column(SmallInteger)
    # JSON list of the lesions as the dermatologist sees them ([[x, y, radius, kind], …]),
    # or null when the AI's lesions were not corrected.
    lesions: Mapped[str | None] = mapped_column(Text)
    diagnosis_code: Mapped[str | None] = mapped_column(String(16))
    diagnosis_text: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")


class SkinFollowUp(IdMixin, CreatedMixin, Base):
    """When a patient should take their next comparable acne photos; one live schedule each."""

    __tablename__ = "skin_followups"

    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"), unique=True)
    set_by: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"))
    interval_days: Mapped[int] = mapped_column(SmallInteger)
    views: Mapped[str] = mapped_column(String(40))  # comma-separated VIEWS to retake
    next_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)
