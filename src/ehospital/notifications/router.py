"""The signed-in account's in-app notifications."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ehospital.deps import CurrentActor, SessionDep
from ehospital.kit.schemas import MAX_DB_ID, IdPath
from ehospital.notifications.schemas import MarkedRead, NotificationRead
from ehospital.notifications.service import NotificationService

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


@router.get("", response_model=list[NotificationRead])
async def list_notifications(
    actor: CurrentActor,
    session: SessionDep,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_DB_ID)] = None,
) -> list[NotificationRead]:
    """Your in-app notifications, newest first (`before_id`: the next page after that id)."""
    found = await NotificationService(session).inbox(
        actor, unread_only=unread, limit=limit, before_id=before_id
    )
    return [NotificationRead.model_validate(n) for n in found]


@router.post("/read-all", response_model=MarkedRead)
async def read_all(actor: CurrentActor, session: SessionDep) -> MarkedRead:
    """Mark all your in-app notifications read; answers how many were unread."""
    return MarkedRead(marked=await NotificationService(session).mark_all_read(actor))


@router.post("/{notification_id}/read", response_model=NotificationRead)
async def read_one(notification_id: IdPath, actor: CurrentActor, session: SessionDep) -> NotificationRead:
    """Mark one of your notifications read (again: no change)."""
    return NotificationRead.model_validate(
        await NotificationService(session).mark_read(actor, notification_id)
    )
