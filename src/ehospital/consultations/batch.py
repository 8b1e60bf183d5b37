"""Group commit for live chat: the text messages that many sockets send at the same moment are
numbered, stored and audited by ONE statement and ONE commit (PostgreSQL).

A socket hands its message to the process's `MessageBatcher` and waits. One writer task takes
everything waiting, runs the batch statement, commits, publishes the stored messages to the
live-chat hub and only then answers each waiting socket (persist before acknowledge). While a
batch is in flight the next one gathers, so under load a batch holds as many messages as arrived
during one round trip, and when the server is idle a batch is one message with no added wait.

The statement keeps every rule of the one-message path (`ConsultationService.post_message_once`):

* the sender may write only where the consultation is theirs and open (a patient while it is
  requested, accepted or in progress; a doctor while accepted or in progress), judged on the
  consultation row as locked, so a message never lands after a concurrent close;
* seq numbers per consultation stay gapless and follow the order the messages arrived;
* a `client_id` already stored is not stored again;
* the batch locks its consultations in id order and skips (SKIP LOCKED) those another
  transaction holds: their messages wait for the next batch, instead of the whole batch (and
  every consultation it already locked) waiting for the other transaction's commit. A message
  skipped MAX_DEFERRALS times goes the one-message way in a task of its own, which waits for
  the lock without holding up anybody else.

Whatever the statement did not store (a resend, a refusal) and every message the statement
cannot carry (an image; SQLite) goes through the one-message path in a transaction of its own,
which answers with the stored message or the precise refusal. A batch that fails as a whole
(a client_id raced in by another process, a lost connection) is retried message by message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from ehospital.consultations.models import CHATTING_STATUSES, OPEN_STATUSES, Status
from ehospital.consultations.schemas import MessageCreate, MessageRead
from ehospital.kit.context import Actor
from ehospital.kit.models import utcnow
from ehospital.realtime.hub import current_hub

log = logging.getLogger(__name__)

MAX_BATCH = 200
MAX_DEFERRALS = 3
DEFER_PAUSE = 0.002  # seconds before retrying when only skipped messages are waiting

# The message as live chat and REST show it (MessageRead in JSON form).
MessageJson = dict[str, Any]
# The one-message path: (actor, consultation id, data) → (message JSON, stored now), in a
# committed transaction of its own; raises DomainError for a refusal.
SlowPath = Callable[[Actor, int, MessageCreate], Awaitable[tuple[MessageJson, bool]]]


def _quoted(statuses: frozenset[Status]) -> str:
    return ", ".join(f"'{s}'" for s in sorted(statuses))


# May the input row `f` write to the consultation row `c` (as locked)? Patients by account,
# doctors by their doctor id; CHATTING for doctors, OPEN for patients.
_MAY = (
    f"((f.by_doctor AND c.doctor_id = f.viewer AND c.status IN ({_quoted(CHATTING_STATUSES)})) OR "
    f"(NOT f.by_doctor AND c.account_id = f.viewer AND c.status IN ({_quoted(OPEN_STATUSES)})))"
)

# One statement, run on its own (autocommit: no BEGIN and COMMIT round trips). Parameters: $1
# consultation ids, $2 viewers (account or doctor id), $3 by a doctor, $4 sender account ids,
# $5 sender roles, $6 bodies, $7 client ids, $8 addresses (arrays, one entry per message, in
# arrival order), $9 now. Returns (ordinal, message id, seq) of each message stored, and
# (0, consultation id, 0) for each consultation it locked.
_BATCH_SQL = f"""
WITH input AS (
    SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::BOOLEAN[], $4::BIGINT[], $5::TEXT[],
                         $6::TEXT[], $7::TEXT[], $8::TEXT[])
        WITH ORDINALITY AS i(consultation_id, viewer, by_doctor, sender_id, sender_role, body,
                             client_id, address, ord)
),
fresh AS MATERIALIZED (
    -- A correlated sub-select with LIMIT stays a per-row index probe (NOT EXISTS would become an
    -- anti join, planned for the 100 rows unnest is guessed at: a scan of all messages).
    SELECT i.* FROM input i
    WHERE i.client_id IS NULL OR (
        SELECT m.id FROM messages m
        WHERE m.consultation_id = i.consultation_id AND m.sender_id = i.sender_id
          AND m.client_id = i.client_id
        LIMIT 1) IS NULL
),
-- Locked in id order (no deadlock between two processes' batches); FOR UPDATE gives the rows
-- as they are once locked, so the rules below judge the latest state.
locked AS MATERIALIZED (
    SELECT c.id, c.status, c.account_id, c.doctor_id, c.patient_id FROM consultations c
    WHERE c.id = ANY(ARRAY(SELECT consultation_id FROM input))
    ORDER BY c.id
    FOR UPDATE {{skip}}
),
counted AS MATERIALIZED (
    SELECT c.id, count(*) AS n, bool_or(f.by_doctor AND c.status = 'accepted') AS starts
    FROM fresh f JOIN locked c ON c.id = f.consultation_id
    WHERE {_MAY}
    GROUP BY c.id
),
-- Numbers taken; a doctor's first message of an accepted consultation starts it (its first answer).
taken AS (
    UPDATE consultations c
    SET last_seq = c.last_seq + k.n,
        status = CASE WHEN k.starts THEN 'in_progress' ELSE c.status END,
        started_at = CASE WHEN k.starts THEN $9::TIMESTAMPTZ ELSE c.started_at END,
        first_response_at = CASE WHEN k.starts THEN $9::TIMESTAMPTZ ELSE c.first_response_at END
    FROM counted k
    WHERE c.id = k.id
    RETURNING c.id, c.last_seq, k.n
),
allowed AS MATERIALIZED (
    SELECT f.*, c.patient_id,
           t.last_seq - t.n + row_number() OVER (PARTITION BY f.consultation_id ORDER BY f.ord) AS seq
    FROM fresh f JOIN locked c ON c.id = f.consultation_id JOIN taken t ON t.id = f.consultation_id
    WHERE {_MAY}
),
stored AS (
    INSERT INTO messages (consultation_id, seq, sender_id, sender_role, kind, body, created_at, client_id)
    SELECT a.consultation_id, a.seq, a.sender_id, a.sender_role, 'text', a.body, $9::TIMESTAMPTZ,
           a.client_id
    FROM allowed a
    RETURNING id, consultation_id, seq
),
audited AS (
    INSERT INTO audit_events (at, actor_id, actor_role, action, resource_type, resource_id,
                              patient_id, address, request_id, outcome)
    SELECT $9::TIMESTAMPTZ, a.sender_id, a.sender_role, 'create', 'message', CAST(s.id AS TEXT),
           a.patient_id, a.address, NULL, 'ok'
    FROM stored s JOIN allowed a ON a.consultation_id = s.consultation_id AND a.seq = s.seq
)
SELECT a.ord, s.id, s.seq
FROM stored s JOIN allowed a ON a.consultation_id = s.consultation_id AND a.seq = s.seq
UNION ALL
SELECT 0, l.id, 0 FROM locked l  -- ordinal 0: a consultation this statement locked
"""
# Waits for a consultation another transaction holds (a batch of another process, a REST post).
BATCH_SQL = _BATCH_SQL.replace("{skip}", "")
# Leaves such consultations out: their messages wait for the next batch instead of this batch
# (and every consultation it has locked) waiting for the other transaction's commit.
BATCH_SQL_SKIP_LOCKED = _BATCH_SQL.replace("{skip}", "SKIP LOCKED")


@dataclass
class _Waiting:
    actor: Actor
    consultation_id: int
    data: MessageCreate
    deferrals: int = 0  # batches it sat out because another transaction held its consultation
    done: asyncio.Future[tuple[MessageJson, bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class MessageBatcher:
    def __init__(self, engine: AsyncEngine, slow_path: SlowPath) -> None:
        self.engine = engine
        self.slow_path = slow_path
        self.postgresql = engine.dialect.name == "postgresql"
        self.waiting: list[_Waiting] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._alone_tasks: set[asyncio.Task[None]] = set()

    async def post(self, actor: Actor, consultation_id: int, data: MessageCreate) -> tuple[MessageJson, bool]:
        """(the stored message, stored now) once committed and published; DomainError if refused."""
        if not self._fits(actor, data):
            return await self.slow_path(actor, consultation_id, data)
        item = _Waiting(actor, consultation_id, data)
        self.waiting.append(item)
        self.wakeup.set()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="chat-batcher")
        return await item.done

    def _fits(self, actor: Actor, data: MessageCreate) -> bool:
        return (
            self.postgresql
            and data.attachment_id is None
            and bool(data.body)
            and (actor.is_patient or actor.is_practising_doctor)
        )

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        for task in list(self._alone_tasks):
            task.cancel()
        for item in self.waiting:
            if not item.done.done():
                item.done.cancel()
        self.waiting = []

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.waiting:
                # A message that sat out MAX_DEFERRALS batches (its consultation held by another
                # transaction each time) goes the one-message way in a task of its own: it waits
                # for its lock without holding up everybody else's batches.
                if any(w.deferrals >= MAX_DEFERRALS for w in self.waiting):
                    for item in [w for w in self.waiting if w.deferrals >= MAX_DEFERRALS]:
                        task = asyncio.get_running_loop().create_task(self._alone(item))
                        self._alone_tasks.add(task)
                        task.add_done_callback(self._alone_tasks.discard)
                    self.waiting = [w for w in self.waiting if w.deferrals < MAX_DEFERRALS]
                    if not self.waiting:
                        break
                batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
                try:
                    deferred = await self._write(batch)
                except asyncio.CancelledError:
                    for item in batch:
                        if not item.done.done():
                            item.done.cancel()
                    raise
                except Exception:  # pragma: no cover - _write answers every item itself
                    log.exception("chat batch failed")
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(RuntimeError("chat batch failed"))
                    continue
                if deferred and len(self.waiting) == deferred:
                    await asyncio.sleep(DEFER_PAUSE)  # only the skipped ones: give the lock time

    async def _alone(self, item: _Waiting) -> None:
        try:
            result = await self.slow_path(item.actor, item.consultation_id, item.data)
        except Exception as exc:
            if not item.done.done():
                item.done.set_exception(exc)
            return
        if not item.done.done():
            item.done.set_result(result)

    async def _write(self, batch: list[_Waiting]) -> int:
        """Store a batch and answer its messages; returns how many were put back to wait for
        the next batch (their consultation was locked by another transaction)."""
        batch, repeats = self._split(batch)
        now = utcnow()
        # A consultation locked by another transaction (another process's batch) is skipped, not
        # waited for: its messages try again in the next batch.
        try:
            stored, locked = await self._store(batch, now, skip_locked=True)
        except Exception as exc:  # a raced client_id, a lost connection: one by one instead
            log.info("chat batch of %d retried message by message: %s", len(batch), exc)
            stored, locked = {}, None
        deferred = []
        if locked is not None:
            deferred = [
                item
                for ordinal, item in enumerate(batch, start=1)
                if ordinal not in stored and item.consultation_id not in locked
            ]
            for item in deferred:
                item.deferrals += 1
            if deferred:
                self.waiting[:0] = deferred  # first in the next batch, in their order
        events = []
        for ordinal, item in enumerate(batch, start=1):
            found = stored.get(ordinal)
            if found is None:
                continue
            message_id, seq = found
            message = MessageRead(
                id=message_id,
                seq=seq,
                sender_id=item.actor.account_id,
                sender_role=str(item.actor.role),
                kind="text",
                body=item.data.body,
                attachment_id=None,
                client_id=item.data.client_id,
                created_at=now,
            ).model_dump(mode="json")
            events.append((item, message))
        hub = current_hub()
        if hub is not None:
            hub.publish_many(
                [
                    (
                        item.consultation_id,
                        {"type": "message", "consultation_id": item.consultation_id, "message": m},
                    )
                    for item, m in events
                ]
            )
        for item, message in events:
            if not item.done.done():
                item.done.set_result((message, True))
        # What the statement did not store: a resend (answered with the stored message) or a
        # refusal (answered with its reason), each by the one-message path.
        waiting_again = {id(item) for item in deferred}
        unstored = [
            item
            for ordinal, item in enumerate(batch, start=1)
            if ordinal not in stored and id(item) not in waiting_again
        ]
        for item in unstored + repeats:
            if not item.done.done():
                try:
                    item.done.set_result(await self.slow_path(item.actor, item.consultation_id, item.data))
                except Exception as exc:
                    item.done.set_exception(exc)
        return len(deferred)

    @staticmethod
    def _split(batch: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
        """(the batch, repeats): a client_id twice in one batch (a resend racing its original)
        is answered by the one-message path after the first is stored; the statement sees only
        rows stored before it."""
        seen: set[tuple[int, int, str]] = set()
        first: list[_Waiting] = []
        repeats: list[_Waiting] = []
        for item in batch:
            key = (item.consultation_id, item.actor.account_id, item.data.client_id or "")
            if item.data.client_id is not None and key in seen:
                repeats.append(item)
            else:
                seen.add(key)
                first.append(item)
        return first, repeats

    async def _store(
        self, batch: list[_Waiting], now: datetime, *, skip_locked: bool
    ) -> tuple[dict[int, tuple[int, int]], set[int]]:
        """({ordinal in batch: (message id, seq)} of what the statement stored (committed), the
        consultations it locked)."""
        args = (
            [w.consultation_id for w in batch],
            [w.actor.doctor_id if w.actor.is_doctor else w.actor.account_id for w in batch],
            [w.actor.is_doctor for w in batch],
            [w.actor.account_id for w in batch],
            [str(w.actor.role) for w in batch],
            [w.data.body for w in batch],
            [w.data.client_id for w in batch],
            [w.actor.address for w in batch],
            now,
        )
        # The driver's connection from the pool, outside any transaction: the one statement
        # commits by itself (the pool's reset on return sends nothing when none was begun).
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            sql = BATCH_SQL_SKIP_LOCKED if skip_locked else BATCH_SQL
            rows = await raw.driver_connection.fetch(sql, *args)  # type: ignore[union-attr]
        stored = {int(r[0]): (int(r[1]), int(r[2])) for r in rows if r[0]}
        return stored, {int(r[1]) for r in rows if not r[0]}
