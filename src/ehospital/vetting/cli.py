"""`ehospital vet`: vet prescriptions given as JSON, print verdicts as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from ehospital.vetting.engine import vet
from ehospital.vetting.knowledge import Knowledge, KnowledgeUnavailable, knowledge
from ehospital.vetting.schemas import VetRequest


class BadRequest(Exception):
    """One request that cannot be vetted: its reason, machine-readable."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.body: dict[str, Any] = {"code": code, "message": message}
        if details:
            self.body["details"] = details


def add_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "vet",
        help="vet a prescription (JSON) and print the verdict as JSON",
        description="Vet prescriptions with the knowledge graph: interactions, duplicates, unknown drugs.",
    )
    parser.add_argument("file", nargs="?", help="a JSON request, or - for standard input")
    parser.add_argument(
        "--batch", metavar="FILE.jsonl", help="one request per line (- for stdin); one verdict per line"
    )
    parser.add_argument(
        "--fhir-dir",
        metavar="DIR",
        help="vet the prescriptions of FHIR patients (NDJSON, e.g. Synthea) and print a summary",
    )
    parser.add_argument("--pretty", action="store_true", help="indented output")
    parser.set_defaults(func=run, needs_settings=False)


def verdict_for(kb: Knowledge, data: Any) -> dict[str, Any]:
    try:
        request = VetRequest.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        raise BadRequest("validation_error", "the request does not match the schema", details) from exc
    items = [item.to_engine() for item in request.items]
    return vet(items, request.patient.to_engine(), kb).as_dict()


def _open(name: str) -> TextIO:
    return sys.stdin if name == "-" else Path(name).open(encoding="utf-8")


def _lines(stream: TextIO) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def run(args: argparse.Namespace, _settings: object = None) -> int:
    if sum(bool(x) for x in (args.file, args.batch, args.fhir_dir)) != 1:
        print("ehospital vet: give one FILE (or -), --batch FILE.jsonl or --fhir-dir DIR", file=sys.stderr)
        return 2
    indent = 2 if args.pretty else None
    try:
        kb = knowledge()
    except KnowledgeUnavailable as exc:
        print(f"ehospital vet: {exc}", file=sys.stderr)
        return 1
    if args.fhir_dir:
        from ehospital.vetting.fhirdir import summarise

        directory = Path(args.fhir_dir)
        if not directory.is_dir():
            print(f"ehospital vet: {directory} is not a directory", file=sys.stderr)
            return 1
        try:
            summary = summarise(kb, directory)
        except (OSError, ValueError) as exc:
            print(f"ehospital vet: cannot read the FHIR files in {directory}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(summary, ensure_ascii=False, indent=indent))
        return 0
    try:
        if args.file:
            with _open(args.file) as stream:
                text = stream.read()
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                print(f"ehospital vet: {args.file} is not JSON: {exc}", file=sys.stderr)
                return 2
            try:
                print(json.dumps(verdict_for(kb, data), ensure_ascii=False, indent=indent))
            except BadRequest as exc:
                print(json.dumps({"error": exc.body}, ensure_ascii=False, indent=indent))
                return 2
            return 0
        failed = 0
        with _open(args.batch) as stream:
            for number, line in _lines(stream):
                try:
                    try:
                        data = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise BadRequest("malformed_json", f"line {number} is not JSON: {exc.msg}") from exc
                    out: dict[str, Any] = verdict_for(kb, data)
                except BadRequest as exc:
                    failed += 1
                    out = {"line": number, "error": exc.body}
                print(json.dumps(out, ensure_ascii=False, indent=indent))
        return 1 if failed else 0
    except OSError as exc:
        print(f"ehospital vet: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
