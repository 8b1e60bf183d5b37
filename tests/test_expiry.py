"""Consultations nobody accepts in time expire."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.config import Settings
from ehospital.consultations.models import Consultation
from ehospital.consultations.service import ConsultationService
from ehospital.kit.models import utcnow
from ehospital.kit.storage import LocalFileStore
from tests.personas import World, open_consultation


async def make_overdue(session: AsyncSession, consultation_id: int) -> None:
    await session.execute(
        update(Consultation)
        .where(Consultation.id == consultation_id)
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    await session.commit()


async def test_accepting_an_overdue_consultation_fails(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    c = await open_consultation(client, world, doctor=world.dr_dia)
    await make_overdue(session, c["id"])
    r = await client.post(f"/api/v1/consultations/{c['id']}/accept", headers=world.dr_dia.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "consultation_expired"


async def test_the_sweep_expires_overdue_requests(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings, tmp_path: object
) -> None:
    c = await open_consultation(client, world)
    await make_overdue(session, c["id"])
    assert (await client.get("/api/v1/consultations/queue", headers=world.dr_dia.headers)).json() == []
    service = ConsultationService(session, settings, LocalFileStore(settings.upload_dir))
    assert await service.expire_due() == 1
    await session.commit()
    r = await client.get(f"/api/v1/consultations/{c['id']}", headers=world.alice.headers)
    assert r.json()["status"] == "expired" and r.json()["end_reason"] == "no doctor accepted in time"
    assert await service.expire_due() == 0
