"""The AGP report (ehospital.glucose.report / render): its figures are those of all_metrics on the
window, flags follow the consensus targets, the AGP percentiles are ordered and equal numpy's, and
the HTML fragment, page and PDF are well-formed and fit the site's Content-Security-Policy."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ehospital.glucose.metrics import Series, all_metrics, episodes
from ehospital.glucose.render import render_fragment, render_page, render_pdf, report_css
from ehospital.glucose.report import (
    AGP_QUANTILES,
    MAX_DAILY_PROFILES,
    MAX_EPISODES_LISTED,
    PRESETS,
    Goal,
    Report,
    agp_percentiles,
    build_report,
    format_percent,
    gri_zone,
    targets_for,
)

CGM = Path(__file__).resolve().parents[2] / "shared" / "data" / "cgm"
FIVE = CGM / "iglu_example_data_5_subject.csv"
DAY = 86400.0
T0 = datetime(2024, 3, 1)  # a Friday


@pytest.fixture(scope="module")
def five_subjects() -> dict[str, Series]:
    if not FIVE.is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{FIVE} is missing (CI=true needs ../shared/data/cgm beside the checkout)")
        pytest.skip(f"{FIVE} is not beside this checkout (../shared/data/cgm)")
    readings: dict[str, list[tuple[datetime, float]]] = {}
    with FIVE.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["gl"] not in ("", "NA"):
                readings.setdefault(row["id"], []).append(
                    (datetime.fromisoformat(row["time"]), float(row["gl"]))
                )
    return {pid: Series.of([t for t, _ in v], [g for _, g in v]) for pid, v in readings.items()}


def last_14_days(s: Series) -> tuple[float, float]:
    end = math.ceil(s.times[-1] / DAY) * DAY
    return end - 14 * DAY, end


def window(s: Series, start: float, end: float) -> Series:
    inside = (s.times > start) & (s.times <= end)
    return Series(s.times[inside], s.glucose[inside], s.unit)


def series(
    values: list[float] | np.ndarray, *, step: float = 5.0, unit: str = "mg/dL", first: float = 0.0
) -> Series:
    t0 = (T0 - datetime(1970, 1, 1)).total_seconds()
    times = t0 + first + 60.0 * step * np.arange(1, len(values) + 1)
    return Series(times.astype(np.float64), np.asarray(values, dtype=np.float64), unit)


def synthetic(days: int, unit: str = "mg/dL", seed: int = 7) -> tuple[Series, float, float]:
    """5-minute readings over `days` days with a daily rhythm and noise; the window they fill."""
    rng = np.random.default_rng(seed)
    n = days * 288
    minutes = 5.0 * np.arange(1, n + 1)
    glucose = 140 + 60 * np.sin((minutes / 60.0 - 9) / 24 * 2 * np.pi) + rng.normal(0, 25, n)
    glucose = np.clip(glucose, 40.0, 400.0)
    if unit == "mmol/L":  # as a meter in mmol/L gives them: one decimal, stored as mg/dL
        glucose = np.round(glucose / 18.0, 1) * 18.0
    t0 = (T0 - datetime(1970, 1, 1)).total_seconds()
    return Series((t0 + 60.0 * minutes).astype(np.float64), glucose, unit), t0, t0 + days * DAY


def rows(report: Report) -> dict[str, float | None]:
    return {row.key: row.value for row in report.rows}


def pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def parse_fragment(fragment: str) -> ET.Element:
    return ET.fromstring(f"<div>{fragment}</div>")


# --- the figures ---------------------------------------------------------------------------------


def test_the_table_is_all_metrics_of_the_window(five_subjects: dict[str, Series]) -> None:
    for pid, s in five_subjects.items():
        start, end = last_14_days(s)
        report = build_report(s, start=start, end=end, targets=targets_for("standard"), locale="en")
        m = all_metrics(window(s, start, end))
        got = rows(report)
        expected = {
            "tir": m["in_range_70_180"],
            "tbr": m["below_70"],
            "tbr_very": m["below_54"],
            "tar": m["above_180"],
            "tar_very": m["above_250"],
            "cv": m["cv"],
            "mean": m["mean"],
            "gmi": m["gmi"],
            "sd": m["sd"],
            "gri": m["gri"],
        }
        assert got == expected, pid
        assert report.n_readings == m["n_readings"]
        assert {k: v for k, v in report.metrics.items()} == m
        shares = [b.percent for b in report.bands]
        assert all(p is not None for p in shares)
        assert sum(p for p in shares if p is not None) == pytest.approx(100.0)
        by_key = {b.key: b.percent for b in report.bands}
        assert by_key["low"] == pytest.approx(m["tbr_54_69"]) and by_key["high"] == pytest.approx(
            m["tar_181_250"]
        )
        assert report.episodes_total == len(episodes(window(s, start, end)))
        counts = {(e.kind, e.level): e.count for e in report.episode_stats}
        assert (
            counts["hyper", 1] == m["hyper_level1_episodes"]
            and counts["hypo", 1] == m["hypo_level1_episodes"]
        )
        assert len(report.episodes) <= MAX_EPISODES_LISTED
        gri = report.rows[-1]
        assert gri.key == "gri" and f"zone {gri_zone(m['gri'])}" in gri.display


def test_a_shorter_window_counts_only_its_readings(five_subjects: dict[str, Series]) -> None:
    s = five_subjects["Subject 1"]
    _, end = last_14_days(s)
    start = end - 7 * DAY
    report = build_report(s, start=start, end=end, targets=targets_for("standard"), locale="en")
    assert rows(report)["tir"] == all_metrics(window(s, start, end))["in_range_70_180"]
    assert report.days == 7.0 and not report.sufficient
    assert any("shorter than the 14 days" in note for note in report.notes)
    assert any("fewer than the 14 days" in sentence for sentence in report.summary)
    assert len(report.daily) == 7 and report.daily[-1].day.isoformat() == "2015-06-19"


@pytest.mark.parametrize(("in_range", "met"), [(70, False), (71, True)])
def test_time_in_range_just_on_either_side_of_the_goal(in_range: int, met: bool) -> None:
    s = series([120.0] * in_range + [200.0] * (100 - in_range))
    report = build_report(s, start=s.times[0] - 1, end=s.times[-1], targets=targets_for("standard"))
    tir = report.rows[0]
    assert tir.key == "tir" and tir.value == float(in_range) and tir.met is met
    tar = next(r for r in report.rows if r.key == "tar")
    assert tar.met is False  # 29-30 % above 180: the goal is < 25 %


@pytest.mark.parametrize(("below", "met"), [(4, False), (3, True)])
def test_time_below_range_just_on_either_side_of_the_goal(below: int, met: bool) -> None:
    s = series([60.0] * below + [120.0] * (100 - below))
    report = build_report(
        s, start=s.times[0] - 1, end=s.times[-1], targets=targets_for("standard"), locale="en"
    )
    tbr = next(r for r in report.rows if r.key == "tbr")
    assert tbr.value == float(below) and tbr.met is met
    # The lows come first in the summary, and a missed low goal sends the patient to the care team.
    assert report.summary[0].startswith("Your time below 70 mg/dL was")
    assert ("talk to your care team about your lows" in report.summary[-1]) is (not met)


def test_flags_judge_the_value_as_shown() -> None:
    assert not Goal(">", 70.0).met_by(70.04)  # shown as 70.0 %, which is not above 70 %
    assert Goal(">", 70.0).met_by(70.05000001)
    assert Goal("<", 4.0).met_by(3.94) and not Goal("<", 4.0).met_by(3.96)
    assert Goal("<=", 36.0).met_by(36.0) and not Goal("<=", 36.0).met_by(36.06)
    s = series([120.0] * 7004 + [200.0] * 2996)
    report = build_report(s, start=s.times[0] - 1, end=s.times[-1], targets=targets_for("standard"))
    assert report.rows[0].display == "70.0%" and report.rows[0].met is False


def test_presets() -> None:
    assert PRESETS == ("standard", "older_high_risk", "pregnancy_t1")
    with pytest.raises(ValueError, match="unknown target preset"):
        targets_for("paediatric")
    older = targets_for("older_high_risk")
    assert (older.tir_above, older.tbr_below, older.tar_very_below) == (50.0, 1.0, 10.0)
    assert older.tbr_very_below is None and older.tar_below is None
    pregnancy = targets_for("pregnancy_t1")
    assert (pregnancy.low, pregnancy.high, pregnancy.tir_above, pregnancy.tbr_below) == (
        63.0,
        140.0,
        70.0,
        4.0,
    )
    assert (pregnancy.tbr_very_below, pregnancy.tar_below) == (1.0, 25.0)


def test_pregnancy_uses_its_own_range_and_below_63() -> None:
    values = [50.0] * 2 + [60.0] * 3 + [63.0] * 10 + [140.0] * 60 + [150.0] * 25
    s = series(values)
    report = build_report(
        s, start=s.times[0] - 1, end=s.times[-1], targets=targets_for("pregnancy_t1"), locale="en"
    )
    got = rows(report)
    assert got["tir"] == 70.0 and got["tbr"] == 5.0 and got["tbr_very"] == 2.0 and got["tar"] == 25.0
    assert [b.label for b in report.bands] == [
        "<54 mg/dL",
        "54–62 mg/dL",
        "63–140 mg/dL",
        "141–250 mg/dL",
        ">250 mg/dL",
    ]
    assert [b.percent for b in report.bands] == [2.0, 3.0, 70.0, 25.0, 0.0]
    flags = {r.key: r.met for r in report.rows}
    assert (
        flags["tir"] is False
        and flags["tbr"] is False
        and flags["tbr_very"] is False
        and flags["tar"] is False
    )
    assert flags["tar_very"] is None  # no > 250 goal in pregnancy
    assert "63–140 mg/dL" in report.summary[1]


def test_older_high_risk_judges_its_goals() -> None:
    values = [65.0] * 2 + [120.0] * 55 + [200.0] * 35 + [260.0] * 8
    s = series(values)
    report = build_report(
        s, start=s.times[0] - 1, end=s.times[-1], targets=targets_for("older_high_risk"), locale="en"
    )
    flags = {r.key: r.met for r in report.rows}
    assert flags == {
        "tir": True,  # 55 % > 50 %
        "tbr": False,  # 2 % is not < 1 %
        "tbr_very": None,
        "tar": None,
        "tar_very": True,  # 8 % < 10 %
        "cv": flags["cv"],
        "mean": None,
        "gmi": None,
        "sd": None,
        "gri": None,
    }


def test_mmol_readings_are_shown_and_judged_in_mmol() -> None:
    # 13.9 mmol/L is 250.2 mg/dL: above 250 mg/dL, not above 13.9 mmol/L.
    s = series([13.9 * 18.0] * 10 + [5.6 * 18.0] * 90, unit="mmol/L")
    report = build_report(
        s, start=s.times[0] - 1, end=s.times[-1], targets=targets_for("standard"), locale="en"
    )
    assert report.unit == "mmol/L"
    assert rows(report)["tar_very"] == 0.0 and rows(report)["tar"] == 10.0
    mean = next(r for r in report.rows if r.key == "mean")
    assert mean.display == f"{(13.9 * 10 + 5.6 * 90) / 100:.1f} mmol/L"
    assert report.rows[0].label == "Time in range (TIR) 3.9–10.0 mmol/L"
    fragment = render_fragment(report)
    assert "mmol/L" in fragment and "mg/dL" not in fragment
    assert "3.9–10.0 mmol/L" in " ".join(report.summary)


# --- the AGP percentiles -------------------------------------------------------------------------


def test_agp_percentiles_are_ordered_and_equal_numpys(five_subjects: dict[str, Series]) -> None:
    for s in five_subjects.values():
        raw, counts = agp_percentiles(s.times, s.glucose, smooth=False, min_readings=1)
        bins = (np.mod(s.times, DAY) // 900).astype(int)
        assert counts.sum() == s.times.size and raw.shape == (len(AGP_QUANTILES), 96)
        for b in range(96):
            if counts[b]:
                want = np.percentile(s.glucose[bins == b], AGP_QUANTILES)
                np.testing.assert_allclose(raw[:, b], want, rtol=1e-12, atol=1e-9)
            else:
                assert np.isnan(raw[:, b]).all()
        smoothed, _ = agp_percentiles(s.times, s.glucose)
        present = ~np.isnan(smoothed[0])
        assert present.any()
        assert (np.diff(smoothed[:, present], axis=0) >= -1e-9).all()  # p5 <= p25 <= ... <= p95
        assert (np.isnan(smoothed[:, ~present])).all()
        assert np.array_equal(present, counts >= 3)


def test_agp_smoothing_wraps_around_midnight() -> None:
    # Readings only in the first and last bins of the day: each one's neighbour is the other.
    days = np.arange(10, dtype=np.float64) * DAY
    times = np.concatenate((days + 60.0, days + DAY - 60.0))
    glucose = np.concatenate((np.full(10, 100.0), np.full(10, 200.0)))
    smoothed, _ = agp_percentiles(times, glucose)
    assert smoothed[2, 0] == pytest.approx((2 * 100 + 200) / 3)
    assert smoothed[2, 95] == pytest.approx((2 * 200 + 100) / 3)


# --- the summary ---------------------------------------------------------------------------------


def test_summaries_in_chinese_and_english(five_subjects: dict[str, Series]) -> None:
    s = five_subjects["Subject 2"]
    start, end = last_14_days(s)
    zh = build_report(s, start=start, end=end, targets=targets_for("standard"))
    en = build_report(s, start=start, end=end, targets=targets_for("standard"), locale="en")
    assert zh.locale == "zh" and en.locale == "en"
    tir = format_percent(rows(en)["tir"])
    for report in (zh, en):
        assert 3 <= len(report.summary) <= 6
        assert any(tir in sentence for sentence in report.summary)
    assert zh.summary != en.summary
    assert "目标范围" in "".join(zh.summary) and "target range" in " ".join(en.summary)
    assert "医疗团队" in zh.summary[-1] and "care team" in en.summary[-1]  # TIR 26 %: goals missed
    assert not any(word in " ".join(en.summary).lower() for word in ("insulin", "dose", "diagnos"))
    with pytest.raises(ValueError, match="locale"):
        build_report(s, start=start, end=end, targets=targets_for("standard"), locale="fr")
    assert (
        build_report(s, start=start, end=end, targets=targets_for("standard"), locale="zh-CN").locale == "zh"
    )


# --- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("locale", ["zh", "en"])
def test_rendering(five_subjects: dict[str, Series], locale: str) -> None:
    s = five_subjects["Subject 1"]
    start, end = last_14_days(s)
    report = build_report(
        s,
        start=start,
        end=end,
        targets=targets_for("standard"),
        locale=locale,
        title="<AGP> & co",
        patient="张三",
    )
    fragment = render_fragment(report)
    assert fragment.lstrip().startswith('<section class="agp-report"')
    assert "<script" not in fragment.lower() and "style=" not in fragment.lower() and "<style" not in fragment
    root = parse_fragment(fragment)  # well-formed XML, SVG included
    svgs = root.findall(".//{http://www.w3.org/2000/svg}svg")
    assert len(svgs) == 2 + len(report.daily) and len(report.daily) == 14
    assert "&lt;AGP&gt; &amp; co" in fragment  # escaped
    assert format_percent(rows(report)["tir"]) in fragment
    assert fragment.count('class="agp-p5-95"') == 1 and fragment.count('class="agp-median"') == 1

    page = render_page(report)
    assert page.startswith("<!doctype html>") and f'<html lang="{locale}"' in page
    assert "<style>" in page and report_css().strip() in page and fragment in page
    assert "@page" in report_css() and "A4" in report_css()

    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF") and pages(pdf) == 2
    assert b"STSong-Light" in pdf  # Chinese text (in English, the patient's name)

    data = report.as_dict()
    json.dumps(data, allow_nan=False)
    assert data["table"][0]["key"] == "tir" and data["unit"] == "mg/dL" and data["locale"] == locale
    assert data["agp"] is not None and len(data["agp"]["p50"]) == 96


def test_english_pdf_uses_helvetica_only_for_latin_text() -> None:
    s, start, end = synthetic(14)
    report = build_report(
        s, start=start, end=end, targets=targets_for("standard"), locale="en", patient="Jane Roe"
    )
    pdf = render_pdf(report)
    assert b"Helvetica" in pdf and b"STSong-Light" not in pdf
    zh = render_pdf(
        build_report(s, start=start, end=end, targets=targets_for("standard"), patient="Jane Roe")
    )
    assert b"STSong-Light" in zh


def _all_outputs(report: Report) -> str:
    fragment = render_fragment(report)
    parse_fragment(fragment)
    assert "style=" not in fragment and "<script" not in fragment
    render_page(report)
    pdf = render_pdf(report)
    assert pdf.startswith(b"%PDF") and pages(pdf) == 2
    json.dumps(report.as_dict(), allow_nan=False)
    return fragment


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("locale", ["zh", "en"])
def test_missing_data_does_not_break_the_report(preset: str, locale: str) -> None:
    targets = targets_for(preset)
    s, start, end = synthetic(14)
    empty = build_report(
        Series(s.times[:0], s.glucose[:0]), start=start, end=end, targets=targets, locale=locale
    )
    assert empty.n_readings == 0 and empty.agp is None and not empty.sufficient
    assert all(r.value is None and r.met is None for r in empty.rows)
    assert all(d.glucose.size == 0 for d in empty.daily) and len(empty.daily) == 14
    assert len(empty.summary) == 2 and empty.notes
    fragment = _all_outputs(empty)
    assert ("no glucose readings" if locale == "en" else "没有葡萄糖读数") in fragment

    one = build_report(
        Series(s.times[5:6], s.glucose[5:6]), start=start, end=end, targets=targets, locale=locale
    )
    assert one.n_readings == 1 and one.agp is None and rows(one)["sd"] is None and rows(one)["cv"] is None
    assert len(one.notes) == 2  # one reading; the sensor barely active
    assert len(one.summary) >= 3
    _all_outputs(one)

    # Days 4 to 10 missing: the AGP still drawn from the rest, those days' profiles empty.
    keep = (s.times < start + 3 * DAY) | (s.times > start + 10 * DAY)
    gap = build_report(
        Series(s.times[keep], s.glucose[keep], s.unit), start=start, end=end, targets=targets, locale=locale
    )
    assert gap.agp is not None and not gap.sufficient and gap.active_percent == pytest.approx(50.0, abs=0.1)
    assert [d.glucose.size == 0 for d in gap.daily] == [False] * 3 + [True] * 7 + [False] * 4
    assert any(("70%" in note) for note in gap.notes)
    _all_outputs(gap)


def test_a_window_too_short_for_the_agp() -> None:
    s, start, end = synthetic(2)
    report = build_report(s, start=start, end=end, targets=targets_for("standard"), locale="en")
    assert report.agp is None and report.n_readings == 576
    assert "Too few readings" in _all_outputs(report)


def test_mmol_series_renders_in_mmol() -> None:
    s, start, end = synthetic(14, unit="mmol/L")
    report = build_report(s, start=start, end=end, targets=targets_for("standard"), locale="en")
    fragment = _all_outputs(report)
    assert "mmol/L" in fragment and "mg/dL" not in fragment
    assert ">10.0<" in fragment  # the AGP's axis marks 180 mg/dL as 10.0


def test_a_90_day_window_shows_the_last_14_days() -> None:
    s, start, end = synthetic(90)
    report = build_report(s, start=start, end=end, targets=targets_for("standard"), locale="en")
    assert report.days == 90.0 and report.days_in_window == 90 and len(report.daily) == MAX_DAILY_PROFILES
    assert report.daily[-1].day == report.last_day and report.daily[0].day == report.last_day - timedelta(
        days=13
    )
    assert report.sufficient and report.n_readings == 90 * 288
    fragment = _all_outputs(report)
    assert "The last 14 of 90 days are shown." in fragment


def test_window_edges() -> None:
    s = series([100.0] * 10)
    report = build_report(s, start=s.times[2], end=s.times[7], targets=targets_for("standard"))
    assert report.n_readings == 5  # start < t <= end
    with pytest.raises(ValueError):
        build_report(s, start=s.times[5], end=s.times[5], targets=targets_for("standard"))
    unsorted = Series(s.times[::-1].copy(), s.glucose[::-1].copy())
    assert (
        build_report(unsorted, start=s.times[2], end=s.times[7], targets=targets_for("standard")).n_readings
        == 5
    )
