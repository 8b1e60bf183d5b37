"""Accuracy of the triage on a labelled set of cases (JSON lines), with 95 % Wilson intervals.

A case: {"id", "lang", "text", "centre" (null: no centre of the directory fits, or an emergency
only), "clinic" (null: any clinic of the centre is right), "emergency" (bool), "holdout" (bool),
"source"}. Centre accuracy counts the cases with a centre, plus the non-emergency cases with
none (right when the triage says nothing matched well); emergency-only cases (no centre) count
for the emergency figures alone. Clinic accuracy counts the cases with a clinic label.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehospital.triage.engine import CentreEntry, TriageResult, demo_directory, suggest


@dataclass(frozen=True)
class Case:
    id: str
    lang: str
    text: str
    centre: str | None
    clinic: str | None
    emergency: bool
    holdout: bool
    source: str


def load_cases(path: Path) -> list[Case]:
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        try:
            cases.append(
                Case(
                    id=str(raw["id"]),
                    lang=str(raw["lang"]),
                    text=str(raw["text"]),
                    centre=raw.get("centre"),
                    clinic=raw.get("clinic"),
                    emergency=bool(raw.get("emergency", False)),
                    holdout=bool(raw.get("holdout", False)),
                    source=str(raw["source"]),
                )
            )
        except KeyError as exc:
            raise ValueError(f"{path}:{n}: missing {exc}") from exc
    return cases


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Rate:
    hits: int = 0
    n: int = 0

    def add(self, ok: bool) -> None:
        self.n += 1
        self.hits += int(ok)

    def as_dict(self) -> dict[str, Any]:
        low, high = wilson(self.hits, self.n)
        return {
            "value": round(self.hits / self.n, 3) if self.n else None,
            "hits": self.hits,
            "n": self.n,
            "ci95": [round(low, 3), round(high, 3)],
        }


@dataclass
class Outcome:
    case: Case
    centre: str | None  # the top suggestion's centre, None when nothing matched well
    clinic: str | None
    top3: list[str]
    emergency: str | None

    @property
    def centre_ok(self) -> bool:
        return self.centre == self.case.centre

    @property
    def clinic_ok(self) -> bool:
        return self.centre_ok and self.clinic == self.case.clinic

    @property
    def top3_ok(self) -> bool:
        return self.case.centre in self.top3 if self.case.centre else self.centre is None


@dataclass
class Scores:
    top1_centre: Rate = field(default_factory=Rate)
    top1_clinic: Rate = field(default_factory=Rate)
    top3_centre: Rate = field(default_factory=Rate)
    emergency_recall: Rate = field(default_factory=Rate)
    emergency_precision: Rate = field(default_factory=Rate)
    cases: int = 0

    def add(self, o: Outcome) -> None:
        self.cases += 1
        if o.case.centre is not None or not o.case.emergency:
            self.top1_centre.add(o.centre_ok)
            self.top3_centre.add(o.top3_ok)
        if o.case.clinic is not None:
            self.top1_clinic.add(o.clinic_ok)
        if o.case.emergency:
            self.emergency_recall.add(o.emergency is not None)
        if o.emergency is not None:
            self.emergency_precision.add(o.case.emergency)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "top1_centre": self.top1_centre.as_dict(),
            "top1_clinic": self.top1_clinic.as_dict(),
            "top3_centre": self.top3_centre.as_dict(),
            "emergency_recall": self.emergency_recall.as_dict(),
            "emergency_precision": self.emergency_precision.as_dict(),
        }


def outcome(case: Case, result: TriageResult) -> Outcome:
    real = [s for s in result.suggestions if not s.fallback]
    top = real[0] if real and result.matched else None
    return Outcome(
        case=case,
        centre=top.centre.code if top else None,
        clinic=top.clinic.code if top and top.clinic else None,
        top3=[s.centre.code for s in real[:3]],
        emergency=result.emergency.code if result.emergency else None,
    )


def evaluate(cases: Iterable[Case], directory: Sequence[CentreEntry] | None = None) -> dict[str, Any]:
    """Figures over all cases, per language, and on the holdout; plus every miss."""
    directory = directory if directory is not None else demo_directory()
    groups: dict[str, Scores] = {}
    misses: list[dict[str, Any]] = []
    for case in cases:
        o = outcome(case, suggest(case.text, directory, lang=case.lang))
        for name in ("all", f"lang:{case.lang}", "holdout" if case.holdout else "tuning"):
            groups.setdefault(name, Scores()).add(o)
        if case.holdout:
            groups.setdefault(f"holdout:{case.lang}", Scores()).add(o)
        counted = case.centre is not None or not case.emergency
        if (
            (counted and not o.centre_ok)
            or (case.clinic and not o.clinic_ok)
            or (case.emergency != (o.emergency is not None))
        ):
            misses.append(
                {
                    "id": case.id,
                    "holdout": case.holdout,
                    "expected": [case.centre, case.clinic, case.emergency],
                    "got": [o.centre, o.clinic, o.emergency],
                    "top3": o.top3,
                }
            )
    order = ["all", "lang:zh", "lang:en", "tuning", "holdout", "holdout:zh", "holdout:en"]
    return {
        "groups": {name: groups[name].as_dict() for name in order if name in groups},
        "misses": misses,
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{'group':<12} {'cases':>5}  {'top-1 centre':<24} {'top-1 clinic':<24} {'top-3 centre':<24} "
        f"{'emergency recall':<24} {'emergency precision':<24}"
    ]
    for name, g in report["groups"].items():
        cells = []
        for key in ("top1_centre", "top1_clinic", "top3_centre", "emergency_recall", "emergency_precision"):
            r = g[key]
            if r["n"]:
                cells.append(f"{r['value']:.3f} [{r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}] {r['hits']}/{r['n']}")
            else:
                cells.append("-")
        lines.append(f"{name:<12} {g['cases']:>5}  " + " ".join(f"{c:<24}" for c in cells))
    if report["misses"]:
        lines.append("")
        lines.append("misses (expected centre, clinic, emergency -> got):")
        for m in report["misses"]:
            flag = " (holdout)" if m["holdout"] else ""
            lines.append(f"  {m['id']}{flag}: {m['expected']} -> {m['got']} top3={m['top3']}")
    return "\n".join(lines)
