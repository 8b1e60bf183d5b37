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
    # The unit the readings were measured in. The consensus gives its thresholds in both units
    # (54/70/180/250 mg/dL, 3.0/3.9/10.0/13.9 mmol/L) and they differ at the edge: 13.9 mmol/L
    # is 250.2 mg/dL, above 250 but not above 13.9. Readings keep their own unit's thresholds.
    unit: str = "mg/dL"

    @classmethod
    def of(cls, times: Sequence[datetime], glucose: Sequence[float], unit: str = "mg/dL") -> Series:
        t = np.array([ts.timestamp() if ts.tzinfo else _naive_seconds(ts) for ts in times], dtype=np.float64)
        g = np.asarray(glucose, dtype=np.float64)
        keep = ~np.isnan(g)
        order = np.argsort(t[keep], kind="stable")
        return cls(t[keep][order], g[keep][order], unit)

    def in_own_unit(self) -> tuple[Floats, Thresholds]:
        """The readings in the unit they were measured in (mmol/L to one decimal, as meters
        show them), with that unit's consensus thresholds."""
        if self.unit == "mmol/L":
            return np.round(self.glucose / MGDL_PER_MMOL, 1), MMOL_THRESHOLDS
        return self.glucose, MGDL_THRESHOLDS


MGDL_PER_MMOL = 18.0
# The limits of common CGMs (Dexcom, Libre, Sibionics): readings at or beyond are LO / HI.
SENSOR_FLOOR_MGDL = 40.0
SENSOR_CEILING_MGDL = 400.0


@dataclass(frozen=True)
class Thresholds:
    """The consensus cut-offs in one unit (named by their mg/dL values)."""

    t54: float
    t63: float
    t70: float
    t140: float
    t180: float
    t250: float


MGDL_THRESHOLDS = Thresholds(54.0, 63.0, 70.0, 140.0, 180.0, 250.0)
MMOL_THRESHOLDS = Thresholds(3.0, 3.5, 3.9, 7.8, 10.0, 13.9)


def _naive_seconds(ts: datetime) -> float:
    return (ts - datetime(1970, 1, 1)).total_seconds()


# Grid steps that divide a day into whole points (the day-by-day grid has one row per day).
_DAY_STEPS = np.array([m for m in range(1, 61) if 1440 % m == 0], dtype=np.float64)


def sampling_interval_minutes(s: Series) -> float:
    """dt0: the median interval between readings, in whole minutes (5 for most CGMs; 15 for
    some), taken to the nearest step that divides a day (1 to 60 minutes): readings 7 minutes
    apart use 6, and readings seconds apart use 1."""
    if len(s.times) < 2:
        return 5.0
    minutes = float(np.median(np.diff(s.times))) / 60.0
    return float(_DAY_STEPS[np.argmin(np.abs(_DAY_STEPS - minutes))])


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
    own, cut = s.in_own_unit()
    below_54, below_70 = _percent(own < cut.t54), _percent(own < cut.t70)
    above_180, above_250 = _percent(own > cut.t180), _percent(own > cut.t250)
    low, high = _kovatchev(g)
    days = np.floor(s.times / 86400.0)  # times are sorted, so each day is one run
    starts = np.concatenate(([0], np.flatnonzero(np.diff(days)) + 1))
    daily_risk = np.maximum.reduceat(low, starts) + np.maximum.reduceat(high, starts)
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
        "in_range_63_140": _percent((own >= cut.t63) & (own <= cut.t140)),
        "in_range_70_140": _percent((own >= cut.t70) & (own <= cut.t140)),
        "in_range_70_180": _percent((own >= cut.t70) & (own <= cut.t180)),
        "below_54": below_54,
        "below_70": below_70,
        "above_140": _percent(own > cut.t140),
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
        "adrr": float(daily_risk.mean()),
        "j_index": 0.001 * (mean + sd) ** 2,
        "m_value": float(1000.0 * np.mean(np.abs(np.log10(g / 90.0)) ** 3)),
        "iqr": float(q75 - q25),
        # Censored readings: CGMs show "LO" / "HI" beyond what they measure and uploaders send
        # the limit (40 mg/dL or 2.2 mmol/L = 39.6; 400). The true value was at or beyond it, so
        # the figures above understate how low (high) those readings were.
        "sensor_floor_readings": int(np.count_nonzero(g <= SENSOR_FLOOR_MGDL)),
        "sensor_ceiling_readings": int(np.count_nonzero(g >= SENSOR_CEILING_MGDL)),
    }


