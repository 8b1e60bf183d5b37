"""The quality dashboard: first-response times, outcomes, refunds and doctors' workload of the
consultations of one centre (its manager) or of every centre (an administrator), by day.

Definitions (docs/ARCHITECTURE.md, "Quality dashboard"):

* A consultation belongs to the calendar day, in China time, on which it was *requested*; the
  rates of a day divide its consultations' current outcomes by how many were requested that day
  (so the last days' figures settle as their consultations close; `open` says how many have not).
* First response: from the request to the first doctor message of substance (text or image, not
  the system's event lines), so time spent waiting in the queue counts. Percentiles are over the
  consultations that have such a message, by linear interpolation between the ordered values
  (PostgreSQL's `percentile_cont`, numpy's default).
* Refunds count on the day they fell due, for the centre of the consultation they came from.
* Workload counts what a doctor did within the period (accepted, completed, messages sent), the
  median first response over the consultations requested in it that they answered, and how many
  consultations they have open now.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.models import Role
from ehospital.consultations.models import OPEN_STATUSES, Status
from ehospital.directory.models import Centre
from ehospital.kit.context import Actor
from ehospital.kit.errors import Forbidden, NotFound, Unprocessable
from ehospital.kit.models import utcnow
from ehospital.kit.schemas import MAX_DB_ID
from ehospital.quality.repository import HOSPITAL_ZONE, FirstResponse, QualityRepository
from ehospital.quality.schemas import CentreRef, CentreStats, Dashboard, DayStats, DoctorLoad, Stats

ZONE = ZoneInfo(HOSPITAL_ZONE)
DEFAULT_DAYS = 14
MAX_DAYS = 366
VIEWERS = frozenset({Role.CENTRE_MANAGER, Role.ADMIN})
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# Far enough from the ends of the calendar that a day's UTC bounds always exist.
_EARLIEST, _LATEST = date(1970, 1, 1), date(9998, 12, 31)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-quantile (0 ≤ q ≤ 1) of ascending values, interpolating linearly between ranks."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * q
    below, above = math.floor(position), math.ceil(position)
    value = ordered[below] + (ordered[above] - ordered[below]) * (position - below)
    return round(value, 1)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(frozen=True, slots=True)
class Period:
    """Calendar days `first` to `last`, both included, in China time."""

    first: date
    last: date

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range((self.last - self.first).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """The UTC instants where the first day starts and the day after the last starts."""
        lo = datetime.combine(self.first, time(), ZONE).astimezone(UTC)
        hi = datetime.combine(self.last + timedelta(days=1), time(), ZONE).astimezone(UTC)
        return lo, hi


def _day(text: str | None, name: str) -> date | None:
    if text is None or text == "":
        return None
    try:
        if not _ISO_DAY.fullmatch(text):
            raise ValueError(text)
        value = date.fromisoformat(text)
    except ValueError:
        raise Unprocessable(
            f"`{name}` must be a date written YYYY-MM-DD", code="invalid_date", field=name
        ) from None
    if not _EARLIEST <= value <= _LATEST:
        raise Unprocessable(f"`{name}` is out of range", code="invalid_date", field=name)
    return value


def parse_period(first: str | None, last: str | None, *, today: date) -> Period:
    """The period asked for: `to` defaults to today, `from` to 14 days ending on `to`."""
    end = _day(last, "to") or today
    start = _day(first, "from") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise Unprocessable("`from` is after `to`", code="date_range_reversed")
    if (end - start).days + 1 > MAX_DAYS:
        raise Unprocessable(
            f"a dashboard covers at most {MAX_DAYS} days", code="date_range_too_long", max_days=MAX_DAYS
        )
    return Period(start, end)


def today_in_china(now: datetime | None = None) -> date:
    return (now or utcnow()).astimezone(ZONE).date()


@dataclass
class _Bucket:
    """What one centre (or several) had on one day (or several)."""

    statuses: Counter[str] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)
    refunds: int = 0
    refund_cents: int = 0

    def absorb(self, other: _Bucket) -> None:
        self.statuses.update(other.statuses)
        self.waits.extend(other.waits)
        self.refunds += other.refunds
        self.refund_cents += other.refund_cents

    def stats(self) -> dict[str, object]:
        n = self.statuses.total()
        waits = sorted(self.waits)
        return {
            "requested": n,
            "completed": self.statuses[Status.COMPLETED],
            "expired": self.statuses[Status.EXPIRED],
            "cancelled": self.statuses[Status.CANCELLED],
            "terminated": self.statuses[Status.TERMINATED],
            "open": sum(self.statuses[s] for s in OPEN_STATUSES),
            "completion_rate": _rate(self.statuses[Status.COMPLETED], n),
            "expiry_rate": _rate(self.statuses[Status.EXPIRED], n),
            "cancellation_rate": _rate(self.statuses[Status.CANCELLED], n),
            "answered": len(waits),
            "first_response_p50_s": percentile(waits, 0.50),
            "first_response_p90_s": percentile(waits, 0.90),
            "first_response_p95_s": percentile(waits, 0.95),
            "refunds": self.refunds,
            "refund_cents": self.refund_cents,
        }


def _merged(buckets: Iterable[_Bucket]) -> _Bucket:
    total = _Bucket()
    for bucket in buckets:
        total.absorb(bucket)
    return total


def _wait(r: FirstResponse) -> float:
    return (r.answered_at - r.requested_at).total_seconds()


def _ref(c: Centre) -> CentreRef:
    return CentreRef(id=c.id, code=c.code, name_en=c.name_en, name_zh=c.name_zh)


class QualityService:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = QualityRepository(session)

    async def _named_centre(self, centre: str) -> Centre | None:
        if centre.isdigit():
            number = int(centre)
            return await self.repo.centre(centre_id=number) if 1 <= number <= MAX_DB_ID else None
        return await self.repo.centre(code=centre) if len(centre) <= 32 else None

    async def scope(self, actor: Actor, centre: str | None = None) -> tuple[list[Centre], list[int] | None]:
        """The centres the caller sees (one named, or all theirs) and the filter for the queries
        (None: every centre). A manager sees only their centre: another one is "not found"."""
        if actor.role not in VIEWERS:
            raise Forbidden(
                "the quality dashboard is for centre managers and administrators", code="wrong_role"
            )
        chosen = await self._named_centre(centre.strip()) if centre and centre.strip() else None
        if centre and centre.strip() and chosen is None:
            raise NotFound("no such centre", code="centre_not_found")
        if actor.role is Role.CENTRE_MANAGER:
            own = await self.repo.centre(centre_id=actor.centre_id) if actor.centre_id is not None else None
            if own is None:
                raise Forbidden("this manager's account names no centre", code="no_centre")
            if chosen is not None and chosen.id != own.id:
                raise NotFound("no such centre", code="centre_not_found")
            return [own], [own.id]
        if chosen is not None:
            return [chosen], [chosen.id]
        return list(await self.repo.centres()), None

    async def dashboard(
        self,
        actor: Actor,
        *,
        first: str | None = None,
        last: str | None = None,
        centre: str | None = None,
        now: datetime | None = None,
    ) -> Dashboard:
        """The dashboard of a period (default: the last 14 days) for the caller's centres."""
        now = now or utcnow()
        period = parse_period(first, last, today=today_in_china(now))
        centres, ids = await self.scope(actor, centre)
        lo, hi = period.bounds()

        buckets: dict[tuple[int, date], _Bucket] = {}

        def bucket(centre_id: int, day: date) -> _Bucket:
            return buckets.setdefault((centre_id, day), _Bucket())

        for o in await self.repo.outcomes(lo, hi, ids):
            bucket(o.centre_id, o.day).statuses[o.status] += o.count
        responses = await self.repo.first_responses(lo, hi, ids)
        for r in responses:
            bucket(r.centre_id, r.requested_at.astimezone(ZONE).date()).waits.append(_wait(r))
        for f in await self.repo.refunds(lo, hi, ids):
            b = bucket(f.centre_id, f.day)
            b.refunds, b.refund_cents = b.refunds + f.count, b.refund_cents + f.cents

        per_day: dict[date, _Bucket] = {}
        per_centre: dict[int, _Bucket] = {}
        for (centre_id, day), b in buckets.items():
            per_day.setdefault(day, _Bucket()).absorb(b)
            per_centre.setdefault(centre_id, _Bucket()).absorb(b)
        shown = [c for c in centres if c.is_active or c.id in per_centre]
        by_centre = [
            CentreStats(
                centre=_ref(c),
                totals=Stats.model_validate(per_centre.get(c.id, _Bucket()).stats()),
                days=[DayStats(day=d, **buckets.get((c.id, d), _Bucket()).stats()) for d in period.days],
            )
            for c in shown
        ]
        return Dashboard(
            first_day=period.first,
            last_day=period.last,
            timezone=HOSPITAL_ZONE,
            generated_at=now,
            centres=[_ref(c) for c in shown],
            totals=Stats.model_validate(_merged(per_day.values()).stats()),
            days=[DayStats(day=d, **per_day.get(d, _Bucket()).stats()) for d in period.days],
            by_centre=by_centre,
            doctors=await self._workload(lo, hi, ids, responses),
        )

    async def _workload(
        self, lo: datetime, hi: datetime, ids: list[int] | None, responses: Sequence[FirstResponse]
    ) -> list[DoctorLoad]:
        consultations = await self.repo.doctor_consultations(lo, hi, ids)
        messages = await self.repo.doctor_messages(lo, hi, ids)
        open_now = await self.repo.doctor_open(ids)
        waits: dict[int, list[float]] = {}
        for r in responses:
            if r.doctor_id is not None:
                waits.setdefault(r.doctor_id, []).append(_wait(r))
        seen = sorted({*consultations, *messages, *open_now, *waits})
        doctors = await self.repo.doctors(ids, seen)
        loads = [
            DoctorLoad(
                doctor_id=d.id,
                name=d.name,
                centre_id=d.centre_id,
                accepted=consultations.get(d.id, (0, 0))[0],
                completed=consultations.get(d.id, (0, 0))[1],
                messages=messages.get(d.id, 0),
                answered=len(waits.get(d.id, [])),
                first_response_p50_s=percentile(sorted(waits.get(d.id, [])), 0.5),
                open_now=open_now.get(d.id, 0),
            )
            for d in doctors
        ]
        return sorted(loads, key=lambda x: (x.centre_id, -x.accepted, x.name, x.doctor_id))


CSV_FIELDS = tuple(Stats.model_fields)


def dashboard_csv(dashboard: Dashboard) -> str:
    """One row per day and centre (the same figures as `by_centre[].days`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("day", "centre_id", "centre_code", *CSV_FIELDS))
    for c in dashboard.by_centre:
        for d in c.days:
            row = d.model_dump()
            writer.writerow(
                (
                    d.day.isoformat(),
                    c.centre.id,
                    c.centre.code,
                    *("" if row[f] is None else row[f] for f in CSV_FIELDS),
                )
            )
    return out.getvalue()
