"""`ehospital cgm metrics FILE.csv`: consensus metrics per person of a CSV of readings."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from ehospital.glucose.metrics import Series, all_metrics


def add_parser(sub: Any) -> None:
    cgm = sub.add_parser("cgm", help="glucose analytics of CGM readings")
    cgm_sub = cgm.add_subparsers(dest="cgm_command", required=True)
    metrics = cgm_sub.add_parser(
        "metrics",
        help="metrics per id of a CSV with columns id,time,gl (mg/dL; other columns ignored)",
    )
    metrics.add_argument("file", help="the CSV file, or - for standard input")
    metrics.add_argument(
        "--measured-in",
        choices=["mg/dL", "mmol/L"],
        default="mg/dL",
        help="the unit the meter measured in (gl is mg/dL either way): mmol/L readings are "
        "judged against the mmol/L thresholds (e.g. 13.9 mmol/L = 250.2 mg/dL is not above 13.9)",
    )
    metrics.set_defaults(func=run_metrics, needs_settings=False)


def read_readings(stream: Any, name: str) -> dict[str, list[tuple[datetime, float]]]:
    """Readings per id, in file order of ids; empty and NA glucose values are skipped."""
    reader = csv.DictReader(stream)
    missing = {"id", "time", "gl"} - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"{name} lacks the column(s) {', '.join(sorted(missing))} (needs id,time,gl)")
    found: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for line, row in enumerate(reader, start=2):
        value = (row["gl"] or "").strip()
        if value in ("", "NA", "NaN"):
            continue
        try:
            glucose = float(value)
            when = datetime.fromisoformat(row["time"].strip())
        except ValueError as exc:
            raise ValueError(f"{name}, line {line}: {exc}") from exc
        if not math.isfinite(glucose) or glucose <= 0:
            raise ValueError(f"{name}, line {line}: glucose {value!r} is not a positive number")
        found[row["id"]].append((when, glucose))
    return found


def run_metrics(args: argparse.Namespace, _settings: object = None) -> int:
    try:
        if args.file == "-":
            per_id = read_readings(sys.stdin, "standard input")
        else:
            with Path(args.file).open(encoding="utf-8-sig", newline="") as f:
                per_id = read_readings(f, args.file)
    except OSError as exc:
        print(f"ehospital cgm: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"ehospital cgm: {exc}", file=sys.stderr)
        return 2
    for pid, readings in per_id.items():
        series = Series.of([t for t, _ in readings], [g for _, g in readings], args.measured_in)
        metrics = {
            k: None if isinstance(v, float) and math.isnan(v) else v for k, v in all_metrics(series).items()
        }
        print(json.dumps({"id": pid, **metrics}, allow_nan=False))
    return 0
