"""The audit trail records every access to patient data and detects tampering."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.anchor import read_anchor
from ehospital.audit.models import AuditEvent
from ehospital.audit.service import GENESIS, advance_anchor, event_hash, seal, verify
from tests.personas import World, accepted_consultation


async def test_reads_and_writes_of_patient_data_are_recorded(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    c = await accepted_consultation(client, world)
    patient_id = world.alice.family[0].id
    r = await client.get(
        f"/api/v1/patients/{patient_id}", headers={**world.dr_dia.headers, "X-Request-ID": "req-42"}
    )
    assert r.headers["x-request-id"] == "req-42"
    rows = (await session.scalars(select(AuditEvent).where(AuditEvent.patient_id == patient_id))).all()
    actions = {(e.actor_role, e.action, e.resource_type) for e in rows}
    assert ("patient", "create", "consultation") in actions
    assert ("doctor", "accept", "consultation") in actions
    assert ("doctor", "read", "patient") in actions
    read = next(e for e in rows if e.action == "read" and e.resource_type == "patient")
    assert read.actor_id == world.dr_dia.account.id
    assert read.address == "203.0.113.7"
    assert read.request_id == "req-42"
    assert read.resource_id == str(patient_id)
    # Chat messages are audited too (on PostgreSQL in the same statement that stores them).
    sent = await client.post(
        f"/api/v1/consultations/{c['id']}/messages", headers=world.alice.headers, json={"body": "my sugar"}
    )
    message = await session.scalar(
        select(AuditEvent).where(AuditEvent.resource_type == "message", AuditEvent.action == "create")
    )
    assert message is not None
    assert (message.resource_id, message.patient_id, message.actor_id) == (
        str(sent.json()["id"]),
        patient_id,
        world.alice.account.id,
    )


async def test_a_refused_look_is_recorded_as_denied(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    patient_id = world.alice.family[0].id
    assert (await client.get(f"/api/v1/patients/{patient_id}", headers=world.bob.headers)).status_code == 404
    rows = (
        await session.scalars(select(AuditEvent).where(AuditEvent.actor_id == world.bob.account.id))
    ).all()
    assert [(e.action, e.outcome, e.resource_id) for e in rows] == [
        ("denied", "patient_not_found", f"GET /api/v1/patients/{patient_id}")
    ]
    assert all(e.action != "read" for e in rows)


async def test_chain_verifies_then_detects_a_changed_row(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await accepted_consultation(client, world)
    sealed = await seal(session)
    assert sealed > 0
    report = await verify(session)
    assert report.ok and report.unsealed == 0 and report.sealed >= sealed
    victim = await session.scalar(select(AuditEvent).where(AuditEvent.action == "accept"))
    assert victim is not None and victim.seq is not None
    await session.execute(update(AuditEvent).where(AuditEvent.id == victim.id).values(action="read"))
    session.expunge_all()
    report = await verify(session)
    assert not report.ok
    assert report.broken_at_seq == victim.seq and report.broken_event_id == victim.id
    assert report.problem == "the row was changed after it was sealed"


async def test_chain_detects_a_removed_row(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await accepted_consultation(client, world)
    await seal(session)
    head = await session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1))
    assert head is not None and head >= 3
    await session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    session.expunge_all()
    report = await verify(session)
    assert not report.ok and report.broken_at_seq == 2
    assert report.problem == "row 2 of the chain is missing"


async def test_rows_added_later_extend_the_chain(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await accepted_consultation(client, world)
    first = await seal(session)
    await client.get("/api/v1/patients", headers=world.alice.headers)
    second = await seal(session)
    assert first > 0 and second == 1
    assert (await verify(session)).ok


async def test_an_empty_poll_is_not_a_read(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    c = await accepted_consultation(client, world)
    url = f"/api/v1/consultations/{c['id']}/messages"

    async def reads() -> int:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.resource_type == "message", AuditEvent.action == "list")
        )
        return len(rows.all())

    assert (await client.get(url, headers=world.alice.headers)).json()
    assert await reads() == 1
    assert (await client.get(f"{url}?after_seq=99", headers=world.alice.headers)).json() == []
    assert await reads() == 1
    assert (await client.get(f"{url}?after_seq=0", headers=world.alice.headers)).status_code == 200
    assert await reads() == 2


async def test_removing_the_newest_rows_is_caught_by_the_anchor(
    client: httpx.AsyncClient, world: World, session: AsyncSession, tmp_path: Path
) -> None:
    anchor_path = tmp_path / "audit-head.json"
    await accepted_consultation(client, world)
    await seal(session)
    assert await advance_anchor(session, anchor_path)
    anchor = read_anchor(anchor_path)
    assert anchor is not None and (await verify(session, anchor)).ok
    # Cut the tail: without the anchor the shortened chain still looks whole.
    await session.execute(delete(AuditEvent).where(AuditEvent.seq >= anchor.seq - 1))
    session.expunge_all()
    assert (await verify(session)).ok
    report = await verify(session, anchor)
    assert not report.ok and report.broken_at_seq == anchor.seq - 1
    assert "removed" in (report.problem or "")
    # New rows sealed over the gap do not move the anchor past the evidence.
    await client.get("/api/v1/patients", headers=world.alice.headers)
    await client.get("/api/v1/patients", headers=world.alice.headers)
    await client.get("/api/v1/patients", headers=world.alice.headers)
    await seal(session)
    assert not await advance_anchor(session, anchor_path)
    assert read_anchor(anchor_path) == anchor
    assert not (await verify(session, anchor)).ok


_text = st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8"), max_size=40))


@settings(max_examples=300, deadline=None)
@given(
    seq=st.integers(1, 2**31 - 1),
    ids=st.tuples(st.integers(1, 2**63 - 1), st.none() | st.integers(1, 2**63 - 1)),
    texts=st.lists(_text, min_size=8, max_size=8),
)
def test_the_hash_is_taken_over_the_canonical_json_form(
    seq: int, ids: tuple[int, int | None], texts: list[str | None]
) -> None:
    """The chain's definition: SHA-256 of json.dumps(payload, separators=(",", ":"),
    ensure_ascii=False) in UTF-8 (the sealer writes those bytes with orjson)."""
    at = datetime(2026, 11, 22, 21, 30, 5, 123456, tzinfo=UTC)
    row = SimpleNamespace(
        id=ids[0],
        at=at,
        actor_id=ids[1],
        actor_role=texts[0],
        action=texts[1],
        resource_type=texts[2],
        resource_id=texts[3],
        patient_id=ids[1],
        address=texts[4],
        request_id=texts[5],
        outcome=texts[6],
    )
    prev = texts[7] or GENESIS
    payload = [
        seq,
        row.id,
        at.isoformat(timespec="microseconds"),
        row.actor_id,
        row.actor_role,
        row.action,
        row.resource_type,
        row.resource_id,
        row.patient_id,
        row.address,
        row.request_id,
        row.outcome,
        prev,
    ]
    canonical = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert event_hash(row, seq, prev) == hashlib.sha256(canonical).hexdigest()