# --- metrics on iglu's interpolated day-by-day grid ----------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Readings interpolated linearly onto a regular grid from the first midnight, dt0 minutes
    apart (the first point at 00:00 + dt0), NaN outside the readings and inside gaps longer
    than `inter_gap` minutes: iglu's CGMS2DayByDay."""

    times: Floats
    glucose: Floats  # one row per day
    dt0: float

    @property
    def flat(self) -> Floats:
        return self.glucose.ravel()


def day_by_day(s: Series, dt0: float | None = None, inter_gap: float = 45.0) -> Grid:
    step = dt0 if dt0 is not None else sampling_interval_minutes(s)
    first_midnight = np.floor(s.times[0] / 86400.0) * 86400.0
    ndays = int(np.ceil((s.times[-1] - s.times[0]) / 86400.0 + 1))
    points = int(ndays * 24 * 60 / step)
    times = first_midnight + step * 60.0 * np.arange(1, points + 1)
    values = np.interp(times, s.times, s.glucose, left=np.nan, right=np.nan)
    long_gaps = np.flatnonzero(np.diff(s.times) > inter_gap * 60.0)
    # Grid points strictly inside a long gap are missing, not interpolated.
    first = np.searchsorted(times, s.times[long_gaps], side="right")
    last = np.searchsorted(times, s.times[long_gaps + 1], side="left")
    for lo, hi in zip(first.tolist(), last.tolist(), strict=True):
        values[lo:hi] = np.nan
    return Grid(times, values.reshape(ndays, -1), step)


def _nanmean(values: Floats) -> float:
    """The mean of the values present; NaN, without a warning, when none is."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def _nansd(values: Floats) -> float:
    present = values[~np.isnan(values)]
    return float(present.std(ddof=1)) if present.size > 1 else float("nan")


def modd(grid: Grid) -> float:
    """Mean of daily differences: the same time on consecutive days (lag 1)."""
    return _nanmean(np.abs(grid.glucose[1:] - grid.glucose[:-1]))


def conga(grid: Grid, hours: float = 1.0) -> float:
    """SD of the differences between readings `hours` apart (CONGA-n)."""
    flat = grid.flat
    lag = round(hours * 60 / grid.dt0)
    return _nansd(flat[lag:] - flat[:-lag])


def mag(grid: Grid) -> float:
    """Mean absolute glucose change per hour along the grid."""
    return _nanmean(np.abs(np.diff(grid.flat))) * 60.0 / grid.dt0


def _rolling_mean(values: Floats, width: int) -> Floats:
    """Right-aligned rolling mean ignoring NaN; the first `width` values take the first full
    window's mean (as iglu fills them)."""
    ok = ~np.isnan(values)
    sums = np.concatenate(([0.0], np.cumsum(np.where(ok, values, 0.0))))
    counts = np.concatenate(([0], np.cumsum(ok)))
    out = np.full(values.size, np.nan)
    window_sum = sums[width:] - sums[:-width]
    window_n = counts[width:] - counts[:-width]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[width - 1 :] = np.where(window_n > 0, window_sum / np.maximum(window_n, 1), np.nan)
    out[:width] = out[width - 1]
    return out


