"""Files that never became part of a record are swept; attached ones are kept."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.config import Settings
from ehospital.consultations.models import Attachment
from ehospital.consultations.service import ConsultationService
from ehospital.kit.models import utcnow
from ehospital.kit.storage import LocalFileStore
from tests.personas import World, open_consultation, png_bytes, upload


def age_all_files(root: Path, hours: float) -> None:
    old = time.time() - hours * 3600
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (old, old))


async def test_sweep_removes_stale_uploads_and_orphan_files_only(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    store = LocalFileStore(tmp_path / "uploads")  # the client fixture's store
    attached = await open_consultation(client, world)
    stale = await upload(client, world.alice)
    fresh_key = None
    orphan_key = store.put(png_bytes())  # as if a request failed after storing its file
    await session.execute(
        update(Attachment).where(Attachment.id == stale).values(created_at=utcnow() - timedelta(days=2))
    )
    await session.commit()
    age_all_files(tmp_path / "uploads", 48)
    fresh = await upload(client, world.alice)  # a new upload, not yet attached: kept
    fresh_key = await session.scalar(select(Attachment.storage_key).where(Attachment.id == fresh))

    service = ConsultationService(session, settings, store)
    rows, files = await service.sweep_uploads()
    assert (rows, files) == (1, 2)  # the stale upload's row and file, and the orphan file
    assert (tmp_path / "uploads" / orphan_key[:2] / orphan_key).exists()  # files go after commit
    await session.commit()

    remaining = set(await session.scalars(select(Attachment.id)))
    assert stale not in remaining and fresh in remaining
    assert attached["evidence"][0]["id"] in remaining
    keys = {p.name for p in (tmp_path / "uploads").rglob("*") if p.is_file()}
    assert orphan_key not in keys and fresh_key in keys
    evidence = await client.get(
        f"/api/v1/attachments/{attached['evidence'][0]['id']}", headers=world.alice.headers
    )
    assert evidence.status_code == 200  # attached evidence is a clinical record: never swept
    assert await service.sweep_uploads() == (0, 0)
    assert await session.scalar(select(func.count()).select_from(Attachment)) == len(remaining)
