"""Every query of the quality dashboard: one per metric family, bounded by the date range.

Days are calendar days in China time. `local_date()` turns a stored UTC timestamp into that day
inside the database, so counts are grouped there and only the grouped rows travel; first-response
times travel one row per answered consultation, because percentiles need the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date

from ehospital.consultations.models import CHATTING_STATUSES, Consultation, Message
from ehospital.directory.models import Centre, Doctor
from ehospital.pharmacy.models import EventCode, Order, OrderEvent, PaymentNotice
from ehospital.prescriptions.models import Prescription

HOSPITAL_ZONE = "Asia/Shanghai"
# What counts as a doctor's answer of substance: what they wrote or sent, not the system's
# event lines (accepted, diagnosis recorded …). The same rule as completing a consultation
# (`ConsultationRepository.has_doctor_message`).
SUBSTANCE_KINDS = ("text", "image")


class local_date(FunctionElement[date]):
    """The calendar day in China time of a UTC timestamp column."""

    type = Date()
    name = "local_date"
    inherit_cache = True


@compiles(local_date, "postgresql")
def _local_date_pg(element: local_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE '{HOSPITAL_ZONE}' AS DATE)"


@compiles(local_date, "sqlite")
def _local_date_sqlite(element: local_date, compiler: SQLCompiler, **kw: Any) -> str:
    # Timestamps are stored as UTC text; China has kept UTC+8 without daylight saving since 1991.
    return f"date({compiler.process(element.clauses, **kw)}, '+8 hours')"


def as_date(value: object) -> date:
    """SQLite answers date() as text, PostgreSQL as a date."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class Outcome:
    centre_id: int
    day: date
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class FirstResponse:
    centre_id: int
    doctor_id: int | None
    requested_at: datetime
    answered_at: datetime


@dataclass(frozen=True, slots=True)
class Refunds:
    centre_id: int
    day: date
    count: int
    cents: int


def _in(column: InstrumentedAttribute[Any], lo: datetime, hi: datetime) -> ColumnElement[bool]:
    return and_(column >= lo, column < hi)


def _scoped(query: Select[Any], centre_ids: Sequence[int] | None) -> Select[Any]:
    return query if centre_ids is None else query.where(Consultation.centre_id.in_(centre_ids))


class QualityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def centres(self) -> Sequence[Centre]:
        return (await self.session.scalars(select(Centre).order_by(Centre.id))).all()

    async def centre(self, *, centre_id: int | None = None, code: str | None = None) -> Centre | None:
        query = select(Centre).where(Centre.id == centre_id if centre_id is not None else Centre.code == code)
        found: Centre | None = await self.session.scalar(query)
        return found

    async def outcomes(self, lo: datetime, hi: datetime, centre_ids: Sequence[int] | None) -> list[Outcome]:
        """How many consultations requested on each day of each centre are in each status now."""
        day = local_date(Consultation.created_at)
        query = _scoped(
            select(Consultation.centre_id, day, Consultation.status, func.count())
            .where(_in(Consultation.created_at, lo, hi))
            .group_by(Consultation.centre_id, day, Consultation.status),
            centre_ids,
        )
        rows = (await self.session.execute(query)).all()
        return [Outcome(int(c), as_date(d), str(s), int(n)) for c, d, s, n in rows]

    async def first_responses(
        self, lo: datetime, hi: datetime, centre_ids: Sequence[int] | None
    ) -> list[FirstResponse]:
        """Consultations requested in the range that a doctor answered: when, and by whom."""
        first = func.min(Message.created_at)
        query = _scoped(
            select(Consultation.centre_id, Consultation.doctor_id, Consultation.created_at, first)
            .join(Message, Message.consultation_id == Consultation.id)
            .where(
                _in(Consultation.created_at, lo, hi),
                Message.sender_role == "doctor",
                Message.kind.in_(SUBSTANCE_KINDS),
            )
            .group_by(
                Consultation.id, Consultation.centre_id, Consultation.doctor_id, Consultation.created_at
            ),
            centre_ids,
        )
        rows = (await self.session.execute(query)).all()
        return [FirstResponse(int(c), d, r, a) for c, d, r, a in rows]

    async def refunds(self, lo: datetime, hi: datetime, centre_ids: Sequence[int] | None) -> list[Refunds]:
        """Refunds that fell due on each day, by the centre of the consultation they came from:
        consultation fees refunded in full (cancelled before any answer, or expired with no
        doctor: `consultations.refunded_at`), and payments for pharmacy orders that could no
        longer take them (`refund_due` order events; the amount is the payment notice's)."""
        day = local_date(OrderEvent.at)
        query = _scoped(
            select(
                Consultation.centre_id,
                day,
                func.count(),
                func.coalesce(func.sum(PaymentNotice.amount_cents), 0),
            )
            .select_from(OrderEvent)
            .join(PaymentNotice, PaymentNotice.txn_id == OrderEvent.txn_id)
            .join(Order, Order.id == OrderEvent.order_id)
            .join(Prescription, Prescription.id == Order.prescription_id)
            .join(Consultation, Consultation.id == Prescription.consultation_id)
            .where(OrderEvent.code == EventCode.REFUND_DUE, _in(OrderEvent.at, lo, hi))
            .group_by(Consultation.centre_id, day),
            centre_ids,
        )
        rows = list((await self.session.execute(query)).all())
        fee_day = local_date(Consultation.refunded_at)
        fees = _scoped(
            select(
                Consultation.centre_id,
                fee_day,
                func.count(),
                func.coalesce(func.sum(Consultation.refund_cents), 0),
            )
            .where(Consultation.refunded_at.is_not(None), _in(Consultation.refunded_at, lo, hi))
            .group_by(Consultation.centre_id, fee_day),
            centre_ids,
        )
        rows += (await self.session.execute(fees)).all()
        return [Refunds(int(c), as_date(d), int(n), int(s)) for c, d, n, s in rows]

    async def doctor_consultations(
        self, lo: datetime, hi: datetime, centre_ids: Sequence[int] | None
    ) -> dict[int, tuple[int, int]]:
        """Per doctor: consultations accepted, and completed, within the range."""
        accepted = _in(Consultation.accepted_at, lo, hi)
        completed = and_(Consultation.status == "completed", _in(Consultation.ended_at, lo, hi))
        query = _scoped(
            select(
                Consultation.doctor_id,
                func.sum(case((accepted, 1), else_=0)),
                func.sum(case((completed, 1), else_=0)),
            )
            .where(Consultation.doctor_id.is_not(None), or_(accepted, _in(Consultation.ended_at, lo, hi)))
            .group_by(Consultation.doctor_id),
            centre_ids,
        )
        rows = (await self.session.execute(query)).all()
        return {int(d): (int(a or 0), int(c or 0)) for d, a, c in rows}

    async def doctor_messages(
        self, lo: datetime, hi: datetime, centre_ids: Sequence[int] | None
    ) -> dict[int, int]:
        """Per doctor: messages of substance they sent within the range."""
        query = _scoped(
            select(Doctor.id, func.count())
            .select_from(Message)
            .join(Doctor, Doctor.account_id == Message.sender_id)
            .join(Consultation, Consultation.id == Message.consultation_id)
            .where(
                Message.sender_role == "doctor",
                Message.kind.in_(SUBSTANCE_KINDS),
                _in(Message.created_at, lo, hi),
            )
            .group_by(Doctor.id),
            centre_ids,
        )
        return {int(d): int(n) for d, n in (await self.session.execute(query)).all()}

    async def doctor_open(self, centre_ids: Sequence[int] | None) -> dict[int, int]:
        """Per doctor: consultations accepted and not yet ended, now."""
        query = _scoped(
            select(Consultation.doctor_id, func.count())
            .where(Consultation.doctor_id.is_not(None), Consultation.status.in_(sorted(CHATTING_STATUSES)))
            .group_by(Consultation.doctor_id),
            centre_ids,
        )
        return {int(d): int(n) for d, n in (await self.session.execute(query)).all()}

    async def doctors(self, centre_ids: Sequence[int] | None, also: Sequence[int]) -> Sequence[Doctor]:
        """The verified doctors of the centres, and any other doctor named in `also`."""
        mine: ColumnElement[bool] = Doctor.verified_at.is_not(None)
        if centre_ids is not None:
            mine = and_(mine, Doctor.centre_id.in_(centre_ids))
        condition = or_(mine, Doctor.id.in_(also)) if also else mine
        return (await self.session.scalars(select(Doctor).where(condition).order_by(Doctor.id))).all()