def _excursions(extrema: list[float], sd: float, rising: bool) -> list[float]:
    """Heights of the excursions larger than one SD between successive turning points: nadir →
    peak when `rising`, peak → nadir otherwise (the moving-average MAGE of Fernandes et al.)."""
    sign = 1.0 if rising else -1.0
    values = [sign * v for v in extrema]  # a falling excursion is a rising one of -glucose
    heights: list[float] = []
    n = len(values)
    j = prev_j = 0
    while j < n:
        lowest = min(values[prev_j : j + 1])  # the largest rise ending at j starts at the lowest
        i = values.index(lowest, prev_j, j + 1)
        best = values[j] - lowest
        if best >= sd:
            for k in range(j, n):
                if values[k] > values[j]:
                    j = k
                if values[k] - values[j] < -sd or k == n - 1:
                    heights.append(sign * (values[j] - values[i]))
                    prev_j = k if rising else j
                    j = k
                    break
        else:
            j += 1
    return heights


def _crossing_candidates(gl: Floats, delta: Floats) -> npt.NDArray[np.bool_]:
    """Where a crossing of the two averages can be: a pair of points with both present whose
    difference changes sign, or that follows a gap or a zero (elsewhere the sign is that of the
    point before, which already agreed with the last crossing). Index 0 never is."""
    ok = ~np.isnan(gl) & ~np.isnan(delta)
    pair = np.zeros(gl.size, dtype=bool)
    pair[1:] = ok[1:] & ok[:-1]
    sign_change = np.zeros(gl.size, dtype=bool)
    sign_change[1:] = delta[1:] * delta[:-1] < 0
    after_break = np.zeros(gl.size, dtype=bool)
    after_break[1:] = ~pair[:-1] | (delta[:-1] == 0)
    found: npt.NDArray[np.bool_] = pair & (sign_change | after_break)
    return found


def _mage_segment(
    gl: Floats, short: int, long: int, delta: Floats | None = None, candidates: list[int] | None = None
) -> tuple[float | None, float | None]:
    """MAGE+ and MAGE- of one stretch of the grid without long gaps (`delta` and the crossing
    `candidates`, indexes into the stretch, when `mage` has computed them for the whole grid)."""
    n = gl.size
    if n < 7 or n < long or np.all(np.isnan(gl)):
        return None, None
    if delta is None:
        delta = _rolling_mean(gl, short) - _rolling_mean(gl, long)
    if candidates is None:
        candidates = np.flatnonzero(_crossing_candidates(gl, delta)).tolist()
    # Turning points of the short average around the long one: where their difference changes
    # sign (across short gaps, against the last crossing), plus the first and last points.
    crossings = [0]
    kinds = [bool(delta[0] > 0)]  # True: a peak lies ahead, False: a nadir
    d = delta.tolist()
    for i in candidates:
        if d[i] * d[i - 1] < 0:
            crossings.append(i)
            kinds.append(d[i] > d[i - 1])
        elif d[i] * d[crossings[-1]] < 0:
            crossings.append(i)
            kinds.append(d[i] > d[crossings[-2]])
    crossings.append(n - 1)
    kinds.append(bool(delta[n - 1] > 0))
    # Between two crossings, the highest (or lowest) point from the last turning point on. A
    # stretch always holds readings: crossings and segment ends are at readings.
    for_max, for_min = np.where(ok_gl := ~np.isnan(gl), gl, -np.inf), np.where(ok_gl, gl, np.inf)
    extrema: list[float] = []
    positions: list[int] = []
    for c in range(len(crossings) - 1):
        left = crossings[c] if c == 0 else positions[-1]
        right = crossings[c + 1] + 1
        at = left + int(for_max[left:right].argmax() if kinds[c] else for_min[left:right].argmin())
        positions.append(at)
        extrema.append(float(gl[at]))
    sd = _nansd(gl)
    up = _excursions(extrema, sd, rising=True)
    down = _excursions(extrema, sd, rising=False)
    return (float(np.mean(up)) if up else None), (abs(float(np.mean(down))) if down else None)


