"""Every query of consultations, messages and attachments, filtered by who is asking."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.models import AuditEvent
from ehospital.audit.service import audit_values
from ehospital.auth.models import Account
from ehospital.consultations.models import (
    CHATTING_STATUSES,
    EXPIRED_REASON,
    Attachment,
    Call,
    Consultation,
    Message,
    ReadMark,
    Status,
)
from ehospital.directory.models import Doctor
from ehospital.kit.context import Actor
from ehospital.kit.models import BigId, UTCDateTime, one_or_none, utcnow
from ehospital.patients.models import Patient


def visibility(actor: Actor) -> ColumnElement[bool]:
    """The rows of `consultations` an actor may see in full: their family's, or those assigned to them."""
    if actor.is_patient:
        return Consultation.account_id == actor.account_id
    if actor.is_practising_doctor:
        return Consultation.doctor_id == actor.doctor_id
    return Consultation.id.is_(None)


@functools.lru_cache(maxsize=8)
def _post_text_statement(by_doctor: bool, statuses: frozenset[Status]) -> Executable:
    """Built once per variant (building it costs more than running it): data-modifying CTEs
    take the next seq where the sender may write, insert the message with it, and insert the
    audit row naming the new message."""
    viewer = Consultation.doctor_id if by_doctor else Consultation.account_id
    taken = (
        update(Consultation)
        .where(
            Consultation.id == bindparam("p_consultation_id", type_=BigId),
            viewer == bindparam("p_viewer", type_=BigId),
            Consultation.status.in_(sorted(str(s) for s in statuses)),
        )
        .values(last_seq=Consultation.last_seq + literal_column("1"))
        .returning(Consultation.last_seq, Consultation.status, Consultation.patient_id)
        .cte("taken")
    )
    stored = (
        insert(Message)
        .from_select(
            ["consultation_id", "seq", "sender_id", "sender_role", "kind", "body", "created_at", "client_id"],
            select(
                bindparam("p_consultation_id", type_=BigId),
                taken.c.last_seq,
                bindparam("p_sender_id", type_=BigId),
                bindparam("p_sender_role", type_=String()),
                literal_column("'text'"),
                bindparam("p_body", type_=Text()),
                bindparam("p_created_at", type_=UTCDateTime()),
                bindparam("p_client_id", type_=String()),
            ),
        )
        .returning(*Message.__table__.c)
        .cte("stored")
    )
    audit_cols = [c.name for c in AuditEvent.__table__.c if c.name not in _AUDIT_FILLED_LATER]
    audited = insert(AuditEvent).from_select(
        [*audit_cols, "resource_id", "patient_id"],
        select(
            *(bindparam(f"audit_{name}", type_=AuditEvent.__table__.c[name].type) for name in audit_cols),
            cast(stored.c.id, String),
            taken.c.patient_id,
        ).select_from(stored.join(taken, true())),
    )
    return select(Message, taken.c.status).from_statement(
        select(*stored.c, taken.c.status)
        .select_from(stored.join(taken, true()))
        .add_cte(audited.cte("audited"))
    )


def _offered_late() -> ColumnElement[bool]:
    """Addressed to or accepted by a doctor who has not answered in time: on offer to the
    centre's other doctors."""
    return and_(
        Consultation.status.in_([Status.REQUESTED, Status.ACCEPTED]),
        Consultation.late_at.is_not(None),
        Consultation.first_response_at.is_(None),
        Consultation.doctor_id.is_not(None),
    )


_AUDIT_FILLED_LATER = frozenset({"id", "seq", "prev_hash", "hash", "resource_id", "patient_id"})


@functools.lru_cache(maxsize=4)
def _visible_statement(by_account: bool, lock: bool) -> Select[tuple[Consultation]]:
    """One consultation by id where the viewer (account or doctor) may see it; built once."""
    viewer = Consultation.account_id if by_account else Consultation.doctor_id
    query = select(Consultation).where(
        Consultation.id == bindparam("consultation_id", type_=BigId),
        viewer == bindparam("viewer", type_=BigId),
    )
    return query.with_for_update() if lock else query


def visible_consultations(actor: Actor) -> Select[tuple[Consultation]]:
    return select(Consultation).where(visibility(actor))


class ConsultationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Consultation | Message | Attachment | Call) -> None:
        self.session.add(obj)

    async def visible(self, actor: Actor, consultation_id: int, *, lock: bool = False) -> Consultation | None:
        """The consultation if the actor may see it in full (as `visibility`), optionally locked."""
        if actor.is_patient:
            viewer = actor.account_id
        elif actor.is_practising_doctor:
            assert actor.doctor_id is not None
            viewer = actor.doctor_id
        else:
            return None
        found = await self.session.scalars(
            _visible_statement(actor.is_patient, lock), {"consultation_id": consultation_id, "viewer": viewer}
        )
        return found.one_or_none()

    async def get(self, consultation_id: int) -> Consultation | None:
        """A consultation by id, for callers that already checked the right to it."""
        return await self.session.get(Consultation, consultation_id)

    async def in_queue_of(self, centre_id: int, consultation_id: int) -> Consultation | None:
        """A consultation waiting in a centre's queue (no doctor named)."""
        return await one_or_none(
            self.session,
            select(Consultation).where(
                Consultation.id == consultation_id,
                Consultation.centre_id == centre_id,
                Consultation.doctor_id.is_(None),
                Consultation.status == Status.REQUESTED,
            ),
        )

    async def list_visible(
        self, actor: Actor, *, status: str | None, limit: int, offset: int
    ) -> Sequence[tuple[Consultation, Patient, str | None]]:
        query = (
            visible_consultations(actor)
            .add_columns(Patient, Doctor.name)
            .join(Patient, Patient.id == Consultation.patient_id)
            .outerjoin(Doctor, Doctor.id == Consultation.doctor_id)
            .order_by(Consultation.id.desc())
            .limit(limit)
            .offset(offset)
        )
        if status is not None:
            query = query.where(Consultation.status == status)
        rows = (await self.session.execute(query)).all()
        return [(r[0], r[1], r[2]) for r in rows]

    async def queue(
        self, centre_id: int, now: datetime, limit: int, doctor_id: int | None = None
    ) -> Sequence[tuple[Consultation, Patient, int]]:
        """Waiting consultations of the centre: unassigned requests, and (for `doctor_id`) those
        another doctor accepted but did not answer in time (offered to the others)."""
        evidence = (
            select(func.count(Attachment.id))
            .where(Attachment.consultation_id == Consultation.id)
            .scalar_subquery()
        )
        rows = (
            await self.session.execute(
                select(Consultation, Patient, evidence)
                .join(Patient, Patient.id == Consultation.patient_id)
                .where(
                    Consultation.centre_id == centre_id,
                    or_(
                        and_(
                            Consultation.doctor_id.is_(None),
                            Consultation.status == Status.REQUESTED,
                            Consultation.expires_at > now,
                        ),
                        and_(
                            _offered_late(),
                            Consultation.expires_at > now,
                            Consultation.doctor_id != (doctor_id or 0),
                        ),
                    ),
                )
                .order_by(Consultation.created_at, Consultation.id)
                .limit(limit)
            )
        ).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def open_for_patient_in_centre(self, patient_id: int, centre_id: int) -> Consultation | None:
        return await one_or_none(
            self.session,
            select(Consultation)
            .where(
                Consultation.patient_id == patient_id,
                Consultation.centre_id == centre_id,
                Consultation.status.in_([Status.REQUESTED, *CHATTING_STATUSES]),
            )
            .limit(1),
        )

    async def active_counts(self, doctor_ids: Sequence[int]) -> dict[int, int]:
        """Open (accepted or running) consultations per doctor, for several doctors at once."""
        if not doctor_ids:
            return {}
        rows = await self.session.execute(
            select(Consultation.doctor_id, func.count())
            .where(Consultation.doctor_id.in_(doctor_ids), Consultation.status.in_(list(CHATTING_STATUSES)))
            .group_by(Consultation.doctor_id)
        )
        return {int(d): int(n) for d, n in rows.tuples() if d is not None}

    async def active_count(self, doctor_id: int) -> int:
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Consultation)
                .where(
                    Consultation.doctor_id == doctor_id,
                    Consultation.status.in_(list(CHATTING_STATUSES)),
                )
            )
            or 0
        )

    async def take_over(self, consultation_id: int, doctor_id: int, now: datetime, due: datetime) -> bool:
        """Atomically take a late consultation over from the doctor who did not answer; the new
        doctor has a fresh first-answer deadline `due` (and it is no longer on offer)."""
        result = await self.session.execute(
            update(Consultation)
            .where(
                Consultation.id == consultation_id,
                _offered_late(),
                Consultation.expires_at > now,
                Consultation.doctor_id != doctor_id,
            )
            .values(
                doctor_id=doctor_id,
                status=Status.ACCEPTED,
                accepted_at=now,
                late_at=None,
                first_response_due_at=due,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def late_offer_in(self, centre_id: int, consultation_id: int) -> Consultation | None:
        return await one_or_none(
            self.session,
            select(Consultation).where(
                Consultation.id == consultation_id,
                Consultation.centre_id == centre_id,
                _offered_late(),
            ),
        )

    async def set_close_due(self, consultation_id: int, due: datetime) -> None:
        await self.session.execute(
            update(Consultation)
            .where(Consultation.id == consultation_id)
            .values(close_due_at=due, overdue_at=None)
            .execution_options(synchronize_session=False)
        )

    async def due_overdue(self, now: datetime) -> Sequence[Consultation]:
        """Accepted or running consultations past their close promise, not yet marked."""
        return await self._due(
            Consultation.status.in_(list(CHATTING_STATUSES)),
            Consultation.overdue_at.is_(None),
            Consultation.close_due_at <= now,
        )

    async def due_late(self, now: datetime) -> Sequence[Consultation]:
        """Open consultations whose first-answer deadline passed without an answer, not yet marked."""
        return await self._due(
            Consultation.status.in_([Status.REQUESTED, Status.ACCEPTED]),
            Consultation.first_response_at.is_(None),
            Consultation.late_at.is_(None),
            Consultation.first_response_due_at <= now,
        )

    async def _due(self, *conditions: ColumnElement[bool]) -> Sequence[Consultation]:
        """Up to 500 consultations a sweep should mark, locked; rows another process's sweep
        holds are skipped (it marks them)."""
        return (
            await self.session.scalars(
                select(Consultation)
                .where(*conditions)
                .order_by(Consultation.id)
                .limit(500)
                .with_for_update(skip_locked=True)
            )
        ).all()

    async def waiting_ahead(self, consultation: Consultation) -> int:
        """Requests of the same queue (the centre's, or the named doctor's) opened before this one."""
        queue = (
            Consultation.doctor_id.is_(None)
            if consultation.doctor_id is None
            else Consultation.doctor_id == consultation.doctor_id
        )
        return int(
            await self.session.scalar(
                select(func.count())
                .select_from(Consultation)
                .where(
                    Consultation.centre_id == consultation.centre_id,
                    Consultation.status == Status.REQUESTED,
                    queue,
                    or_(
                        Consultation.created_at < consultation.created_at,
                        and_(
                            Consultation.created_at == consultation.created_at,
                            Consultation.id < consultation.id,
                        ),
                    ),
                )
            )
            or 0
        )

    async def recent_accept_minutes(self, centre_id: int, since: datetime) -> list[float]:
        """Minutes from request to acceptance of the centre's recent consultations."""
        rows = (
            await self.session.execute(
                select(Consultation.created_at, Consultation.accepted_at)
                .where(
                    Consultation.centre_id == centre_id,
                    Consultation.accepted_at.is_not(None),
                    Consultation.created_at >= since,
                )
                .order_by(Consultation.id.desc())
                .limit(200)
            )
        ).all()
        return [
            (accepted - created).total_seconds() / 60 for created, accepted in rows if accepted is not None
        ]

    async def claim(self, consultation_id: int, doctor_id: int, now: datetime) -> bool:
        """Atomically take a requested consultation; False if someone else got there first."""
        result = await self.session.execute(
            update(Consultation)
            .where(
                Consultation.id == consultation_id,
                Consultation.status == Status.REQUESTED,
                or_(Consultation.doctor_id.is_(None), Consultation.doctor_id == doctor_id),
                Consultation.expires_at > now,
            )
            .values(doctor_id=doctor_id, status=Status.ACCEPTED, accepted_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def take_seq(
        self, actor: Actor, consultation_id: int, statuses: frozenset[Status]
    ) -> tuple[int, str, int] | None:
        """Number the next message of a consultation the actor may write to, in one statement.

        Returns (seq, status, patient_id), or None when it is not theirs or not in `statuses`.
        """
        row = (
            await self.session.execute(
                update(Consultation)
                .where(
                    Consultation.id == consultation_id,
                    visibility(actor),
                    Consultation.status.in_([str(s) for s in statuses]),
                )
                .values(last_seq=Consultation.last_seq + 1)
                .returning(Consultation.last_seq, Consultation.status, Consultation.patient_id)
                .execution_options(synchronize_session=False)
            )
        ).first()
        return None if row is None else (int(row[0]), str(row[1]), int(row[2]))

    async def post_text_pg(
        self,
        actor: Actor,
        consultation_id: int,
        statuses: frozenset[Status],
        body: str,
        client_id: str | None = None,
    ) -> tuple[Message, str] | None:
        """PostgreSQL: number, store and audit a text message in ONE statement (the chat hot path).

        Returns (message, status of the consultation) or None when the actor may not write.
        """
        if not (actor.is_patient or actor.is_practising_doctor):
            return None
        statement = _post_text_statement(actor.is_doctor, statuses)
        params = {
            "p_consultation_id": consultation_id,
            "p_viewer": actor.doctor_id if actor.is_doctor else actor.account_id,
            "p_sender_id": actor.account_id,
            "p_sender_role": str(actor.role),
            "p_body": body,
            "p_created_at": utcnow(),
            "p_client_id": client_id,
            **{f"audit_{k}": v for k, v in audit_values(actor, "create", "message", None).items()},
        }
        row = (await self.session.execute(statement, params)).first()
        return None if row is None else (row[0], str(row[1]))

    async def mark_started(self, consultation_id: int, now: datetime) -> None:
        await self.session.execute(
            update(Consultation)
            .where(Consultation.id == consultation_id, Consultation.status == Status.ACCEPTED)
            .values(status=Status.IN_PROGRESS, started_at=now, first_response_at=now)
            .execution_options(synchronize_session=False)
        )

    async def insert_message(self, **values: object) -> Message:
        """INSERT … RETURNING the row (no unit-of-work round trip on the chat hot path)."""
        message = await self.session.scalar(
            insert(Message).values(created_at=utcnow(), **values).returning(Message)
        )
        assert message is not None
        return message

    async def next_seq(self, consultation_id: int) -> int:
        """Hand out the next message number; the row lock orders concurrent senders."""
        seq = await self.session.scalar(
            update(Consultation)
            .where(Consultation.id == consultation_id)
            .values(last_seq=Consultation.last_seq + 1)
            .returning(Consultation.last_seq)
            .execution_options(synchronize_session=False)
        )
        assert seq is not None
        return int(seq)

    async def messages(self, consultation_id: int, after_seq: int, limit: int) -> Sequence[Message]:
        return (
            await self.session.scalars(
                select(Message)
                .where(Message.consultation_id == consultation_id, Message.seq > after_seq)
                .order_by(Message.seq)
                .limit(limit)
            )
        ).all()

    async def message_by_client_id(
        self, consultation_id: int, sender_id: int, client_id: str
    ) -> Message | None:
        return await one_or_none(
            self.session,
            select(Message).where(
                Message.consultation_id == consultation_id,
                Message.sender_id == sender_id,
                Message.client_id == client_id,
            ),
        )

    async def mark_read(self, consultation_id: int, account_id: int, seq: int, now: datetime) -> int:
        """Move the account's read mark forward to `seq` (never back); returns the mark now stored."""
        found = await self.session.get(ReadMark, (consultation_id, account_id), with_for_update=True)
        if found is None:
            self.session.add(
                ReadMark(consultation_id=consultation_id, account_id=account_id, seq=seq, read_at=now)
            )
            await self.session.flush()
            return seq
        if seq > found.seq:
            found.seq = seq
            found.read_at = now
        return found.seq

    async def read_marks(self, consultation_id: int) -> Sequence[tuple[ReadMark, str]]:
        rows = await self.session.execute(
            select(ReadMark, Account.role)
            .join(Account, Account.id == ReadMark.account_id)
            .where(ReadMark.consultation_id == consultation_id)
            .order_by(ReadMark.account_id)
        )
        return [(mark, str(role)) for mark, role in rows.tuples()]

    async def open_call(self, consultation_id: int) -> Call | None:
        """The call of the consultation that has not ended, if any."""
        return await one_or_none(
            self.session,
            select(Call)
            .where(Call.consultation_id == consultation_id, Call.ended_at.is_(None))
            .order_by(Call.id.desc())
            .limit(1),
        )

    async def call(self, consultation_id: int, call_id: int, *, lock: bool = False) -> Call | None:
        query = select(Call).where(Call.id == call_id, Call.consultation_id == consultation_id)
        return await one_or_none(self.session, query.with_for_update() if lock else query)

    async def calls(self, consultation_id: int) -> Sequence[Call]:
        return (
            await self.session.scalars(
                select(Call).where(Call.consultation_id == consultation_id).order_by(Call.id)
            )
        ).all()

    async def has_doctor_message(self, consultation_id: int) -> bool:
        found = await self.session.scalar(
            select(Message.id)
            .where(
                Message.consultation_id == consultation_id,
                Message.sender_role == "doctor",
                Message.kind.in_(["text", "image"]),
            )
            .limit(1)
        )
        return found is not None

    async def attachments(self, consultation_id: int, purpose: str | None = None) -> Sequence[Attachment]:
        query = select(Attachment).where(Attachment.consultation_id == consultation_id)
        if purpose is not None:
            query = query.where(Attachment.purpose == purpose)
        return (await self.session.scalars(query.order_by(Attachment.id))).all()

    async def uploads_of(self, uploader_id: int, ids: Sequence[int]) -> Sequence[Attachment]:
        """Unattached uploads of one account among `ids`."""
        return (
            await self.session.scalars(
                select(Attachment).where(
                    Attachment.id.in_(ids),
                    Attachment.uploader_id == uploader_id,
                    Attachment.consultation_id.is_(None),
                )
            )
        ).all()

    async def attachment_for(self, actor: Actor, attachment_id: int) -> tuple[Attachment, int | None] | None:
        """An attachment the actor may read, with the patient it concerns (if attached)."""
        visible_ids = visible_consultations(actor).with_only_columns(Consultation.id)
        row = (
            await self.session.execute(
                select(Attachment, Consultation.patient_id)
                .outerjoin(Consultation, Consultation.id == Attachment.consultation_id)
                .where(
                    Attachment.id == attachment_id,
                    or_(
                        and_(
                            Attachment.consultation_id.is_(None),
                            Attachment.uploader_id == actor.account_id,
                        ),
                        Attachment.consultation_id.in_(visible_ids),
                    ),
                )
            )
        ).first()
        return None if row is None else (row[0], row[1])

    async def known_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of these storage keys belong to an attachment row."""
        found = await self.session.scalars(
            select(Attachment.storage_key).where(Attachment.storage_key.in_(keys))
        )
        return set(found)

    async def delete_unattached_before(self, before: datetime) -> list[str]:
        """Forget uploads never attached to any consultation; returns their storage keys."""
        # Re-checked in the DELETE itself: an upload attached meanwhile is kept.
        result = await self.session.execute(
            delete(Attachment)
            .where(Attachment.consultation_id.is_(None), Attachment.created_at < before)
            .returning(Attachment.storage_key)
        )
        return list(result.scalars())

    async def claim_uploads(
        self, uploader_id: int, ids: Sequence[int], consultation_id: int, purpose: str
    ) -> int:
        """Attach unattached uploads of one account to a consultation, atomically; returns how
        many were claimed (fewer than asked means some were not theirs or already used)."""
        result = await self.session.execute(
            update(Attachment)
            .where(
                Attachment.id.in_(ids),
                Attachment.uploader_id == uploader_id,
                Attachment.consultation_id.is_(None),
            )
            .values(consultation_id=consultation_id, purpose=purpose)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def expire_due(self, now: datetime) -> Sequence[int]:
        """Mark requested consultations past their deadline as expired; returns their ids."""
        ids = (
            await self.session.scalars(
                select(Consultation.id).where(
                    Consultation.status == Status.REQUESTED, Consultation.expires_at <= now
                )
            )
        ).all()
        if ids:
            await self.session.execute(
                update(Consultation)
                .where(Consultation.id.in_(ids), Consultation.status == Status.REQUESTED)
                .values(
                    status=Status.EXPIRED,
                    ended_at=now,
                    end_reason=EXPIRED_REASON,
                    refund_cents=Consultation.price_cents,
                    refunded_at=now,
                    refund_reason="expired",
                )
                .execution_options(synchronize_session=False)
            )
        return ids
