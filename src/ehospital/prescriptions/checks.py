"""The automatic check run on every signed prescription before the pharmacist sees it.

Checkers are pluggable: the regulatory findings, then the clinical vetting engine
(`ehospital.vetting`: interactions, duplicate therapy …) in the same list. Every prescription goes to the
pharmacist whatever the findings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from ehospital.prescriptions.models import Severity


@dataclass(frozen=True)
class CheckedItem:
    position: int
    code: str
    generic_en: str
    atc: str
    days: int
    dose: str | None = None
    dose_unit: str | None = None
    route: str | None = None
    frequency: str | None = None


@dataclass(frozen=True)
class PadLine:
    """A line of the pad as typed (nothing validated yet but its shape)."""

    code: str
    dose: str | None = None
    dose_unit: str | None = None
    route: str | None = None
    frequency: str | None = None
    days: int | None = None


@dataclass(frozen=True)
class CheckInput:
    items: tuple[CheckedItem, ...]
    patient_age: int
    chronic: bool
    long_term: bool
    extended_reason: str | None
    guardian_present: bool
    validity_days: int
    patient_sex: str | None = None


@dataclass(frozen=True)
class FindingOut:
    rule: str
    severity: Severity
    message: str
    message_zh: str
    source: str
    evidence: dict[str, object] = field(default_factory=dict)


class Checker(Protocol):
    def __call__(self, rx: CheckInput) -> list[FindingOut]: ...


SOURCE = "ehospital regulatory rules (处方管理办法 2007, 处方审核规范 2018)"


def regulatory_findings(rx: CheckInput) -> list[FindingOut]:
    """What the pharmacist must look at even though signing allowed it."""
    found: list[FindingOut] = []
    same = [name for name, n in Counter(i.generic_en for i in rx.items).items() if n > 1]
    for name in same:
        found.append(
            FindingOut(
                "duplicate_ingredient",
                Severity.MAJOR,
                f"{name} appears more than once in the prescription (duplicate therapy)",
                f"{name} 在处方中重复出现（重复用药）",
                SOURCE,
                {"positions": [i.position for i in rx.items if i.generic_en == name]},
            )
        )
    if rx.chronic or rx.long_term:
        longest = max((i.days for i in rx.items), default=0)
        found.append(
            FindingOut(
                "extended_supply",
                Severity.MODERATE if longest > 28 else Severity.MINOR,
                f"{longest} days' supply for a chronic disease; stated reason: {rx.extended_reason}",
                f"慢性病用药 {longest} 天；医生注明的理由：{rx.extended_reason}",
                SOURCE,
                {"days": longest, "long_term": rx.long_term},
            )
        )
    if rx.patient_age < 6:
        found.append(
            FindingOut(
                "paediatric_patient",
                Severity.MODERATE,
                f"patient aged {rx.patient_age}: check paediatric doses; guardian presence attested",
                f"患儿 {rx.patient_age} 岁：请核对儿童剂量；已确认监护人在场",
                SOURCE,
                {"age": rx.patient_age, "guardian_present": rx.guardian_present},
            )
        )
    if rx.validity_days > 1:
        found.append(
            FindingOut(
                "extended_validity",
                Severity.MINOR,
                f"the doctor extended validity to {rx.validity_days} days",
                f"医生将处方有效期延长至 {rx.validity_days} 天",
                SOURCE,
                {"validity_days": rx.validity_days},
            )
        )
    return found


def clinical_findings(rx: CheckInput) -> list[FindingOut]:
    """The vetting engine's findings (interactions, duplicate therapy …), each with its source.
    If the knowledge base cannot be loaded the pharmacist is told so, loudly."""
    from ehospital.vetting import Item, KnowledgeUnavailable, Patient, knowledge, vet

    try:
        kb = knowledge()
    except KnowledgeUnavailable as exc:
        return [
            FindingOut(
                "vetting.unavailable",
                Severity.MAJOR,
                f"the clinical check could not run: {exc}",
                "临床用药审核未能运行（知识库不可用），请人工全面审核",
                "ehospital vetting engine",
            )
        ]
    items = [
        Item(
            # The product code names formulary drugs; a drug an admin added goes by its name.
            drug=i.code if kb.resolve(i.code) else i.generic_en,
            dose=Decimal(i.dose) if i.dose else None,
            unit=i.dose_unit,
            route=i.route,
            frequency=i.frequency,
            days=i.days,
        )
        for i in rx.items
    ]
    sex = {"male": "M", "female": "F"}.get(rx.patient_sex or "")
    verdict = vet(items, Patient(age=rx.patient_age, sex=sex), kb)
    return [
        FindingOut(
            f"vetting.{f.category}",
            Severity(f.severity),
            f.message_en,
            f.message_zh,
            f.source,
            {
                "drugs": f.drugs,
                "management": f.management,
                "interruptive": f.interruptive,
                "decision": verdict.decision,
                "knowledge_version": verdict.knowledge_version,
            },
        )
        for f in verdict.findings
        # The regulatory checker already reports the same ingredient twice.
        if not (f.category == "duplicate" and f.severity == "major")
    ]


CHECKERS: list[Checker] = [regulatory_findings, clinical_findings]
