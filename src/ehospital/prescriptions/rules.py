"""Regulatory rules checked when a doctor signs (a pure library: no database, no web).

Sources: 处方管理办法 (2007) arts. 6, 19, 23; 互联网诊疗管理办法 (2018) arts. 16–19; 互联网诊疗监管细则
(2022). Every failure names its rule and says why, in English and Chinese.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

MAX_ITEMS = 5
DEFAULT_MAX_DAYS = 7
CHRONIC_MAX_DAYS = 28
LONG_TERM_MAX_DAYS = 84
GUARDIAN_AGE = 6

# Administrations per day of each frequency code (no "as directed": a frequency is required).
FREQUENCIES: dict[str, Decimal] = {
    "qd": Decimal(1),
    "bid": Decimal(2),
    "tid": Decimal(3),
    "qid": Decimal(4),
    "q12h": Decimal(2),
    "q8h": Decimal(3),
    "q6h": Decimal(4),
    "qn": Decimal(1),
    "qw": Decimal(1) / Decimal(7),
}
SOLID_FORMS = frozenset({"tablet", "tablet_er", "capsule", "capsule_er"})
# Mass units the dose of a solid form may be written in, in milligrams.
MASS_IN_MG = {"g": Decimal(1000), "mg": Decimal(1), "mcg": Decimal("0.001")}


@dataclass(frozen=True)
class DrugFacts:
    code: str
    name: str
    form: str
    strength: Decimal
    unit: str
    route: str
    control: str
    retired: bool


@dataclass(frozen=True)
class ItemFacts:
    drug: DrugFacts
    dose: Decimal
    dose_unit: str
    route: str
    frequency: str
    days: int
    quantity: int


@dataclass(frozen=True)
class RxFacts:
    items: tuple[ItemFacts, ...]
    patient_age: int
    chronic: bool
    long_term: bool
    extended_reason: str | None
    guardian_present: bool


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    message: str
    message_zh: str
    item: int | None = None  # 1-based position of the item concerned

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "message": self.message, "message_zh": self.message_zh, "item": self.item}


def needed_units(item: ItemFacts) -> Decimal | None:
    """Tablets/capsules that dose × frequency × days needs, or None when not countable."""
    drug = item.drug
    if drug.form not in SOLID_FORMS or drug.unit not in MASS_IN_MG or item.dose_unit not in MASS_IN_MG:
        return None
    per_dose = item.dose * MASS_IN_MG[item.dose_unit] / (drug.strength * MASS_IN_MG[drug.unit])
    return per_dose * FREQUENCIES[item.frequency] * item.days


def check(rx: RxFacts) -> list[RuleFailure]:
    """Every rule the prescription breaks (empty when it may be signed)."""
    failures: list[RuleFailure] = []
    if not rx.items:
        failures.append(
            RuleFailure("items_required", "a prescription needs at least one drug", "处方至少需要一种药品")
        )
    if len(rx.items) > MAX_ITEMS:
        failures.append(
            RuleFailure(
                "max_items",
                f"at most {MAX_ITEMS} drugs per prescription (处方管理办法 art. 6)",
                f"每张处方不得超过 {MAX_ITEMS} 种药品（《处方管理办法》第六条）",
            )
        )
    limit = _day_limit(rx, failures)
    for n, item in enumerate(rx.items, start=1):
        failures.extend(_check_item(rx, item, n, limit))
    if rx.patient_age < GUARDIAN_AGE and not rx.guardian_present:
        failures.append(
            RuleFailure(
                "guardian_required",
                f"the patient is under {GUARDIAN_AGE}: a guardian must be present and attested",
                f"患儿不满 {GUARDIAN_AGE} 岁：须确认监护人在场（《互联网诊疗管理办法》）",
            )
        )
    return failures


def _day_limit(rx: RxFacts, failures: list[RuleFailure]) -> int:
    """The longest supply this prescription may give."""
    if not (rx.chronic or rx.long_term):
        return DEFAULT_MAX_DAYS
    if not (rx.extended_reason and rx.extended_reason.strip()):
        failures.append(
            RuleFailure(
                "extended_reason_required",
                "a supply beyond 7 days for a chronic disease needs a stated reason",
                "慢性病延长处方用量须注明理由（《处方管理办法》第十九条）",
            )
        )
        return DEFAULT_MAX_DAYS
    return LONG_TERM_MAX_DAYS if rx.long_term else CHRONIC_MAX_DAYS


def _check_item(rx: RxFacts, item: ItemFacts, n: int, limit: int) -> list[RuleFailure]:
    drug = item.drug
    found: list[RuleFailure] = []
    if drug.retired:
        found.append(
            RuleFailure(
                "drug_retired", f"{drug.name} is no longer in the formulary", f"{drug.name} 已停用", n
            )
        )
    if drug.control != "none":
        found.append(
            RuleFailure(
                "special_control",
                f"{drug.name} is a special-control drug ({drug.control}) and cannot be prescribed online",
                f"{drug.name} 属特殊管理药品（{drug.control}），"
                "不得在互联网开具（《互联网诊疗管理办法》第十九条）",
                n,
            )
        )
    if item.route != drug.route:
        found.append(
            RuleFailure(
                "route_mismatch",
                f"{drug.name} is given by the {drug.route} route, not {item.route}",
                f"{drug.name} 的给药途径应为 {drug.route}",
                n,
            )
        )
    if item.days > limit:
        found.append(
            RuleFailure(
                "supply_days",
                f"{item.days} days' supply exceeds the limit of {limit} days"
                + (
                    ""
                    if limit > DEFAULT_MAX_DAYS
                    else " (chronic disease with a stated reason: up to 28, long prescription 84)"
                ),
                f"用量 {item.days} 天超过 {limit} 天上限（《处方管理办法》第十九条）",
                n,
            )
        )
    found.extend(_check_quantity(item, n))
    return found


def _check_quantity(item: ItemFacts, n: int) -> list[RuleFailure]:
    drug = item.drug
    if drug.form in SOLID_FORMS and item.dose_unit not in MASS_IN_MG:
        return [
            RuleFailure(
                "dose_unit",
                f"the dose of {drug.name} must be in g, mg or mcg",
                f"{drug.name} 的单次剂量单位应为 g、mg 或 mcg",
                n,
            )
        ]
    needed = needed_units(item)
    if needed is None:
        return []
    per_dose = needed / (FREQUENCIES[item.frequency] * item.days)
    if drug.form.startswith("capsule") and per_dose != per_dose.to_integral_value():
        return [
            RuleFailure(
                "dose_not_divisible",
                f"{drug.name} capsules cannot be split",
                f"{drug.name} 胶囊不可分剂量",
                n,
            )
        ]
    if (per_dose * 2) != (per_dose * 2).to_integral_value():
        return [
            RuleFailure(
                "dose_not_divisible",
                f"the dose of {drug.name} is not a whole or half tablet of {drug.strength}{drug.unit}",
                f"{drug.name} 单次剂量须为整片或半片",
                n,
            )
        ]
    expected = math.ceil(needed)
    if not expected <= item.quantity <= expected + max(1, expected // 10):
        return [
            RuleFailure(
                "quantity_inconsistent",
                f"quantity {item.quantity} does not match dose × frequency × days = {expected} "
                f"for {drug.name}",
                f"{drug.name} 数量 {item.quantity} 与 剂量×频次×天数（{expected}）不符",
                n,
            )
        ]
    return []
