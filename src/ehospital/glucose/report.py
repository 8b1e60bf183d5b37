"""The Ambulatory Glucose Profile (AGP) report of one person's CGM readings over a window, as the
international consensus lays it out (Battelino et al., Diabetes Care 2019;42:1593; Lancet Diabetes
Endocrinol 2023;11:42): the consensus table with pass/fail against the targets of a patient group,
time in ranges, the AGP percentiles by time of day, daily profiles, hypo- and hyperglycaemia
episodes and a plain-language summary in Chinese or English.

`build_report` only computes: the figures come from `metrics.all_metrics` and
`metrics.episodes` on the readings inside the window (start < t <= end, local seconds read as
UTC as in `Series`); `render.py` turns the result into HTML and PDF. Glucose is kept in mg/dL
(as in `Series`) and shown in the unit the meter measured in, judged by that unit's thresholds.

Choices of this module:
- Pass/fail is judged on the value as shown (one decimal), so a flag never contradicts the
  figure printed beside it.
- The AGP pools the window's readings into 96 bins of 15 minutes by local time of day; a bin
  with fewer than 3 readings is left blank; each percentile curve is then smoothed circularly
  (across midnight) with the weights 1-2-1 over neighbouring bins present. Smoothing every curve
  with the same non-negative weights keeps p5 <= p25 <= p50 <= p75 <= p95 in every bin. The
  chart is left out when the readings cover less than 3 days (readings x sampling interval).
- Sensor activity and sufficiency are `metrics.sufficiency` over the window (a window of a
  fractional number of days counts as the next whole day); the report is "sufficient" only with
  at least 70 % over at least 14 days.
- Daily profiles: the last 14 calendar days of the window. Episodes: `metrics.episodes` on the
  window's readings; up to 20 listed, the most urgent kinds first (level 2 hypo, level 1 hypo,
  level 2 hyper, level 1 hyper), shown in time order.
- Glucose fields (Row.value of mean and SD, percentiles, extremes) stay in mg/dL; `unit` is the
  display unit, and rows carry their text as shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from ehospital.glucose.metrics import (
    MGDL_PER_MMOL,
    MGDL_THRESHOLDS,
    MMOL_THRESHOLDS,
    SENSOR_FLOOR_MGDL,
    Floats,
    Series,
    all_metrics,
    episodes,
    sampling_interval_minutes,
    sufficiency,
)

DAY = 86400.0
CONSENSUS_DAYS = 14
MAX_DAILY_PROFILES = 14
MAX_EPISODES_LISTED = 20
AGP_BIN_MINUTES = 15
AGP_QUANTILES = (5, 25, 50, 75, 95)
AGP_MIN_BIN_READINGS = 3
AGP_MIN_DAYS = 3.0
LOCALES = ("zh", "en")


# --- targets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Targets:
    """The consensus targets of one patient group. Glucose bounds in mg/dL (shown and judged by
    the meter's own unit: 70 mg/dL is 3.9 mmol/L); goals in % of readings (None: no goal)."""

    preset: str  # "standard" | "older_high_risk" | "pregnancy_t1"
    low: float  # the target range, inclusive
    high: float
    tir_above: float  # time in range should be more than this %
    tbr_below: float | None  # time below `low` should be less than this %
    tbr_very_below: float | None  # time below `very_low`
    tar_below: float | None  # time above `high`
    tar_very_below: float | None  # time above `very_high`
    cv_at_most: float | None = 36.0  # the coefficient of variation, %
    very_low: float = 54.0
    very_high: float = 250.0


_PRESETS: dict[str, Targets] = {
    # Type 1 and type 2 diabetes.
    "standard": Targets("standard", 70.0, 180.0, 70.0, 4.0, 1.0, 25.0, 5.0),
    # Older or high-risk people: fewer lows matter more than a high TIR (no separate < 54 goal,
    # none for > 180 beyond the > 250 one).
    "older_high_risk": Targets("older_high_risk", 70.0, 180.0, 50.0, 1.0, None, None, 10.0),
    # Pregnancy with type 1 diabetes: the tighter range 63–140 mg/dL.
    "pregnancy_t1": Targets("pregnancy_t1", 63.0, 140.0, 70.0, 4.0, 1.0, 25.0, None),
}
PRESETS: tuple[str, ...] = tuple(_PRESETS)


def targets_for(preset: str) -> Targets:
    """The targets of a preset; ValueError for an unknown one."""
    try:
        return _PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown target preset {preset!r} (one of {', '.join(PRESETS)})") from None


# --- strings -------------------------------------------------------------------------------------

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "动态葡萄糖图谱（AGP）报告",
        "patient": "患者",
        "period": "时间段",
        "days": "天数",
        "days_value": "{days} 天",
        "days_value_one": "{days} 天",
        "active": "传感器佩戴时间",
        "sufficiency": "数据充分性",
        "sufficient": "充分（≥70% 且满 14 天）",
        "sufficient_short": "佩戴时间 ≥70%，但不足 14 天",
        "insufficient": "不足（佩戴时间 <70%）",
        "readings": "读数",
        "unit": "单位",
        "targets": "目标人群",
        "preset.standard": "1 型 / 2 型糖尿病",
        "preset.older_high_risk": "老年或高风险人群",
        "preset.pregnancy_t1": "1 型糖尿病妊娠",
        "summary": "总结",
        "table": "国际共识指标",
        "metric": "指标",
        "value": "数值",
        "goal": "目标",
        "result": "结果",
        "met": "达标",
        "missed": "未达标",
        "no_goal": "—",
        "no_value": "无数据",
        "row.tir": "目标范围内时间（TIR）{range}",
        "row.tbr": "低于目标范围时间（TBR）<{low}",
        "row.tbr_very": "严重低血糖时间 <{low}",
        "row.tar": "高于目标范围时间（TAR）>{high}",
        "row.tar_very": "严重高血糖时间 >{high}",
        "row.cv": "变异系数（CV）",
        "row.mean": "平均葡萄糖",
        "row.gmi": "葡萄糖管理指标（GMI）",
        "row.sd": "标准差（SD）",
        "row.gri": "血糖风险指数（GRI）",
        "gri_zone": "{value}（{zone} 区）",
        "ranges": "各范围时间",
        "band.very_low": "很低",
        "band.low": "低",
        "band.in_range": "目标范围",
        "band.high": "高",
        "band.very_high": "很高",
        "agp": "动态葡萄糖图谱（按一天中的时间汇总）",
        "agp_legend": "中位数（粗线）、25–75% 与 5–95% 百分位范围；绿色为目标范围",
        "agp_missing": "数据太少（不足 {days} 天的读数），无法绘制动态葡萄糖图谱。",
        "daily": "每日曲线",
        "daily_more": "仅显示最后 {shown} 天（共 {total} 天）。",
        "no_data": "无数据",
        "episodes": "低血糖与高血糖事件",
        "episode.hypo.1": "1 级低血糖（<{value}）",
        "episode.hypo.2": "2 级低血糖（<{value}）",
        "episode.hyper.1": "1 级高血糖（>{value}）",
        "episode.hyper.2": "2 级高血糖（>{value}）",
        "episode_count": "次数",
        "episode_per_day": "每天",
        "episode_minutes": "平均持续（分钟）",
        "episode_start": "开始时间",
        "episode_kind": "类型",
        "episode_duration": "持续（分钟）",
        "episode_extreme": "极值",
        "episodes_none": "此时间段内没有事件。",
        "episodes_more": "另有 {more} 次事件未列出。",
        "episodes_rule": "事件：超出阈值至少 15 分钟开始，回到阈值内至少 15 分钟结束（2023 共识）。",
        "note.empty": "此时间段内没有葡萄糖读数。",
        "note.short": "时间段为 {days}，短于共识建议的 14 天。",
        "note.insufficient": "传感器佩戴时间 {active}，低于共识要求的 70%，结果可能不具代表性。",
        "note.single": "只有一个读数，无法计算波动指标。",
        "note.sensor_floor": "有 {count} 个读数处于传感器下限（{limit}，显示为 LO），实际血糖可能更低。",
        "footer": (
            "目标依据国际共识（Battelino 等，Diabetes Care 2019；Lancet Diabetes Endocrinol 2023）。"
            "本报告不构成诊断，治疗调整请遵医嘱。"
        ),
        "weekdays": "一二三四五六日",
        "weekday": "周{day}",
        # The summary.
        "s.empty": "{period}期间没有葡萄糖读数，无法评估血糖控制情况。",
        "s.empty_next": "请确认传感器已佩戴并正常上传数据，如有疑问请联系您的医疗团队。",
        "s.low": "低于 {low} 的时间为 {tbr}（目标：低于 {goal}）",
        "s.low_nogoal": "低于 {low} 的时间为 {tbr}",
        "s.very_low": "，其中低于 {low} 的时间为 {tbr}（目标：低于 {goal}）",
        "s.very_low_nogoal": "，其中低于 {low} 的时间为 {tbr}",
        "s.tir": "您在目标范围 {range} 内的时间为 {tir}（目标：超过 {goal}）",
        "s.high": "高于 {high} 的时间为 {tar}（目标：低于 {goal}）",
        "s.high_nogoal": "高于 {high} 的时间为 {tar}",
        "s.very_high": "，其中高于 {high} 的时间为 {tar}（目标：低于 {goal}）",
        "s.very_high_nogoal": "，其中高于 {high} 的时间为 {tar}",
        "s.cv": "血糖波动（变异系数）为 {cv}（目标：不超过 {goal}）",
        "s.ok": "，已达标。",
        "s.missed": "，未达标。",
        "s.plain": "。",
        "s.insufficient": (
            "这 {days}内传感器佩戴时间为 {active}，共识要求至少 70%，因此这些结果可能不能代表您平时的血糖。"
        ),
        "s.short": "本报告只涵盖 {days}，少于共识建议的 14 天，请谨慎解读。",
        "s.talk_lows": "低血糖最需要重视，请与您的医疗团队沟通低血糖及其他未达标的项目。",
        "s.talk": "请与您的医疗团队沟通未达标的项目。",
        "s.all_met": "各项目标均已达到，请继续按与医疗团队商定的方案管理血糖。",
    },
    "en": {
        "title": "Ambulatory glucose profile (AGP) report",
        "patient": "Patient",
        "period": "Period",
        "days": "Days",
        "days_value": "{days} days",
        "days_value_one": "{days} day",
        "active": "Sensor active",
        "sufficiency": "Data sufficiency",
        "sufficient": "Sufficient (≥70% over 14 days)",
        "sufficient_short": "Active ≥70%, but fewer than 14 days",
        "insufficient": "Insufficient (sensor active <70%)",
        "readings": "Readings",
        "unit": "Unit",
        "targets": "Targets for",
        "preset.standard": "Type 1 / type 2 diabetes",
        "preset.older_high_risk": "Older or high-risk people",
        "preset.pregnancy_t1": "Pregnancy with type 1 diabetes",
        "summary": "Summary",
        "table": "Consensus metrics",
        "metric": "Metric",
        "value": "Value",
        "goal": "Goal",
        "result": "Result",
        "met": "Met",
        "missed": "Not met",
        "no_goal": "—",
        "no_value": "no data",
        "row.tir": "Time in range (TIR) {range}",
        "row.tbr": "Time below range (TBR) <{low}",
        "row.tbr_very": "Time very low <{low}",
        "row.tar": "Time above range (TAR) >{high}",
        "row.tar_very": "Time very high >{high}",
        "row.cv": "Coefficient of variation (CV)",
        "row.mean": "Mean glucose",
        "row.gmi": "Glucose management indicator (GMI)",
        "row.sd": "Standard deviation (SD)",
        "row.gri": "Glycaemia risk index (GRI)",
        "gri_zone": "{value} (zone {zone})",
        "ranges": "Time in ranges",
        "band.very_low": "Very low",
        "band.low": "Low",
        "band.in_range": "In range",
        "band.high": "High",
        "band.very_high": "Very high",
        "agp": "Ambulatory glucose profile (by time of day)",
        "agp_legend": "Median (bold line), 25–75% and 5–95% percentile bands; target range in green",
        "agp_missing": "Too few readings (less than {days} days) to draw the ambulatory glucose profile.",
        "daily": "Daily glucose profiles",
        "daily_more": "The last {shown} of {total} days are shown.",
        "no_data": "no data",
        "episodes": "Hypo- and hyperglycaemia episodes",
        "episode.hypo.1": "Level 1 hypo (<{value})",
        "episode.hypo.2": "Level 2 hypo (<{value})",
        "episode.hyper.1": "Level 1 hyper (>{value})",
        "episode.hyper.2": "Level 2 hyper (>{value})",
        "episode_count": "Episodes",
        "episode_per_day": "Per day",
        "episode_minutes": "Mean duration (min)",
        "episode_start": "Start",
        "episode_kind": "Kind",
        "episode_duration": "Minutes",
        "episode_extreme": "Extreme",
        "episodes_none": "No episodes in this period.",
        "episodes_more": "{more} more episodes are not listed.",
        "episodes_rule": (
            "An episode starts after at least 15 minutes beyond the threshold and ends after at "
            "least 15 minutes back (2023 consensus)."
        ),
        "note.empty": "There are no glucose readings in this period.",
        "note.short": "The period is {days}, shorter than the 14 days the consensus asks for.",
        "note.insufficient": (
            "The sensor was active {active} of the time, less than the 70% the consensus asks for: "
            "the figures may not be representative."
        ),
        "note.single": "There is only one reading: variability cannot be computed.",
        "note.sensor_floor": (
            "{count} readings are at the sensor's lower limit ({limit}, shown as LO): the true "
            "glucose may have been lower."
        ),
        "footer": (
            "Targets from the international consensus (Battelino et al., Diabetes Care 2019; "
            "Lancet Diabetes Endocrinol 2023). This report is not a diagnosis; discuss any change "
            "of treatment with your care team."
        ),
        "weekdays": "Mon Tue Wed Thu Fri Sat Sun",
        "weekday": "{day}",
        "s.empty": "There are no glucose readings for {period}, so your glucose control cannot be assessed.",
        "s.empty_next": "Please check that the sensor is worn and uploading, or ask your care team.",
        "s.low": "Your time below {low} was {tbr} (goal: less than {goal})",
        "s.low_nogoal": "Your time below {low} was {tbr}",
        "s.very_low": ", with {tbr} below {low} (goal: less than {goal})",
        "s.very_low_nogoal": ", with {tbr} below {low}",
        "s.tir": "You spent {tir} of the time in your target range of {range} (goal: more than {goal})",
        "s.high": "Your time above {high} was {tar} (goal: less than {goal})",
        "s.high_nogoal": "Your time above {high} was {tar}",
        "s.very_high": ", with {tar} above {high} (goal: less than {goal})",
        "s.very_high_nogoal": ", with {tar} above {high}",
        "s.cv": "Your glucose variability (CV) was {cv} (goal: {goal} or less)",
        "s.ok": ": goal met.",
        "s.missed": ": goal not met.",
        "s.plain": ".",
        "s.insufficient": (
            "The sensor was active {active} of the time over the {days}; the consensus asks "
            "for at least 70%, so these figures may not represent your usual glucose."
        ),
        "s.short": (
            "This report covers {days}, fewer than the 14 days the consensus recommends, so "
            "read it with care."
        ),
        "s.talk_lows": (
            "Lows matter most: please talk to your care team about your lows and any other goal not met."
        ),
        "s.talk": "Please talk to your care team about the goals not met.",
        "s.all_met": "All goals were met; keep going as agreed with your care team.",
    },
}


