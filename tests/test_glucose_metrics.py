"""Glucose metrics agree with the R package iglu 4.3.0 on its 5-subject example data
(../shared/data/cgm, reference_metrics_5_subject.csv), and `ehospital cgm metrics` prints them."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehospital.glucose import Series, all_metrics, basic_metrics
from ehospital.glucose.metrics import episodes, sufficiency

CGM = Path(__file__).resolve().parents[2] / "shared" / "data" / "cgm"
EHOSPITAL = str(Path(sys.executable).parent / "ehospital")
needs_data = pytest.mark.skipif(
    not (CGM / "reference_metrics_5_subject.csv").is_file() and os.environ.get("CI") != "true",
    reason="../shared/data/cgm is not beside this checkout",
)
# Our names → the reference file's columns.
REFERENCE_NAMES = {
    "n_readings": "n_readings",
    "active_percent": "active_percent",
    "ndays": "ndays",
    "mean": "mean",
    "median": "median",
    "sd": "SD",
    "cv": "CV",
    "gmi": "GMI",
    "ea1c": "eA1C",
    "in_range_63_140": "in_range_63_140",
    "in_range_70_140": "in_range_70_140",
    "in_range_70_180": "in_range_70_180",
    "below_54": "below_54",
    "below_70": "below_70",
    "above_140": "above_140",
    "above_180": "above_180",
    "above_250": "above_250",
    "tbr_54_69": "TBR_54_69",
    "tar_181_250": "TAR_181_250",
    "gri": "GRI",
    "lbgi": "LBGI",
    "hbgi": "HBGI",
    "adrr": "ADRR",
    "j_index": "J_index",
    "m_value": "M_value",
    "iqr": "IQR",
}


def reference() -> dict[str, dict[str, str]]:
    with (CGM / "reference_metrics_5_subject.csv").open(encoding="utf-8") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


@needs_data
def test_metrics_agree_with_iglu_to_1e6() -> None:
    readings: dict[str, list[tuple[datetime, float]]] = {}
    with (CGM / "iglu_example_data_5_subject.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["gl"] not in ("", "NA"):
                readings.setdefault(row["id"], []).append(
                    (datetime.fromisoformat(row["time"]), float(row["gl"]))
                )
    expected = reference()
    assert set(readings) == set(expected)
    for pid, values in readings.items():
        got = all_metrics(Series.of([t for t, _ in values], [g for _, g in values]))
        for ours, theirs in REFERENCE_NAMES.items():
            want = float(expected[pid][theirs])
            assert math.isclose(got[ours], want, rel_tol=1e-6, abs_tol=1e-9), (pid, ours, got[ours], want)


def test_boundaries_and_a_short_series() -> None:
    start = datetime(2024, 1, 1)
    values = [54, 69.9, 70, 180, 180.1, 250, 250.1, 53.9]
    s = Series.of([start + timedelta(minutes=5 * i) for i in range(len(values))], values)
    m = basic_metrics(s)
    assert m["below_54"] == 12.5 and m["below_70"] == 37.5  # strict <
    assert m["in_range_70_180"] == 25.0 and m["above_180"] == 37.5 and m["above_250"] == 12.5
    assert m["tbr_54_69"] == 25.0 and m["tar_181_250"] == 25.0
    assert m["active_percent"] == 100.0 and m["n_readings"] == 8
    one = basic_metrics(Series.of([start], [120.0]))
    assert one["n_readings"] == 1 and math.isnan(one["sd"])
    assert basic_metrics(Series.of([], [])) == {"n_readings": 0}


@needs_data
def test_the_cli_prints_one_object_per_id() -> None:
    done = subprocess.run(
        [EHOSPITAL, "cgm", "metrics", str(CGM / "iglu_example_data_5_subject.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o["id"] for o in lines] == ["Subject 1", "Subject 2", "Subject 3", "Subject 4", "Subject 5"]
    expected = reference()
    assert all(math.isclose(o["gri"], float(expected[o["id"]]["GRI"]), rel_tol=1e-6) for o in lines)


def test_the_cli_with_bad_input(tmp_path: Path) -> None:
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EHOSPITAL, "cgm", "metrics", *args], input=stdin, capture_output=True, text=True
        )

    missing = run(str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    columns = run("-", stdin="a,b\n1,2\n")
    assert columns.returncode == 2 and "needs id,time,gl" in columns.stderr
    garbage = run("-", stdin="id,time,gl\nx,yesterday,100\n")
    assert garbage.returncode == 2 and "line 2" in garbage.stderr and "Traceback" not in garbage.stderr
    negative = run("-", stdin="id,time,gl\nx,2024-01-01 00:00:00,-5\n")
    assert negative.returncode == 2 and "not a positive number" in negative.stderr
    single = run("-", stdin="id,time,gl\nx,2024-01-01 00:00:00,100\nx,2024-01-01 00:05:00,NA\n")
    assert single.returncode == 0 and json.loads(single.stdout)["sd"] is None  # JSON null, not NaN


def readings(values: Sequence[float], step: int = 5) -> Series:
    start = datetime(2024, 1, 1, 8, 0)
    return Series.of([start + timedelta(minutes=step * i) for i in range(len(values))], values)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([100] * 12 + [60] * 4 + [100] * 12, [("hypo", 1, 20.0)]),  # 20 minutes below 70
        ([100] * 12 + [60] * 2 + [100] * 12, []),  # 10 minutes: not an episode
        # Back for 10 minutes does not end it; back for 20 minutes does.
        ([100] * 12 + [60] * 4 + [100] * 2 + [60] * 4 + [100] * 12, [("hypo", 1, 50.0)]),
        ([100] * 12 + [60] * 4 + [100] * 4 + [60] * 4 + [100] * 12, [("hypo", 1, 20.0), ("hypo", 1, 20.0)]),
        (
            [100] * 12 + [50] * 6 + [100] * 12,
            [("hypo", 1, 30.0), ("hypo", 2, 30.0)],
        ),  # level 2 is level 1 too
        ([100] * 12 + [260] * 6 + [100] * 12, [("hyper", 1, 30.0), ("hyper", 2, 30.0)]),
        ([100] * 12 + [70] * 6 + [180] * 6 + [100] * 12, []),  # the thresholds themselves are in range
        ([100] * 12 + [60] * 5 + [100] * 2, [("hypo", 1, 30.0)]),  # data end: ends at the last point
    ],
)
def test_episodes_by_the_2023_consensus(values: list[float], expected: list[tuple[str, int, float]]) -> None:
    assert [(e.kind, e.level, e.minutes) for e in episodes(readings(values))] == expected


def test_an_episode_does_not_run_across_a_gap() -> None:
    before = [100] * 12 + [60] * 4
    after = [60] * 4 + [100] * 12
    start = datetime(2024, 1, 1, 8, 0)
    times = [start + timedelta(minutes=5 * i) for i in range(len(before))]
    times += [times[-1] + timedelta(hours=2, minutes=5 * i) for i in range(len(after))]
    found = episodes(Series.of(times, before + after))
    assert [(e.kind, e.minutes) for e in found] == [("hypo", 15.0), ("hypo", 20.0)]


def test_episode_summary_in_all_metrics() -> None:
    m = all_metrics(readings([100] * 12 + [50] * 6 + [100] * 12))
    assert m["hypo_level1_episodes"] == 1 and m["hypo_level2_mean_minutes"] == 30.0
    assert m["hyper_level1_episodes"] == 0 and m["hyper_level1_mean_minutes"] == 0.0


def test_readings_keep_the_thresholds_of_their_own_unit() -> None:
    """13.9 mmol/L is 250.2 mg/dL: above 250 mg/dL, not above 13.9 mmol/L (the Shanghai data)."""
    values = [250.2] * 6 + [100.8] * 6  # 13.9 and 5.6 mmol/L, as mg/dL
    start = datetime(2024, 1, 1)
    times = [start + timedelta(minutes=15 * i) for i in range(len(values))]
    as_mgdl = basic_metrics(Series.of(times, values))
    as_mmol = basic_metrics(Series.of(times, values, "mmol/L"))
    assert as_mgdl["above_250"] == 50.0 and as_mmol["above_250"] == 0.0
    assert as_mgdl["above_180"] == as_mmol["above_180"] == 50.0
    assert as_mgdl["mean"] == as_mmol["mean"]  # only the cut-offs depend on the unit
    assert [e.level for e in episodes(Series.of(times, values)) if e.kind == "hyper"] == [1, 2]
    assert [e.level for e in episodes(Series.of(times, values, "mmol/L")) if e.kind == "hyper"] == [1]


@needs_data
def test_the_cli_judges_mmol_readings_by_mmol_thresholds() -> None:
    def above_250(*extra: str) -> float:
        done = subprocess.run(
            [EHOSPITAL, "cgm", "metrics", str(CGM / "shanghai_cgm_tidy.csv"), *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return float(sum(json.loads(line)["above_250"] for line in done.stdout.splitlines()))

    assert above_250("--measured-in", "mmol/L") < above_250()


def test_sufficiency_is_judged_over_the_report_window() -> None:
    start = datetime(2024, 1, 1)
    full = [start + timedelta(minutes=5 * i) for i in range(14 * 288)]
    assert sufficiency(Series.of(full, [120.0] * len(full)))["sufficient"] is True
    # Ten of the fourteen days worn: 71 % is enough, eight days (57 %) is not.
    ten = full[: 10 * 288]
    window_end = (full[-1] - datetime(1970, 1, 1)).total_seconds()
    assert sufficiency(Series.of(ten, [120.0] * len(ten)), end=window_end)["sufficient"] is True
    eight = full[: 8 * 288]
    judged = sufficiency(Series.of(eight, [120.0] * len(eight)), end=window_end)
    assert judged["sufficient"] is False and 56 < float(judged["active_percent"]) < 58
    # A wear session months earlier does not count towards this fortnight.
    old = [start - timedelta(days=90) + timedelta(minutes=5 * i) for i in range(14 * 288)]
    recent = full[-288:]
    mixed = sufficiency(Series.of(old + recent, [120.0] * (len(old) + len(recent))))
    assert mixed["sufficient"] is False and round(float(mixed["active_percent"]), 1) == 7.1


@needs_data
def test_hall_subjects_with_sessions_months_apart_are_not_sufficient() -> None:
    per_id: dict[str, list[tuple[datetime, float]]] = {}
    with (CGM / "iglu_example_data_hall.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["gl"] not in ("", "NA"):
                per_id.setdefault(row["id"], []).append(
                    (datetime.fromisoformat(row["time"]), float(row["gl"]))
                )
    verdicts = {
        pid: sufficiency(Series.of([t for t, _ in v], [g for _, g in v]))["sufficient"]
        for pid, v in per_id.items()
    }
    assert len(verdicts) == 19 and not any(verdicts.values())  # about a week of wear each


@needs_data
def test_censored_lo_readings_are_counted_and_reported() -> None:
    """The Shanghai sensors floor at 2.2 mmol/L (39.6 mg/dL, "LO"): those readings are counted,
    still count as below 54, and the report says the true values may have been lower."""
    from ehospital.glucose.report import build_report, targets_for

    per_id: dict[str, list[tuple[datetime, float]]] = {}
    with (CGM / "shanghai_cgm_tidy.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["gl"] not in ("", "NA"):
                per_id.setdefault(row["id"], []).append(
                    (datetime.fromisoformat(row["time"]), float(row["gl"]))
                )
    total = 0
    for values in per_id.values():
        s = Series.of([t for t, _ in values], [g for _, g in values], "mmol/L")
        got = basic_metrics(s)
        floor = int(np.count_nonzero(np.isclose(s.glucose, 39.6)))
        assert got["sensor_floor_readings"] == floor
        total += floor
        if floor:
            assert got["below_54"] > 0
            end = float(s.times[-1])
            report = build_report(
                s, start=end - 14 * 86400, end=end, targets=targets_for("standard"), locale="en"
            )
            inside = int(np.count_nonzero(np.isclose(s.glucose[s.times > end - 14 * 86400], 39.6)))
            assert any("lower limit" in note for note in report.notes) == (inside > 0)
    assert total == 485  # as the data's README counts them


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=6 * 3600), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=86_399),
)
def test_any_spacing_of_readings_gives_metrics_and_a_report(gaps: list[int], start_second: int) -> None:
    """Readings at any intervals (a meter and a CGM together, seconds or hours apart) never
    break the metrics or the report (a 7-minute median once made a grid that did not divide
    a day)."""
    from ehospital.glucose.report import build_report, targets_for

    base = datetime(2026, 11, 1) + timedelta(seconds=start_second)
    offsets = np.cumsum([0, *gaps])
    times = [base + timedelta(seconds=int(o)) for o in offsets]
    values = [40.0 + (i * 37) % 300 for i in range(len(times))]
    series = Series.of(times, values)
    found = all_metrics(series)
    assert found["n_readings"] == len(times)
    end = float(series.times[-1])
    report = build_report(series, start=end - 14 * 86400, end=end, targets=targets_for("standard"))
    assert report.as_dict()["table"]