def mage(
    s: Series,
    short_ma: int = 5,
    long_ma: int = 32,
    inter_gap: float = 45.0,
    max_gap: float = 180.0,
    grid: Grid | None = None,
) -> float:
    """Mean amplitude of glycaemic excursions by the moving-average algorithm (Fernandes et al.,
    as iglu's default): on the 5-minute grid, turning points where a short and a long moving
    average cross, excursions above one SD, MAGE+ and MAGE- averaged, stretches separated by
    gaps over `max_gap` minutes weighted by their length."""
    if grid is None or grid.dt0 != 5.0:  # always on the 5-minute grid (a given one is reused)
        grid = day_by_day(s, dt0=5.0, inter_gap=inter_gap)
    gl, times = grid.flat, grid.times
    present = np.flatnonzero(~np.isnan(gl))
    if present.size == 0:
        return float("nan")
    gl, times = gl[present[0] : present[-1] + 1], times[present[0] : present[-1] + 1]
    short, long = round(short_ma * 5 / grid.dt0), round(long_ma * 5 / grid.dt0)
    if gl.size < 7 or gl.size < long:
        return float("nan")
    # Split at runs of missing points longer than max_gap (the runs themselves count nowhere).
    missing = np.isnan(gl)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0]))))
    cuts = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if (b - a) * grid.dt0 > max_gap]
    bounds, start = [], 0
    for a, b in cuts:
        if a > start:
            bounds.append((start, a))
        start = b
    if start < gl.size:
        bounds.append((start, gl.size))
    # The moving averages and crossing candidates of every stretch, computed once on the whole
    # grid (a window never reaches across a gap over max_gap, which is longer than the long
    # window): each stretch then fills its first points with its first full window's mean, as
    # iglu does, and its first point is no candidate. Numpy's per-call cost made this per
    # stretch the larger part of MAGE.
    rs, rl = _rolling_mean(gl, short), _rolling_mean(gl, long)
    for a, b in bounds:
        if b - a >= long:
            rs[a : a + short] = rs[a + short - 1]
            rl[a : a + long] = rl[a + long - 1]
    delta = rs - rl
    candidates = _crossing_candidates(gl, delta)
    candidates[[a for a, _ in bounds]] = False
    where = np.flatnonzero(candidates)
    weighted, total = 0.0, 0.0
    for a, b in bounds:
        mine = where[np.searchsorted(where, a) : np.searchsorted(where, b)] - a
        plus, minus = _mage_segment(gl[a:b], short, long, delta[a:b], mine.tolist())
        length = times[b - 1] - times[a]
        for value in (plus, minus):
            if value is not None:
                weighted += value * length
                total += length
    return weighted / total if total > 0 else float("nan")


def all_metrics(s: Series) -> dict[str, float]:
    """Every metric of `basic_metrics`, plus those on the interpolated grid (MODD, CONGA1, MAG,
    MAGE)."""
    found = basic_metrics(s)
    if s.glucose.size < 2:
        return found
    grid = day_by_day(s)
    return {
        **found,
        "modd": modd(grid),
        "conga1": conga(grid, 1.0),
        "mag": mag(grid),
        "mage": mage(s, grid=grid),
        **episode_summary(episodes(s, grid), days=(s.times[-1] - s.times[0]) / 86400.0),
    }


# --- episodes (2023 international consensus) ----------------------------------------------------

# (kind, level, threshold, below): below 70 / 54 mg/dL for hypoglycaemia, above 180 / 250 for
# hyperglycaemia (Battelino T et al., Lancet Diabetes Endocrinol 2023;11:42-57).
EPISODE_RULES: tuple[tuple[str, int, str, bool], ...] = (
    ("hypo", 1, "t70", True),
    ("hypo", 2, "t54", True),
    ("hyper", 1, "t180", False),
    ("hyper", 2, "t250", False),
)
EPISODE_MINUTES = 15.0


@dataclass(frozen=True)
class Episode:
    kind: str  # hypo | hyper
    level: int
    start: float  # POSIX seconds of the first grid point inside
    end: float  # of the first point of the 15 minutes outside that ended it (or the last point)
    extreme: float  # the lowest (hypo) or highest (hyper) value during it

    @property
    def minutes(self) -> float:
        return (self.end - self.start) / 60.0