def normalise_locale(locale: str) -> str:
    """Normalise "zh", "zh-CN", "en_GB"... to "zh" or "en"; ValueError for any other language."""
    lang = locale.replace("_", "-").split("-")[0].lower()
    if lang not in LOCALES:
        raise ValueError(f"unsupported locale {locale!r} (zh or en)")
    return lang


def text(locale: str, key: str, **params: Any) -> str:
    template = STRINGS[locale][key]
    return template.format(**params) if params else template


# --- formatting ----------------------------------------------------------------------------------

_THRESHOLD_NAMES = {54.0: "t54", 63.0: "t63", 70.0: "t70", 140.0: "t140", 180.0: "t180", 250.0: "t250"}


def display_unit(unit: str) -> str:
    return "mmol/L" if unit == "mmol/L" else "mg/dL"


def to_unit(mgdl: float, unit: str) -> float:
    """A glucose value in mg/dL in the display unit (mmol/L to one decimal, mg/dL whole)."""
    if unit == "mmol/L":
        return round(mgdl / MGDL_PER_MMOL, 1)
    return float(round(mgdl))


def threshold(mgdl: float, unit: str) -> float:
    """A consensus cut-off in the unit the readings were measured in (the consensus's own
    mmol/L values: 70 mg/dL is 3.9, 250 is 13.9)."""
    if unit == "mmol/L":
        name = _THRESHOLD_NAMES.get(float(mgdl))
        return float(getattr(MMOL_THRESHOLDS, name)) if name else round(mgdl / MGDL_PER_MMOL, 1)
    name = _THRESHOLD_NAMES.get(float(mgdl))
    return float(getattr(MGDL_THRESHOLDS, name)) if name else float(mgdl)


