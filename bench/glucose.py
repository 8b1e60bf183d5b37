"""Benchmark of the glucose analytics (issue 5, metrics so far): the time to compute every
metric for one patient's 14 days and 90 days of 5-minute CGM readings.

    python bench/glucose.py

The 14 days are iglu's "Subject 1" from ../shared/data/cgm; the 90 days are that trace repeated
seven times, a fortnight apart. Prints a table, then one JSON line of name: value last.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from ehospital.glucose import Series, all_metrics, mage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cgm" / "iglu_example_data_5_subject.csv"


def subject_one() -> Series:
    times, values = [], []
    with DATA.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["id"] == "Subject 1" and row["gl"] not in ("", "NA"):
                times.append(datetime.fromisoformat(row["time"]))
                values.append(float(row["gl"]))
    return Series.of(times, values)


def repeated(s: Series, times: int, days_apart: float) -> Series:
    shift = days_apart * 86400.0
    return Series(np.concatenate([s.times + k * shift for k in range(times)]), np.tile(s.glucose, times))


def timed(fn: object, series: Series, runs: int) -> tuple[float, float]:
    """Median and worst milliseconds over `runs` calls (after one warm-up call)."""
    assert callable(fn)
    fn(series)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn(series)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"bench/glucose.py: {DATA} is missing (../shared/data beside the checkout)", file=sys.stderr)
        return 1
    fortnight = subject_one()
    quarter = repeated(fortnight, 7, 14.0)
    result = {}
    print(f"{'what':<28}{'readings':>10}{'median ms':>12}{'max ms':>10}")
    for label, series in (("14_days", fortnight), ("90_days", quarter)):
        for name, fn in (("all_metrics", all_metrics), ("mage", mage)):
            median, worst = timed(fn, series, args.runs)
            print(f"{name + ' ' + label:<28}{series.glucose.size:>10}{median:>12.2f}{worst:>10.2f}")
            result[f"{name}_{label}_ms"] = round(median, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
