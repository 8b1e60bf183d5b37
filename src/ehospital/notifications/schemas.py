"""Notification payloads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from ehospital.kit.schemas import Output


class NotificationRead(Output):
    """An in-app notification; `code` (with `kind`) is the machine-readable reason, `subject_id`
    the alert, plan or report it is about."""

    id: int
    kind: str
    code: str
    patient_id: int | None
    subject_id: int | None
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None


class MarkedRead(BaseModel):
    marked: int