def format_number(value: float, unit: str) -> str:
    return f"{value:.1f}" if unit == "mmol/L" else f"{value:.0f}"


def format_glucose(mgdl: float | None, unit: str, *, with_unit: bool = True) -> str:
    if mgdl is None or not math.isfinite(mgdl):
        return "—"
    shown = format_number(to_unit(mgdl, unit), unit)
    return f"{shown} {display_unit(unit)}" if with_unit else shown


def format_threshold(mgdl: float, unit: str, *, with_unit: bool = True) -> str:
    shown = format_number(threshold(mgdl, unit), unit)
    return f"{shown} {display_unit(unit)}" if with_unit else shown


def format_range(low: float, high: float, unit: str) -> str:
    return f"{format_threshold(low, unit, with_unit=False)}–{format_threshold(high, unit)}"


def format_percent(value: float | None) -> str:
    """A share of readings to one decimal: "62.3%"."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.1f}%"


def format_goal_percent(value: float) -> str:
    return f"{value:g}%"


def format_days(days: float) -> str:
    return f"{round(days, 1):g}"


def days_phrase(locale: str, days: float) -> str:
    """The length of a window in words: "7 days", "1 day", "7 天"."""
    shown = format_days(days)
    return text(locale, "days_value_one" if shown == "1" else "days_value", days=shown)


def local_datetime(seconds: float) -> datetime:
    """Local seconds (wall-clock time read as UTC) as a naive datetime."""
    return datetime(1970, 1, 1) + timedelta(seconds=seconds)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# --- the report's parts --------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    op: str  # ">" | "<" | "<="
    value: float

    def met_by(self, value: float) -> bool:
        shown = round(value, 1)  # judged as shown
        if self.op == ">":
            return shown > self.value
        if self.op == "<":
            return shown < self.value
        return shown <= self.value

    @property
    def label(self) -> str:
        op = {"<=": "≤"}.get(self.op, self.op)
        return f"{op}{format_goal_percent(self.value)}"


@dataclass(frozen=True)
class Row:
    """One line of the consensus table. `value` is the figure of `all_metrics`: % of readings
    for the ranges and CV, % for GMI, mg/dL for mean and SD, 0–100 for GRI; None without data."""

    key: str  # tir | tbr | tbr_very | tar | tar_very | cv | mean | gmi | sd | gri
    label: str
    value: float | None
    display: str
    goal: Goal | None
    met: bool | None  # None: no goal, or no value


@dataclass(frozen=True)
class Band:
    """One segment of the time-in-ranges bar: readings within [low, high] (own-unit cut-offs;
    None: open-ended)."""

    key: str  # very_low | low | in_range | high | very_high
    label: str  # e.g. "3.9–10.0 mmol/L"
    percent: float | None


@dataclass(frozen=True, eq=False)
class Agp:
    """Percentiles of glucose (mg/dL) by time of day: `percentiles[i]` is AGP_QUANTILES[i] per bin
    (NaN where a bin has too few readings); `counts` the readings per bin."""

    bin_minutes: int
    percentiles: Floats  # shape (5, bins)
    counts: npt.NDArray[np.int64]

    @property
    def centers(self) -> Floats:
        """The middle of each bin, in minutes after midnight."""
        return (np.arange(self.counts.size, dtype=np.float64) + 0.5) * self.bin_minutes


@dataclass(frozen=True, eq=False)
class DayProfile:
    day: date
    minutes: Floats  # minutes after local midnight
    glucose: Floats  # mg/dL


@dataclass(frozen=True)
class EpisodeStats:
    kind: str  # hypo | hyper
    level: int
    label: str
    count: int
    per_day: float | None
    mean_minutes: float | None


@dataclass(frozen=True)
class EpisodeItem:
    kind: str
    level: int
    label: str
    start: datetime  # local
    minutes: float
    extreme: float  # mg/dL


@dataclass(frozen=True, eq=False)
class Report:
    title: str
    patient: str | None
    locale: str  # zh | en
    unit: str  # the display unit: the unit the meter measured in
    targets: Targets
    start: float  # local seconds, exclusive
    end: float  # inclusive
    first_day: date
    last_day: date
    days: float  # the window's length in days
    n_readings: int
    sampling_minutes: float
    active_percent: float  # sensor active over the window (metrics.sufficiency)
    sufficient: bool
    metrics: Mapping[str, float]  # all_metrics of the readings inside the window
    rows: tuple[Row, ...]
    bands: tuple[Band, ...]
    agp: Agp | None
    daily: tuple[DayProfile, ...]  # the last (up to) 14 days of the window
    days_in_window: int  # calendar days the window touches
    episode_stats: tuple[EpisodeStats, ...]
    episodes: tuple[EpisodeItem, ...]  # at most MAX_EPISODES_LISTED
    episodes_total: int
    notes: tuple[str, ...]  # what is missing or doubtful, in the report's language
    summary: tuple[str, ...]  # plain-language sentences for the patient

    def text(self, key: str, **params: Any) -> str:
        return text(self.locale, key, **params)

    @property
    def period(self) -> str:
        return f"{self.first_day.isoformat()} – {self.last_day.isoformat()}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (glucose in mg/dL, `unit` the display unit; no NaN)."""
        agp: dict[str, Any] | None = None
        if self.agp is not None:
            agp = {
                "bin_minutes": self.agp.bin_minutes,
                "counts": self.agp.counts.tolist(),
                **{f"p{q}": _rounded_list(self.agp.percentiles[i]) for i, q in enumerate(AGP_QUANTILES)},
            }
        return {
            "title": self.title,
            "patient": self.patient,
            "locale": self.locale,
            "unit": self.unit,
            "targets": {
                "preset": self.targets.preset,
                "low": self.targets.low,
                "high": self.targets.high,
                "very_low": self.targets.very_low,
                "very_high": self.targets.very_high,
                "tir_above": self.targets.tir_above,
                "tbr_below": self.targets.tbr_below,
                "tbr_very_below": self.targets.tbr_very_below,
                "tar_below": self.targets.tar_below,
                "tar_very_below": self.targets.tar_very_below,
                "cv_at_most": self.targets.cv_at_most,
            },
            "window": {
                "start": local_datetime(self.start).isoformat(),
                "end": local_datetime(self.end).isoformat(),
                "first_day": self.first_day.isoformat(),
                "last_day": self.last_day.isoformat(),
                "days": round(self.days, 2),
            },
            "n_readings": self.n_readings,
            "sampling_minutes": self.sampling_minutes,
            "active_percent": round(self.active_percent, 1),
            "sufficient": self.sufficient,
            "metrics": {k: v if isinstance(v, int) else _rounded(v, 3) for k, v in self.metrics.items()},
            "table": [
                {
                    "key": row.key,
                    "label": row.label,
                    "value": _rounded(row.value, 2),
                    "display": row.display,
                    "goal": None if row.goal is None else {"op": row.goal.op, "value": row.goal.value},
                    "met": row.met,
                }
                for row in self.rows
            ],
            "ranges": [
                {"key": b.key, "label": b.label, "percent": _rounded(b.percent, 2)} for b in self.bands
            ],
            "agp": agp,
            "daily": [{"date": d.day.isoformat(), "readings": int(d.glucose.size)} for d in self.daily],
            "episodes": {
                "summary": [
                    {
                        "kind": s.kind,
                        "level": s.level,
                        "label": s.label,
                        "count": s.count,
                        "per_day": _rounded(s.per_day, 3),
                        "mean_minutes": _rounded(s.mean_minutes, 1),
                    }
                    for s in self.episode_stats
                ],
                "listed": [
                    {
                        "kind": e.kind,
                        "level": e.level,
                        "label": e.label,
                        "start": e.start.isoformat(),
                        "minutes": round(e.minutes, 1),
                        "extreme": round(e.extreme, 1),
                    }
                    for e in self.episodes
                ],
                "total": self.episodes_total,
            },
            "notes": list(self.notes),
            "summary": list(self.summary),
        }


