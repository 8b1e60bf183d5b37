"""Glucose alert conditions of one patient, judged from their recent readings alone.

Every condition follows the consensus episode rule so alerts do not flap: it begins when the
readings have been beyond the threshold for 15 minutes (an urgent low and a rapid fall at once:
they cannot wait) and ends only after 15 consecutive minutes back. The judgement is a pure
function of the readings of the last few hours, so any server process, after any restart,
reaches the same answer; the database keeps at most one live alert per condition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ehospital.glucose.metrics import MGDL_PER_MMOL, Floats

CONDITIONS = ("urgent_low", "low", "high", "sustained_high", "rapid_fall", "no_data")
EPISODE_MINUTES = 15.0
# Readings further apart than this break a run (the sensor was off: nothing is known between).
MAX_GAP_MINUTES = 30.0


@dataclass(frozen=True)
class Thresholds:
    """A patient's alert thresholds in mg/dL (the defaults of the consensus and of common CGM
    apps: urgent low < 54 mg/dL / 3.0 mmol/L, low < 70 / 3.9, high > 250 / 13.9, above 180 / 10.0
    for two hours, falling 3 mg/dL (0.17 mmol/L) a minute or faster, no data for 30 minutes)."""

    urgent_low: float = 54.0
    low: float = 70.0
    high: float = 250.0
    sustained_high: float = 180.0
    sustained_minutes: int = 120
    rapid_fall: float = 3.0  # mg/dL per minute
    no_data_minutes: int = 30

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(problems))

    def problems(self) -> list[str]:
        found = []
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                found.append(f"{f.name} must be a number")
        if found:
            return found
        if not 20 <= self.urgent_low < self.low:
            found.append("urgent_low must be at least 20 mg/dL and below low")
        if not self.low < self.sustained_high <= self.high <= 600:
            found.append("thresholds must rise: low < sustained_high <= high <= 600 mg/dL")
        if not 15 <= self.sustained_minutes <= 24 * 60:
            found.append("sustained_minutes must be 15 to 1440")
        if not 0.5 <= self.rapid_fall <= 10:
            found.append("rapid_fall must be 0.5 to 10 mg/dL per minute")
        if not 10 <= self.no_data_minutes <= 24 * 60:
            found.append("no_data_minutes must be 10 to 1440")
        return found

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def of(cls, values: Mapping[str, Any] | None) -> Thresholds:
        """From stored or submitted values; missing ones take the defaults (ValueError when
        a value is unknown or out of bounds)."""
        values = dict(values or {})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown thresholds: {', '.join(sorted(unknown))}")
        return cls(**values)

    @property
    def window_minutes(self) -> float:
        """How far back the readings must reach to judge every condition."""
        return max(float(self.sustained_minutes), 60.0) + 2 * EPISODE_MINUTES


@dataclass(frozen=True)
class Onset:
    """A condition in force: since when (UTC seconds of the first reading of it) and the
    reading that made it so."""

    condition: str
    since: float
    value: float  # mg/dL


def _own(values: Floats, threshold: float, unit: str) -> tuple[Floats, float]:
    """Values and a threshold in the unit the readings were measured in (mmol/L to one
    decimal), so 13.9 mmol/L is not above a 13.9 mmol/L (250 mg/dL) threshold."""
    if unit == "mmol/L":
        return np.round(values / MGDL_PER_MMOL, 1), round(threshold / MGDL_PER_MMOL, 1)
    return values, threshold


def _episode(
    times: Floats, inside: np.ndarray[Any, np.dtype[np.bool_]], start_minutes: float, step: float
) -> int | None:
    """Run the episode rule over the readings: the index where the episode in force at the
    last reading began, or None. It begins once the readings have been inside for
    `start_minutes` (0: at the first such reading) and ends after 15 minutes back outside; a
    run of readings lasts from its first to its last plus one sampling interval `step` (three
    5-minute readings are 15 minutes, as in the metrics' episodes); a gap over MAX_GAP_MINUTES
    breaks any run."""
    begun: int | None = None
    run_start: int | None = None  # first reading of the current run inside (or outside, when begun)
    for i in range(times.size):
        if i and times[i] - times[i - 1] > MAX_GAP_MINUTES * 60:
            begun, run_start = None, None
        if begun is None:
            if inside[i]:
                run_start = i if run_start is None else run_start
                if start_minutes == 0 or times[i] - times[run_start] + step >= start_minutes * 60:
                    begun, run_start = run_start, None
            else:
                run_start = None
        elif not inside[i]:
            run_start = i if run_start is None else run_start
            if times[i] - times[run_start] + step >= EPISODE_MINUTES * 60:
                begun, run_start = None, None
        else:
            run_start = None
    return begun


def falling_rates(times: Floats, mgdl: Floats) -> Floats:
    """mg/dL per minute at each reading, against the latest reading 10 to 20 minutes before
    it (NaN where there is none)."""
    rates = np.full(times.size, np.nan)
    if times.size < 2:
        return rates
    before = np.searchsorted(times, times - 600.0, side="right") - 1  # last one >= 10 min earlier
    ok = before >= 0
    j = np.where(ok, before, 0)
    span = times - times[j]
    ok &= span <= 1200.0
    rates[ok] = (mgdl[ok] - mgdl[j[ok]]) / (span[ok] / 60.0)
    return rates


def evaluate(times: Floats, mgdl: Floats, th: Thresholds, unit: str = "mg/dL") -> dict[str, Onset]:
    """The conditions in force at the last of these readings (UTC seconds, ascending; mg/dL),
    by the episode rule. `no_data` is judged by the clock, not here (see `data_missing`)."""
    found: dict[str, Onset] = {}
    if times.size == 0:
        return found
    rules: list[tuple[str, Any, float]] = []
    with np.errstate(invalid="ignore"):
        v, t = _own(mgdl, th.urgent_low, unit)
        rules.append(("urgent_low", v < t, 0.0))
        v, t = _own(mgdl, th.low, unit)
        rules.append(("low", v < t, EPISODE_MINUTES))
        v, t = _own(mgdl, th.high, unit)
        rules.append(("high", v > t, EPISODE_MINUTES))
        v, t = _own(mgdl, th.sustained_high, unit)
        rules.append(("sustained_high", v > t, float(th.sustained_minutes)))
        rules.append(("rapid_fall", falling_rates(times, mgdl) <= -th.rapid_fall, 0.0))
    step = float(np.clip(np.median(np.diff(times)), 60.0, 900.0)) if times.size > 1 else 300.0
    for condition, inside, start_minutes in rules:
        began = _episode(times, inside, start_minutes, step)
        if began is not None:
            found[condition] = Onset(condition, float(times[began]), float(mgdl[-1]))
    return found


def data_missing(last_reading: float | None, now: float, th: Thresholds) -> bool:
    """Whether a CGM that has sent data has been silent for longer than the threshold."""
    return last_reading is not None and now - last_reading > th.no_data_minutes * 60
