"""Glucose metrics of one person's readings (mg/dL), as the international consensus and the R
package iglu define them, so that the figures agree with iglu 4.3.0 (see
../shared/data/cgm/README.md for the conventions and reference values).

Readings are counted as they are: percentages are shares of readings; "in range" bounds are
inclusive, "below" is strict <, "above" strict >; the SD is the sample SD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Series:
    """One person's readings in time order: POSIX seconds (local wall-clock time read as UTC,
    as iglu does) and glucose in mg/dL."""

    times: Floats
    glucose: Floats

    @classmethod
    def of(cls, times: Sequence[datetime], glucose: Sequence[float]) -> Series:
        t = np.array([ts.timestamp() if ts.tzinfo else _naive_seconds(ts) for ts in times], dtype=np.float64)
        g = np.asarray(glucose, dtype=np.float64)
        keep = ~np.isnan(g)
        order = np.argsort(t[keep], kind="stable")
        return cls(t[keep][order], g[keep][order])


def _naive_seconds(ts: datetime) -> float:
    return (ts - datetime(1970, 1, 1)).total_seconds()


def sampling_interval_minutes(s: Series) -> float:
    """dt0: the median interval between readings, in whole minutes (5 for most CGMs)."""
    if len(s.times) < 2:
        return 5.0
    return float(round(np.median(np.diff(s.times)) / 60.0))


def _percent(mask: npt.NDArray[np.bool_]) -> float:
    return float(mask.mean() * 100.0) if mask.size else float("nan")


def _kovatchev(g: Floats) -> tuple[Floats, Floats]:
    """Low and high blood-glucose risk of each reading (Kovatchev 1997, as iglu)."""
    f = np.log(g) ** 1.084 - 5.381
    risk = 22.77 * f**2
    return np.where(f < 0, risk, 0.0), np.where(f > 0, risk, 0.0)


def basic_metrics(s: Series) -> dict[str, float]:
    """The metrics computed from the readings as they are (no interpolation)."""
    g = s.glucose
    n = int(g.size)
    if n == 0:
        return {"n_readings": 0}
    dt0 = sampling_interval_minutes(s)
    span_minutes = (s.times[-1] - s.times[0]) / 60.0
    expected = round(span_minutes / dt0) + 1
    mean = float(g.mean())
    sd = float(g.std(ddof=1)) if n > 1 else float("nan")
    below_54, below_70 = _percent(g < 54), _percent(g < 70)
    above_180, above_250 = _percent(g > 180), _percent(g > 250)
    low, high = _kovatchev(g)
    days = np.floor(s.times / 86400.0)
    daily = [(low[days == d].max(), high[days == d].max()) for d in np.unique(days)]
    q75, q25 = np.percentile(g, [75, 25])
    return {
        "n_readings": n,
        "active_percent": n / expected * 100.0,
        "ndays": round(span_minutes / 1440.0, 1),
        "mean": mean,
        "median": float(np.median(g)),
        "sd": sd,
        "cv": sd / mean * 100.0,
        "gmi": 3.31 + 0.02392 * mean,
        "ea1c": (46.7 + mean) / 28.7,
        "in_range_63_140": _percent((g >= 63) & (g <= 140)),
        "in_range_70_140": _percent((g >= 70) & (g <= 140)),
        "in_range_70_180": _percent((g >= 70) & (g <= 180)),
        "below_54": below_54,
        "below_70": below_70,
        "above_140": _percent(g > 140),
        "above_180": above_180,
        "above_250": above_250,
        "tbr_54_69": below_70 - below_54,
        "tar_181_250": above_180 - above_250,
        "gri": min(
            100.0,
            3.0 * below_54 + 2.4 * (below_70 - below_54) + 1.6 * above_250 + 0.8 * (above_180 - above_250),
        ),
        "lbgi": float(low.mean()),
        "hbgi": float(high.mean()),
        "adrr": float(np.mean([lo + hi for lo, hi in daily])),
        "j_index": 0.001 * (mean + sd) ** 2,
        "m_value": float(1000.0 * np.mean(np.abs(np.log10(g / 90.0)) ** 3)),
        "iqr": float(q75 - q25),
    }