def episodes(s: Series, grid: Grid | None = None) -> list[Episode]:
    """Hypo- and hyperglycaemia episodes, level 1 and 2: at least 15 consecutive minutes beyond
    the threshold start one; later stretches beyond it join the episode while the values are
    back for less than 15 minutes in between; it ends at the first point of 15 minutes back.
    Counted on the interpolated grid; where data stop (a gap over 45 minutes, or the end) an
    episode ends at its last point."""
    if s.glucose.size < 2:
        return []
    grid = grid or day_by_day(s)
    values, times = grid.flat, grid.times
    need = int(np.ceil(EPISODE_MINUTES / grid.dt0))
    missing = np.flatnonzero(np.isnan(values))
    cut = MGDL_THRESHOLDS
    own = values
    if s.unit == "mmol/L":  # the thresholds of the unit the readings were measured in
        own, cut = np.round(values / MGDL_PER_MMOL, 1), MMOL_THRESHOLDS
    found: list[Episode] = []
    for kind, level, name, below in EPISODE_RULES:
        threshold = getattr(cut, name)
        with np.errstate(invalid="ignore"):
            inside = own < threshold if below else own > threshold  # NaN is never inside
        edges = np.flatnonzero(np.diff(np.concatenate(([0], inside.astype(np.int8), [0]))))
        runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))  # [start, stop)
        r = 0
        while r < len(runs):
            first, stop = runs[r]
            r += 1
            if stop - first < need:
                continue
            # The data run on to the next missing point (exclusive), or to the end.
            at = int(np.searchsorted(missing, stop))
            data_end = int(missing[at]) if at < missing.size else values.size
            while r < len(runs) and runs[r][0] - stop < need and runs[r][0] < data_end:
                stop = runs[r][1]
                r += 1
            back = (r < len(runs) and runs[r][0] < data_end) or data_end - stop >= need
            end = stop if back else data_end - 1
            stretch = values[first:stop]
            extreme = float(stretch.min() if below else stretch.max())
            found.append(Episode(kind, level, float(times[first]), float(times[end]), extreme))
    return sorted(found, key=lambda e: (e.start, e.kind, e.level))


def episode_summary(found: list[Episode], days: float) -> dict[str, float]:
    """Per kind and level: the number of episodes, per day, and their mean duration (minutes)."""
    summary: dict[str, float] = {}
    for kind, level, _, _ in EPISODE_RULES:
        mine = [e for e in found if e.kind == kind and e.level == level]
        key = f"{kind}_level{level}"
        summary[f"{key}_episodes"] = len(mine)
        summary[f"{key}_per_day"] = len(mine) / days if days > 0 else float("nan")
        summary[f"{key}_mean_minutes"] = float(np.mean([e.minutes for e in mine])) if mine else 0.0
    return summary


# --- data sufficiency --------------------------------------------------------------------------

SUFFICIENT_DAYS = 14
SUFFICIENT_ACTIVE_PERCENT = 70.0


def sufficiency(s: Series, end: float | None = None, days: int = SUFFICIENT_DAYS) -> dict[str, float | bool]:
    """Whether a report window holds enough data: the consensus asks for 14 days with at least
    70 % of the expected CGM readings. The window is the `days` days up to `end` (POSIX seconds;
    default the last reading); expected readings follow the sensor's sampling interval."""
    if s.glucose.size == 0:
        return {"window_days": float(days), "readings": 0, "active_percent": 0.0, "sufficient": False}
    last = s.times[-1] if end is None else end
    first = last - days * 86400.0
    inside = int(np.count_nonzero((s.times > first) & (s.times <= last)))
    expected = days * 1440.0 / sampling_interval_minutes(s)
    active = min(100.0, inside / expected * 100.0)
    return {
        "window_days": float(days),
        "readings": inside,
        "active_percent": active,
        "sufficient": active >= SUFFICIENT_ACTIVE_PERCENT,
    }
