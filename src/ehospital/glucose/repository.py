"""Storage of glucose readings: bulk inserts and series reads on the driver's fast paths.

Readings are the one table that grows by millions of rows, so it bypasses the ORM: PostgreSQL
takes a whole batch as arrays in one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING`;
SQLite takes one `INSERT OR IGNORE` executemany. Both ignore a reading the same device already
sent for the same instant, which makes a retried upload harmless.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain, repeat

import numpy as np
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.glucose.ingest import Batch
from ehospital.glucose.metrics import Floats
from ehospital.kit.models import UTCDateTime

_COLUMNS = (
    "patient_id, device_id, measured_at, utc_offset_minutes, mgdl, value, unit, kind, source, received_at"
)

# The arrays travel as text literals ('{1.5,2,3}') that PostgreSQL parses in C: asyncpg's own
# array encoding checks every element against collections.abc, which cost a third of the
# request. Instants go as epoch seconds (to_timestamp keeps the microseconds).
_PG_INSERT = text(
    f"INSERT INTO glucose_readings ({_COLUMNS}) "
    "SELECT :patient_id, :device_id, to_timestamp(t.m), t.o, t.g, t.v, t.u, t.k, :source, :received_at "
    "FROM unnest(CAST(CAST(:m AS text) AS float8[]), CAST(CAST(:o AS text) AS smallint[]), "
    "CAST(CAST(:g AS text) AS float8[]), CAST(CAST(:v AS text) AS float8[]), "
    "CAST(CAST(:u AS text) AS text[]), CAST(CAST(:k AS text) AS text[])) AS t(m, o, g, v, u, k) "
    "ON CONFLICT (device_id, measured_at) DO NOTHING"
)


def _literal(values: Sequence[object]) -> str:
    """A PostgreSQL array literal of numbers or plain words (units, kinds: no quoting needed)."""
    return (
        "{" + ",".join(map(repr, values)) + "}"
        if values and isinstance(values[0], float)
        else ("{" + ",".join(map(str, values)) + "}")
    )


# SQLite formats the instant itself, from epoch seconds, as SQLAlchemy stores a DateTime there
# ("2026-11-22 08:05:00.000000", UTC; to the millisecond): Python's isoformat costs 4.5 µs a row.
# Rows go many to a statement (one `VALUES (…), (…), …` of up to 3,000 rows, SQLite allowing
# 32,766 parameters): SQLite then inserts them in one step, without the driver taking the GIL
# back for every row as executemany does, so other uploads are parsed meanwhile.
_SQLITE_ROW = "(?, ?, strftime('%Y-%m-%d %H:%M:%f', ?, 'unixepoch') || '000', ?, ?, ?, ?, ?, ?, ?)"
_SQLITE_ROWS_PER_STATEMENT = 3000


@functools.lru_cache(maxsize=8)
def _sqlite_insert(rows: int) -> str:
    return f"INSERT OR IGNORE INTO glucose_readings ({_COLUMNS}) VALUES " + ", ".join([_SQLITE_ROW] * rows)


def _sqlite_time(when: datetime) -> str:
    """How SQLAlchemy stores a DateTime in SQLite ("2026-11-22 08:05:00.000000", UTC here);
    isoformat is several times faster than strftime."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


# Seconds since 1970 as a float, computed by the database (no datetime objects per row).
_EPOCH = {
    "postgresql": "CAST(EXTRACT(EPOCH FROM measured_at) AS float8)",
    "sqlite": "(julianday(measured_at) - 2440587.5) * 86400.0",
}


_NONE: Floats = np.empty(0, dtype=np.float64)
_DAWN = datetime(1970, 1, 2, tzinfo=UTC)
_DUSK = datetime(9999, 1, 1, tzinfo=UTC)
_SERIES = {
    dialect: text(
        f"SELECT {epoch}, utc_offset_minutes, mgdl, unit FROM glucose_readings "
        "WHERE device_id IN (SELECT id FROM glucose_devices WHERE patient_id = :p) "
        "AND measured_at > :start AND measured_at <= :end ORDER BY measured_at, id"
    ).bindparams(bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))
    for dialect, epoch in _EPOCH.items()
}


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


@dataclass(frozen=True)
class SeriesRows:
    """A patient's readings in time order: UTC seconds, the device offset (minutes), mg/dL and
    the unit each was measured in."""

    times: Floats
    offsets: np.ndarray[tuple[int], np.dtype[np.int32]]
    mgdl: Floats
    units: list[str]

    @property
    def local_times(self) -> Floats:
        """Wall-clock time where each reading was taken, read as UTC (the metrics' convention)."""
        return self.times + self.offsets * 60.0

    def main_unit(self, default: str = "mg/dL") -> str:
        if not self.units:
            return default
        mmol = sum(1 for u in self.units if u == "mmol/L")
        return "mmol/L" if mmol * 2 > len(self.units) else "mg/dL"


class ReadingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(
        self,
        patient_id: int,
        device_id: int,
        source: str,
        readings: Batch,
        received_at: datetime,
    ) -> int:
        """Store the readings the device has not sent before; returns how many were new."""
        if not len(readings):
            return 0
        conn = await self.session.connection()
        if _dialect(self.session) == "postgresql":
            result = await conn.execute(
                _PG_INSERT,
                {
                    "patient_id": patient_id,
                    "device_id": device_id,
                    "source": source,
                    "received_at": received_at,
                    "m": _literal(readings.epoch.tolist()),
                    "o": _literal(readings.offset.tolist()),
                    "g": _literal(readings.mgdl.tolist()),
                    "v": _literal(readings.value.tolist()),
                    "u": _literal(readings.unit),
                    "k": _literal(readings.kind),
                },
            )
            return int(result.rowcount)
        received = _sqlite_time(received_at)
        n = len(readings)
        rows = list(
            zip(
                repeat(patient_id, n),
                repeat(device_id, n),
                readings.epoch.tolist(),
                readings.offset.tolist(),
                readings.mgdl.tolist(),
                readings.value.tolist(),
                readings.unit,
                readings.kind,
                repeat(source, n),
                repeat(received, n),
                strict=True,
            )
        )
        stored = 0
        for start in range(0, n, _SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[start : start + _SQLITE_ROWS_PER_STATEMENT]
            result = await conn.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(chain.from_iterable(chunk)))
            stored += int(result.rowcount)  # the rows inserted, not those ignored
        return stored

    async def series(
        self, patient_id: int, start: datetime | None = None, end: datetime | None = None
    ) -> SeriesRows:
        """The patient's readings with start < measured_at <= end, in time order."""
        dialect = _dialect(self.session)
        result = await self.session.execute(
            _SERIES[dialect],
            {"p": patient_id, "start": start or _DAWN, "end": end or _DUSK},
        )
        rows = result.all()
        if not rows:
            return SeriesRows(_NONE, np.empty(0, dtype=np.int32), _NONE, [])
        times, offsets, mgdl, units = zip(*rows, strict=True)
        return SeriesRows(
            np.asarray(times, dtype=np.float64).round(3),
            np.asarray(offsets, dtype=np.int32),
            np.asarray(mgdl, dtype=np.float64),
            list(units),
        )
