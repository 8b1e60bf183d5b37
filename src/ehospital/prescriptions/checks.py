"""The automatic check run on every signed prescription before the pharmacist sees it.

Checkers are pluggable: this module brings the regulatory findings; the clinical vetting engine
(interactions, doses, allergies …) plugs into the same list. Every prescription goes to the
pharmacist whatever the findings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from ehospital.prescriptions.models import Severity


@dataclass(frozen=True)
class CheckedItem:
    position: int
    code: str
    generic_en: str
    atc: str
    days: int


@dataclass(frozen=True)
class CheckInput:
    items: tuple[CheckedItem, ...]
    patient_age: int
    chronic: bool
    long_term: bool
    extended_reason: str | None
    guardian_present: bool
    validity_days: int


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


CHECKERS: list[Checker] = [regulatory_findings]
