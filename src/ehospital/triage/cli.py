"""`ehospital triage …`: measure the triage on a labelled set, or try one description."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_CASES = Path("tests") / "data" / "triage_cases.jsonl"


def add_parser(sub: Any) -> None:
    triage = sub.add_parser("triage", help="symptom triage: suggested centre and clinic")
    triage_sub = triage.add_subparsers(dest="triage_command", required=True)

    evaluate = triage_sub.add_parser(
        "evaluate",
        help="accuracy on a labelled set (top-1/3 centre, top-1 clinic, emergencies; 95 %% Wilson intervals)",
        description="Runs every case against the demo hospital's directory and prints the figures for "
        "all cases, per language, and on the holdout cases, then the misses.",
    )
    evaluate.add_argument(
        "--cases", metavar="FILE", default=str(DEFAULT_CASES), help=f"JSON lines (default: {DEFAULT_CASES})"
    )
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    evaluate.set_defaults(func=run_evaluate, needs_settings=False)

    try_one = triage_sub.add_parser("suggest", help="triage one description against the demo directory")
    try_one.add_argument("text", help="the symptoms, Chinese or English")
    try_one.add_argument("--lang", choices=("zh", "en"), help="reply language (detected otherwise)")
    try_one.set_defaults(func=run_suggest, needs_settings=False)


def run_evaluate(args: argparse.Namespace) -> int:
    from ehospital.triage.evaluate import evaluate, format_report, load_cases

    path = Path(args.cases)
    if not path.is_file():
        print(f"ehospital triage evaluate: no cases file at {path} (use --cases FILE)", file=sys.stderr)
        return 2
    report = evaluate(load_cases(path))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    from ehospital.triage.engine import TriageInputError, demo_directory, suggest
    from ehospital.triage.service import to_read

    try:
        result = suggest(args.text, demo_directory(), lang=args.lang)
    except TriageInputError as exc:
        print(f"ehospital triage suggest: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(to_read(result).model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0
