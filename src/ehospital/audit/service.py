"""Recording, sealing (hash-chaining) and verifying the audit trail."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.anchor import Anchor, read_anchor, write_anchor
from ehospital.audit.models import AuditEvent
from ehospital.kit.context import Actor
from ehospital.kit.models import utcnow

log = logging.getLogger("ehospital.audit")
GENESIS = "0" * 64
_SEAL_BATCH = 200  # rows hashed between two awaits: keeps the event loop's stalls short
_PG_SEAL_LOCK = 0x65_48_41_55  # any constant: one sealer at a time across processes


def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: int | str | None,
    *,
    patient_id: int | None = None,
    outcome: str = "ok",
) -> None:
    """Add an audit row to the caller's transaction (it commits or rolls back with the data)."""
    session.add(AuditEvent(**audit_values(actor, action, resource_type, resource_id, patient_id, outcome)))


def audit_values(
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: int | str | None,
    patient_id: int | None = None,
    outcome: str = "ok",
) -> dict[str, Any]:
    """The columns of an unsealed audit row (for callers that insert it in their own statement)."""
    return {
        "at": utcnow(),
        "actor_id": actor.account_id or None,
        "actor_role": str(actor.role) if actor.account_id else "system",
        "action": action,
        "resource_type": resource_type,
        "resource_id": None if resource_id is None else str(resource_id),
        "patient_id": patient_id,
        "address": actor.address,
        "request_id": actor.request_id,
        "outcome": outcome,
    }


async def recent(session: AsyncSession, patient_id: int | None, limit: int) -> list[AuditEvent]:
    """The newest rows, optionally those about one patient."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if patient_id is not None:
        query = query.where(AuditEvent.patient_id == patient_id)
    return list(await session.scalars(query))


def event_hash(event: Any, seq: int, prev_hash: str) -> str:
    """SHA-256 over a canonical JSON form of the row and the previous row's hash.

    `event` is an AuditEvent or a row of the audit_events table (same attribute names).
    """
    payload = [
        seq,
        event.id,
        event.at.isoformat(timespec="microseconds"),
        event.actor_id,
        event.actor_role,
        event.action,
        event.resource_type,
        event.resource_id,
        event.patient_id,
        event.address,
        event.request_id,
        event.outcome,
        prev_hash,
    ]
    # The canonical form is json.dumps(payload, separators=(",", ":"), ensure_ascii=False) in
    # UTF-8; orjson writes exactly those bytes for these values (ints, strings, None: checked
    # for every code point, and by tests/test_audit.py), at a fraction of the cost.
    return hashlib.sha256(orjson.dumps(payload)).hexdigest()


_PG_STAMP = text(
    """
UPDATE audit_events AS a SET seq = v.seq, prev_hash = v.prev, hash = v.hash
FROM unnest(CAST(:id AS BIGINT[]), CAST(:seq AS INTEGER[]), CAST(:prev AS TEXT[]), CAST(:hash AS TEXT[]))
    AS v(id, seq, prev, hash)