def _rounded(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _rounded_list(values: Floats) -> list[float | None]:
    return [None if math.isnan(v) else round(v, 1) for v in values.tolist()]


# --- AGP percentiles -----------------------------------------------------------------------------


def agp_percentiles(
    times: Floats,
    glucose: Floats,
    *,
    bin_minutes: int = AGP_BIN_MINUTES,
    smooth: bool = True,
    min_readings: int = AGP_MIN_BIN_READINGS,
) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Glucose percentiles (AGP_QUANTILES) by local time of day, pooled across days: shape
    (5, 1440 / bin_minutes), NaN where a bin holds fewer than `min_readings`; and the readings
    per bin. Unsmoothed, a bin's values are numpy's (linear) percentiles of its readings."""
    if 1440 % bin_minutes:
        raise ValueError("bin_minutes must divide a day")
    nbins = 1440 // bin_minutes
    bins = (np.mod(times, DAY) // (bin_minutes * 60.0)).astype(np.int64)
    counts = np.bincount(bins, minlength=nbins).astype(np.int64)
    out = np.full((len(AGP_QUANTILES), nbins), np.nan)
    filled = counts >= max(1, min_readings)
    if glucose.size:
        order = np.lexsort((glucose, bins))
        ordered = glucose[order]
        offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        n = counts[filled]
        base = offsets[filled]
        for i, q in enumerate(AGP_QUANTILES):
            position = q / 100.0 * (n - 1)
            lower = np.floor(position).astype(np.int64)
            upper = np.minimum(lower + 1, n - 1)
            frac = position - lower
            a, b = ordered[base + lower], ordered[base + upper]
            # numpy's interpolation, from the nearer end (exact at the readings)
            out[i, filled] = np.where(frac < 0.5, a + (b - a) * frac, b - (b - a) * (1.0 - frac))
    if smooth:
        out = _smooth_circular(out)
    return out, counts


def _smooth_circular(values: Floats) -> Floats:
    """Weights 1-2-1 over each bin and its neighbours present, around midnight; missing bins stay
    missing. The same weights for every curve keep their order."""
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    weight = present.astype(np.float64)
    num = 2.0 * filled + np.roll(filled, 1, axis=1) + np.roll(filled, -1, axis=1)
    den = 2.0 * weight + np.roll(weight, 1, axis=1) + np.roll(weight, -1, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present, num / np.maximum(den, 1.0), np.nan)


# --- building ------------------------------------------------------------------------------------


def build_report(
    series: Series,
    *,
    start: float,
    end: float,
    targets: Targets,
    locale: str = "zh",
    title: str | None = None,
    patient: str | None = None,
) -> Report:
    """The AGP report of the readings with start < t <= end (local seconds, as in `Series`)."""
    lang = normalise_locale(locale)
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError("the report window needs finite start < end")
    unit = display_unit(series.unit)
    times, glucose = _sorted(series)
    inside = (times > start) & (times <= end) & np.isfinite(glucose)
    window = Series(times[inside], glucose[inside], series.unit)
    n = int(window.glucose.size)
    days = float(end - start) / DAY
    figures = all_metrics(window)
    whole = Series(times, glucose, series.unit)
    suff = _sufficiency(whole, start, end, days)
    active = float(suff["active_percent"])
    sampling = sampling_interval_minutes(whole)
    first_day = local_datetime(start).date()
    last_day = local_datetime(end).date()
    if last_day > first_day and end % DAY == 0:  # an end at midnight closes the day before
        last_day -= timedelta(days=1)

    rows = _rows(lang, window, figures, targets, unit)
    bands = _bands(lang, window, targets, unit)
    covered_days = n * sampling / 1440.0
    agp: Agp | None = None
    if covered_days >= AGP_MIN_DAYS:
        pct, counts = agp_percentiles(window.times, window.glucose)
        if np.any(~np.isnan(pct[0])):
            agp = Agp(AGP_BIN_MINUTES, pct, counts)
    daily, touched = _daily(window, first_day, last_day)
    found = episodes(window)
    stats = _episode_stats(lang, figures, unit)
    listed = _listed_episodes(lang, found, unit)

    notes: list[str] = []
    if n == 0:
        notes.append(text(lang, "note.empty"))
    elif n == 1:
        notes.append(text(lang, "note.single"))
    if days < CONSENSUS_DAYS - 1e-9:
        notes.append(text(lang, "note.short", days=days_phrase(lang, days)))
    if n and active < 70.0:
        notes.append(text(lang, "note.insufficient", active=format_percent(active)))
    floor = int(figures.get("sensor_floor_readings") or 0)
    if floor:
        notes.append(
            text(lang, "note.sensor_floor", count=floor, limit=format_glucose(SENSOR_FLOOR_MGDL, unit))
        )

    report = Report(
        title=title or text(lang, "title"),
        patient=patient,
        locale=lang,
        unit=unit,
        targets=targets,
        start=float(start),
        end=float(end),
        first_day=first_day,
        last_day=last_day,
        days=days,
        n_readings=n,
        sampling_minutes=sampling,
        active_percent=active,
        sufficient=bool(suff["sufficient"]) and days >= CONSENSUS_DAYS - 1e-9,
        metrics=figures,
        rows=rows,
        bands=bands,
        agp=agp,
        daily=daily,
        days_in_window=touched,
        episode_stats=stats,
        episodes=listed,
        episodes_total=len(found),
        notes=tuple(notes),
        summary=(),
    )
    return _with_summary(report)


def _sufficiency(whole: Series, start: float, end: float, days: float) -> dict[str, float | bool]:
    """`metrics.sufficiency` over the window. It takes whole days back from `end`: a window of a
    fractional number of days counts as the next whole day (expected readings included), without
    the readings before `start`."""
    if abs(days - round(days)) < 1e-6:
        return sufficiency(whole, end=end, days=max(1, round(days)))
    after = whole.times > start
    return sufficiency(
        Series(whole.times[after], whole.glucose[after], whole.unit), end=end, days=math.ceil(days)
    )


def _sorted(series: Series) -> tuple[Floats, Floats]:
    times = np.asarray(series.times, dtype=np.float64)
    glucose = np.asarray(series.glucose, dtype=np.float64)
    if times.size > 1 and np.any(np.diff(times) < 0):
        order = np.argsort(times, kind="stable")
        times, glucose = times[order], glucose[order]
    return times, glucose


def _share(mask: npt.NDArray[np.bool_]) -> float:
    return float(mask.mean() * 100.0) if mask.size else float("nan")


def _own(window: Series) -> Floats:
    own, _ = window.in_own_unit()
    return own


def _below(window: Series, figures: Mapping[str, float], mgdl: float) -> float:
    key = f"below_{mgdl:g}"
    if key in figures:
        return figures[key]
    return _share(_own(window) < threshold(mgdl, window.unit))


def _above(window: Series, figures: Mapping[str, float], mgdl: float) -> float:
    key = f"above_{mgdl:g}"
    if key in figures:
        return figures[key]
    return _share(_own(window) > threshold(mgdl, window.unit))


def _in_range(window: Series, figures: Mapping[str, float], low: float, high: float) -> float:
    key = f"in_range_{low:g}_{high:g}"
    if key in figures:
        return figures[key]
    own = _own(window)
    return _share((own >= threshold(low, window.unit)) & (own <= threshold(high, window.unit)))


def _rows(lang: str, window: Series, figures: Mapping[str, float], t: Targets, unit: str) -> tuple[Row, ...]:
    n = window.glucose.size
    rows: list[Row] = []

    def add(key: str, label: str, value: float | None, display: str, goal: Goal | None) -> None:
        value = _finite(value)
        met = None if goal is None or value is None else goal.met_by(value)
        rows.append(Row(key, label, value, display if value is not None else "—", goal, met))

    def percent_row(key: str, label: str, value: float | None, op: str, goal: float | None) -> None:
        add(key, label, value, format_percent(value), None if goal is None else Goal(op, goal))

    def figure(name: str) -> float | None:
        return figures.get(name) if n else None

    percent_row(
        "tir",
        text(lang, "row.tir", range=format_range(t.low, t.high, unit)),
        _in_range(window, figures, t.low, t.high) if n else None,
        ">",
        t.tir_above,
    )
    percent_row(
        "tbr",
        text(lang, "row.tbr", low=format_threshold(t.low, unit)),
        _below(window, figures, t.low) if n else None,
        "<",
        t.tbr_below,
    )
    percent_row(
        "tbr_very",
        text(lang, "row.tbr_very", low=format_threshold(t.very_low, unit)),
        _below(window, figures, t.very_low) if n else None,
        "<",
        t.tbr_very_below,
    )
    percent_row(
        "tar",
        text(lang, "row.tar", high=format_threshold(t.high, unit)),
        _above(window, figures, t.high) if n else None,
        "<",
        t.tar_below,
    )
    percent_row(
        "tar_very",
        text(lang, "row.tar_very", high=format_threshold(t.very_high, unit)),
        _above(window, figures, t.very_high) if n else None,
        "<",
        t.tar_very_below,
    )
    percent_row("cv", text(lang, "row.cv"), figure("cv"), "<=", t.cv_at_most)
    mean = figure("mean")
    add("mean", text(lang, "row.mean"), mean, format_glucose(mean, unit), None)
    gmi = _finite(figure("gmi"))
    gmi_text = "—" if gmi is None else f"{gmi:.1f}% ({(gmi - 2.152) * 10.929:.0f} mmol/mol)"
    add("gmi", text(lang, "row.gmi"), gmi, gmi_text, None)
    sd = figure("sd")
    add("sd", text(lang, "row.sd"), sd, format_glucose(sd, unit), None)
    gri = _finite(figure("gri"))
    gri_text = "—" if gri is None else text(lang, "gri_zone", value=f"{gri:.1f}", zone=gri_zone(gri))
    add("gri", text(lang, "row.gri"), gri, gri_text, None)
    return tuple(rows)


def gri_zone(gri: float) -> str:
    """Zones of the glycaemia risk index: A 0–20, B to 40, C to 60, D to 80, E above."""
    for limit, zone in ((20.0, "A"), (40.0, "B"), (60.0, "C"), (80.0, "D")):
        if gri <= limit:
            return zone
    return "E"


def _bands(lang: str, window: Series, t: Targets, unit: str) -> tuple[Band, ...]:
    own = _own(window)
    step = 0.1 if unit == "mmol/L" else 1.0
    vlow, low, high, vhigh = (threshold(v, unit) for v in (t.very_low, t.low, t.high, t.very_high))
    u = display_unit(unit)

    def num(value: float) -> str:
        return format_number(value, unit)

    has = own.size > 0
    shares = (
        ("very_low", f"<{num(vlow)} {u}", _share(own < vlow)),
        ("low", f"{num(vlow)}–{num(low - step)} {u}", _share((own >= vlow) & (own < low))),
        ("in_range", f"{num(low)}–{num(high)} {u}", _share((own >= low) & (own <= high))),
        ("high", f"{num(high + step)}–{num(vhigh)} {u}", _share((own > high) & (own <= vhigh))),
        ("very_high", f">{num(vhigh)} {u}", _share(own > vhigh)),
    )
    return tuple(Band(key, label, share if has else None) for key, label, share in shares)


def _daily(window: Series, first_day: date, last_day: date) -> tuple[tuple[DayProfile, ...], int]:
    epoch = date(1970, 1, 1)
    first, last = (first_day - epoch).days, (last_day - epoch).days
    touched = last - first + 1
    shown = range(max(first, last - MAX_DAILY_PROFILES + 1), last + 1)
    edges = np.searchsorted(window.times, np.array([d * DAY for d in [*shown, shown[-1] + 1]]), side="left")
    profiles = []
    for i, d in enumerate(shown):
        lo, hi = int(edges[i]), int(edges[i + 1])
        profiles.append(
            DayProfile(
                epoch + timedelta(days=d),
                (window.times[lo:hi] - d * DAY) / 60.0,
                window.glucose[lo:hi],
            )
        )
    return tuple(profiles), touched


_EPISODE_KINDS = (("hypo", 2), ("hypo", 1), ("hyper", 2), ("hyper", 1))  # by urgency
_EPISODE_CUTS = {("hypo", 1): 70.0, ("hypo", 2): 54.0, ("hyper", 1): 180.0, ("hyper", 2): 250.0}


def _episode_label(lang: str, kind: str, level: int, unit: str) -> str:
    return text(lang, f"episode.{kind}.{level}", value=format_threshold(_EPISODE_CUTS[kind, level], unit))


def _episode_stats(lang: str, figures: Mapping[str, float], unit: str) -> tuple[EpisodeStats, ...]:
    stats = []
    for kind, level in _EPISODE_KINDS:
        key = f"{kind}_level{level}"
        count = int(figures.get(f"{key}_episodes", 0))
        stats.append(
            EpisodeStats(
                kind,
                level,
                _episode_label(lang, kind, level, unit),
                count,
                _finite(figures.get(f"{key}_per_day")),
                _finite(figures.get(f"{key}_mean_minutes")) if count else None,
            )
        )
    return tuple(stats)


def _listed_episodes(lang: str, found: list[Any], unit: str) -> tuple[EpisodeItem, ...]:
    """The most urgent episodes (level 2 hypo first), at most MAX_EPISODES_LISTED, in time order."""
    rank = {k: i for i, k in enumerate(_EPISODE_KINDS)}
    chosen = sorted(found, key=lambda e: (rank[e.kind, e.level], e.start))[:MAX_EPISODES_LISTED]
    chosen.sort(key=lambda e: (e.start, rank[e.kind, e.level]))
    return tuple(
        EpisodeItem(
            e.kind,
            e.level,
            _episode_label(lang, e.kind, e.level, unit),
            local_datetime(e.start),
            float(e.minutes),
            float(e.extreme),
        )
        for e in chosen
    )


# --- the plain-language summary ------------------------------------------------------------------


def _with_summary(r: Report) -> Report:
    return replace(r, summary=tuple(_summary(r)))


def _summary(r: Report) -> list[str]:
    lang, unit, t = r.locale, r.unit, r.targets
    row = {x.key: x for x in r.rows}
    if r.n_readings == 0:
        return [text(lang, "s.empty", period=r.period), text(lang, "s.empty_next")]
    sentences: list[str] = []
    missed: set[str] = set()

    def verdict(*keys: str) -> str:
        judged = [row[k].met for k in keys if row[k].met is not None]
        if not judged:
            return text(lang, "s.plain")
        if all(judged):
            return text(lang, "s.ok")
        missed.update(k for k in keys if row[k].met is False)
        return text(lang, "s.missed")

    def clause(key: str, name: str, param: str, bound: str) -> str:
        x = row[key]
        values = {param: format_percent(x.value), name: bound}
        if x.goal is None:
            return text(lang, f"s.{_CLAUSE[key]}_nogoal", **values)
        return text(lang, f"s.{_CLAUSE[key]}", goal=format_goal_percent(x.goal.value), **values)

    # Lows first: they are the most urgent.
    lows = clause("tbr", "low", "tbr", format_threshold(t.low, unit))
    lows += clause("tbr_very", "low", "tbr", format_threshold(t.very_low, unit))
    sentences.append(lows + verdict("tbr", "tbr_very"))
    tir = row["tir"]
    sentences.append(
        text(
            lang,
            "s.tir",
            tir=format_percent(tir.value),
            range=format_range(t.low, t.high, unit),
            goal=format_goal_percent(t.tir_above),
        )
        + verdict("tir")
    )
    highs = clause("tar", "high", "tar", format_threshold(t.high, unit))
    highs += clause("tar_very", "high", "tar", format_threshold(t.very_high, unit))
    sentences.append(highs + verdict("tar", "tar_very"))
    cv = row["cv"]
    if cv.value is not None and cv.goal is not None:
        sentences.append(
            text(lang, "s.cv", cv=format_percent(cv.value), goal=format_goal_percent(cv.goal.value))
            + verdict("cv")
        )
    if r.active_percent < 70.0:
        sentences.append(
            text(
                lang,
                "s.insufficient",
                active=format_percent(r.active_percent),
                days=days_phrase(lang, r.days),
            )
        )
    elif r.days < CONSENSUS_DAYS - 1e-9:
        sentences.append(text(lang, "s.short", days=days_phrase(lang, r.days)))
    if missed & {"tbr", "tbr_very"}:
        sentences.append(text(lang, "s.talk_lows"))
    elif missed:
        sentences.append(text(lang, "s.talk"))
    elif r.active_percent >= 70.0:  # "all met" only where the data can tell
        sentences.append(text(lang, "s.all_met"))
    return sentences


_CLAUSE = {"tbr": "low", "tbr_very": "very_low", "tar": "high", "tar_very": "very_high"}