WHERE a.id = ANY(CAST(:id AS BIGINT[])) AND a.id = v.id  -- an index probe whatever unnest is guessed at
"""
)


async def seal(session: AsyncSession, *, wait: bool = True) -> int:
    """Chain the rows not yet sealed, oldest first; returns how many were sealed.

    One sealer at a time across processes (PostgreSQL advisory lock). `wait=False` (the
    servers' periodic job) returns 0 at once when another process is sealing, instead of
    holding a connection while it waits."""
    if session.get_bind().dialect.name == "postgresql":
        if wait:
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SEAL_LOCK})
        elif not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PG_SEAL_LOCK}):
            return 0
    head = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq.is_not(None))
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
    ).first()
    seq, prev = (head[0], head[1]) if head else (0, GENESIS)
    sealed = 0
    table = cast(Table, AuditEvent.__table__)
    # Core rows and an executemany UPDATE: the sealer runs inside the server's event loop, so
    # it must stay cheap (no ORM objects for thousands of rows a second).
    postgresql = session.get_bind().dialect.name == "postgresql"
    stamp = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(seq=bindparam("b_seq"), prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"))
    )
    while True:
        pending = (
            await session.execute(
                select(table).where(table.c.seq.is_(None)).order_by(table.c.id).limit(_SEAL_BATCH)
            )
        ).all()
        if not pending:
            return sealed
        rows = []
        for event in pending:
            seq += 1
            digest = event_hash(event, seq, prev)
            rows.append({"b_id": event.id, "b_seq": seq, "b_prev": prev, "b_hash": digest})
            prev = digest
        if postgresql:  # one statement for the chunk instead of one execution per row
            await session.execute(
                _PG_STAMP,
                {k: [r[f"b_{k}"] for r in rows] for k in ("id", "seq", "prev", "hash")},
            )
        else:
            await session.execute(stamp, rows)
        sealed += len(rows)


@dataclass
class VerifyReport:
    ok: bool
    sealed: int
    unsealed: int
    broken_at_seq: int | None = None
    broken_event_id: int | None = None
    problem: str | None = None
    details: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "sealed": self.sealed,
            "unsealed": self.unsealed,
            "broken_at_seq": self.broken_at_seq,
            "broken_event_id": self.broken_event_id,
            "problem": self.problem,
        }


async def chain_head(session: AsyncSession) -> Anchor | None:
    """The last sealed row's number and hash."""
    row = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.seq.is_not(None))
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
    ).first()
    return None if row is None or row[0] is None else Anchor(seq=int(row[0]), hash=str(row[1]))


async def advance_anchor(session: AsyncSession, path: Path) -> bool:
    """Record the committed chain head outside the database, unless the chain no longer holds
    the head recorded last time (then the evidence is kept and False returned)."""
    previous = read_anchor(path)
    if previous is not None:
        stored = await session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == previous.seq))
        if stored != previous.hash:
            log.error(
                "audit chain no longer contains its recorded head (row %s); not advancing", previous.seq
            )
            return False
    head = await chain_head(session)
    if head is not None:
        write_anchor(path, head)
    return True


async def verify(session: AsyncSession, anchor: Anchor | None = None) -> VerifyReport:
    """Walk the chain in order and report the first row that was changed or removed.

    With `anchor` (a head recorded earlier outside the database) it also notices the newest
    rows being removed, or the whole chain being recomputed.
    """
    unsealed = int(
        await session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.seq.is_(None)))
        or 0
    )
    expected_seq, prev, checked = 1, GENESIS, 0
    last_id = 0
    while True:
        batch = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq.is_not(None), AuditEvent.seq >= expected_seq)
                .order_by(AuditEvent.seq)
                .limit(_SEAL_BATCH)
            )
        ).all()
        if not batch:
            if anchor is not None and anchor.seq > checked:
                return VerifyReport(
                    ok=False,
                    sealed=checked,
                    unsealed=unsealed,
                    broken_at_seq=checked + 1,
                    problem=f"rows {checked + 1} to {anchor.seq} were removed (the chain ends before its "
                    "recorded head)",
                )
            return VerifyReport(ok=True, sealed=checked, unsealed=unsealed)
        for event in batch:
            assert event.seq is not None
            problem = None
            if event.seq != expected_seq:
                problem = f"row {expected_seq} of the chain is missing"
            elif event.prev_hash != prev:
                problem = "the link to the previous row does not match"
            elif event.hash != event_hash(event, event.seq, prev):
                problem = "the row was changed after it was sealed"
            elif anchor is not None and event.seq == anchor.seq and event.hash != anchor.hash:
                problem = "the chain was recomputed: this row differs from the recorded head"
            if problem:
                return VerifyReport(
                    ok=False,
                    sealed=checked,
                    unsealed=unsealed,
                    broken_at_seq=expected_seq,
                    broken_event_id=event.id if event.seq == expected_seq else last_id or None,
                    problem=problem,
                )
            prev = event.hash or ""
            last_id = event.id
            expected_seq += 1
            checked += 1
        session.expunge_all()
