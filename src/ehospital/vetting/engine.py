"""`vet(prescription, patient) -> Verdict`: the clinical checks, pure functions of the input and
the knowledge graph (no database, no web server)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ehospital.prescriptions.rules import FREQUENCIES
from ehospital.vetting.knowledge import RANK, SEVERITIES, DoseLimit, Knowledge, Rule, knowledge
from ehospital.vetting.names import fold, key

# Administrations per day of the frequencies the prescription pad offers (and common Latin).
TIMES_PER_DAY: dict[str, Decimal] = {
    **FREQUENCIES,  # the prescription pad's codes
    "od": Decimal(1),
    "daily": Decimal(1),
    "qhs": Decimal(1),
    "qam": Decimal(1),
    "qpm": Decimal(1),
    "q4h": Decimal(6),
    "biw": Decimal(2) / 7,
    "tiw": Decimal(3) / 7,
}
TOPICAL_ROUTES = frozenset({"topical", "cutaneous", "external", "skin", "transdermal"})
# ICD-10: peptic ulcers (K25–K28) and gastrointestinal haemorrhage (K92.0–K92.2).
GI_BLEED_CODES = ("K25", "K26", "K27", "K28", "K920", "K921", "K922")
CHECKS = (
    "interaction",
    "duplicate",
    "dose",
    "route",
    "allergy",
    "disease",
    "pregnancy",
    "lactation",
    "renal",
    "hepatic",
    "age",
    "sex",
)
# What each patient-rule category needs to know of the patient.
_NEEDS: dict[str, tuple[str, str]] = {
    "renal": ("egfr", "no eGFR given"),
    "pregnancy": ("pregnant", "pregnancy status not given"),
    "lactation": ("lactating", "breastfeeding status not given"),
    "age": ("age", "no age given"),
    "sex": ("sex", "no sex given"),
    "disease": ("conditions", "no conditions given"),
    "hepatic": ("conditions", "no conditions given (liver disease is read from the ICD-10 codes)"),
}


@dataclass(frozen=True, slots=True)
class Item:
    """One line of a prescription; only `drug` is required (name, code, ATC or RxNorm)."""

    drug: str
    dose: Decimal | None = None
    unit: str | None = None
    route: str | None = None
    frequency: str | None = None
    days: int | None = None

    def daily_mg(self) -> Decimal | None:
        if self.dose is None or self.frequency is None or (self.unit or "").lower() != "mg":
            return None
        times = TIMES_PER_DAY.get(self.frequency.lower())
        return None if times is None else self.dose * times


@dataclass(frozen=True, slots=True)
class Patient:
    """What is known of the patient; every field is optional. Checks that need a missing field
    are skipped, and the verdict says so."""

    age: int | None = None
    sex: str | None = None
    weight_kg: Decimal | None = None
    pregnant: bool | None = None
    lactating: bool | None = None
    egfr: Decimal | None = None
    allergies: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()  # ICD-10 codes
    current_medications: tuple[str, ...] = ()


@dataclass(slots=True)
class Finding:
    category: str
    severity: str
    drugs: list[str]
    message_en: str
    message_zh: str
    management: str
    source: str
    interruptive: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "severity": self.severity,
            "drugs": self.drugs,
            "message_en": self.message_en,
            "message_zh": self.message_zh,
            "management": self.management,
            "source": self.source,
            "interruptive": self.interruptive,
        }


@dataclass(slots=True)
class Verdict:
    decision: str  # block | review | pass
    findings: list[Finding]
    unresolved: list[str]
    knowledge_version: str
    checked: list[str] = field(default_factory=list)
    not_checked: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "findings": [f.as_dict() for f in self.findings],
            "unresolved": self.unresolved,
            "knowledge_version": self.knowledge_version,
            "checked": self.checked,
            "not_checked": self.not_checked,
        }


@dataclass(slots=True)
class _Line:
    """An ingredient as it enters the checks: from a prescription item or a current medication."""

    ingredient: int
    name: str  # as the prescriber wrote it
    item: Item | None  # None for a current medication


def vet(items: Sequence[Item], patient: Patient | None = None, kb: Knowledge | None = None) -> Verdict:
    """Vet a prescription for a patient.

    Every finding names its category, severity (contraindicated, major, moderate, minor), the
    drugs as written, messages in English and Chinese, the management and the source. The
    decision is `block` if any finding is contraindicated, `review` if any needs the pharmacist's
    explicit attention (an interruptive major or moderate finding, or a drug not recognised), else
    `pass`; every prescription still goes to the pharmacist. Never raises on valid input.
    """
    kb = kb or knowledge()
    patient = patient or Patient()
    findings: list[Finding] = []
    unresolved: list[str] = []
    lines: list[_Line] = []
    current: list[_Line] = []
    for item in items:
        ids = kb.resolve(item.drug)
        if ids is None:
            unresolved.append(item.drug)
            findings.append(_unknown(item.drug, "prescribed"))
            continue
        lines += [_Line(i, item.drug, item) for i in ids]
    for name in patient.current_medications:
        ids = kb.resolve(name)
        if ids is None:
            unresolved.append(name)
            findings.append(_unknown(name, "current medication"))
            continue
        current += [_Line(i, name, None) for i in ids]

    _duplicates(kb, lines, current, findings)
    _interactions(kb, lines, current, patient, findings)
    not_checked: list[dict[str, str]] = []
    _allergies(kb, lines, patient, findings, unresolved, not_checked)
    _patient_rules(kb, lines, patient, findings, not_checked)
    _doses(kb, lines, patient, findings, not_checked)
    _routes(kb, lines, findings)

    findings.sort(key=lambda f: (-RANK[f.severity], f.category))
    if any(f.severity == "contraindicated" for f in findings):
        decision = "block"
    elif any(
        f.category == "unknown_drug" or (f.interruptive and RANK[f.severity] >= RANK["moderate"])
        for f in findings
    ):
        decision = "review"
    else:
        decision = "pass"
    skipped = {n["check"] for n in not_checked if "partial" not in n}
    return Verdict(
        decision=decision,
        findings=findings,
        unresolved=unresolved,
        knowledge_version=kb.version,
        checked=[c for c in (*CHECKS, "unknown_drug") if c not in skipped],
        not_checked=not_checked,
    )


_WHERE_ZH = {"prescribed": "处方药品", "current medication": "正在使用的药物"}


def _allergies(
    kb: Knowledge,
    lines: list[_Line],
    patient: Patient,
    out: list[Finding],
    unresolved: list[str],
    not_checked: list[dict[str, str]],
) -> None:
    """A prescribed drug the patient is allergic to, of a class they are allergic to, or of a
    class with known cross-reactivity."""
    if not patient.allergies:
        not_checked.append({"check": "allergy", "reason": "no allergies given"})
        return
    allergens: list[tuple[str, set[int], set[str]]] = []  # as written, ingredients, groups
    for allergy in patient.allergies:
        group = kb.allergy_names.get(key(allergy)) if allergy.strip() else None
        ids = None if group else kb.resolve(allergy)
        if group is None and ids is None:
            unresolved.append(allergy)
            out.append(
                Finding(
                    "allergy",
                    "moderate",
                    [allergy],
                    f"the allergy '{allergy}' is not in the knowledge base: "
                    "check the prescription against it by hand",
                    f"过敏原“{allergy}”不在知识库中，请人工核对处方",
                    "Check by hand",
                    "ehospital knowledge base",
                )
            )
            continue
        ingredients = set(ids or ())
        groups = {group} if group else {g for i in ingredients for g in kb.groups_of[i]}
        allergens.append((allergy, ingredients, groups))
    for line in lines:
        name = kb.ingredients[line.ingredient].name_en
        mine = set(kb.groups_of[line.ingredient])
        for allergy, ingredients, groups in allergens:
            if line.ingredient in ingredients or mine & groups:
                same = line.ingredient in ingredients
                group_names = ", ".join(sorted(mine & groups))
                out.append(
                    Finding(
                        "allergy",
                        "contraindicated",
                        [line.name, allergy],
                        f"{name}: the patient is allergic to "
                        + (allergy if same else f"{allergy} ({group_names})"),
                        f"患者对{allergy}过敏，{kb.ingredients[line.ingredient].name_zh or name}"
                        + ("即为该药" if same else "属同类药物"),
                        "Do not give; choose a drug of another class",
                        "; ".join(
                            ["the patient's documented allergy"]
                            + [kb.allergy_groups[g].source for g in sorted(mine & groups)]
                        ),
                    )
                )
                continue
            for theirs in sorted(groups):
                for group in sorted(mine):
                    cross = kb.cross_allergy.get((theirs, group))
                    if cross is not None:
                        out.append(
                            Finding(
                                "allergy",
                                cross.severity,
                                [line.name, allergy],
                                f"{name} ({group}) for a patient allergic to {allergy} ({theirs}): "
                                + cross.message_en,
                                f"患者对{allergy}过敏，{kb.ingredients[line.ingredient].name_zh or name}"
                                f"（{kb.allergy_groups[group].name_zh}）：{cross.message_zh}",
                                cross.management,
                                cross.source,
                            )
                        )


def _holds(test: tuple[str, str, str], patient: Patient) -> bool | None:
    """Whether a test holds for the patient; None when the patient data it needs is missing."""
    field_name, op, value = test
    if field_name in ("egfr", "age"):
        have = patient.egfr if field_name == "egfr" else patient.age
        if have is None:
            return None
        number = Decimal(value)
        return {"<": have < number, "<=": have <= number, ">": have > number, ">=": have >= number}[op]
    if field_name in ("pregnant", "lactating"):
        flag = patient.pregnant if field_name == "pregnant" else patient.lactating
        return None if flag is None else flag
    if field_name == "sex":
        return None if patient.sex is None else patient.sex.upper()[:1] == value
    if not patient.conditions:
        return None
    return _has_condition(patient, (value,))


def _patient_rules(
    kb: Knowledge, lines: list[_Line], patient: Patient, out: list[Finding], not_checked: list[dict[str, str]]
) -> None:
    for category, (field_name, reason) in _NEEDS.items():
        value = getattr(patient, field_name)
        if value is None or value == ():
            not_checked.append({"check": category, "reason": reason})
    seen: set[tuple[int, int]] = set()
    for line in lines:
        for rule in kb.patient_rules_of[line.ingredient]:
            if (line.ingredient, id(rule)) in seen:
                continue
            if any(all(_holds(t, patient) for t in alternative) for alternative in rule.when):
                seen.add((line.ingredient, id(rule)))
                out.append(
                    Finding(
                        rule.category,
                        rule.severity,
                        [line.name],
                        f"{kb.ingredients[line.ingredient].name_en}: {rule.message_en}",
                        rule.message_zh,
                        rule.management,
                        rule.source,
                    )
                )


def _doses(
    kb: Knowledge, lines: list[_Line], patient: Patient, out: list[Finding], not_checked: list[dict[str, str]]
) -> None:
    """Single and daily doses against the labelled limits of the patient's population: adult,
    elderly (≥ 65, adult limits too), child (< 18: mg/kg per day when the weight is known)."""
    missing: list[str] = []
    child = patient.age is not None and patient.age < 18
    elderly = patient.age is not None and patient.age >= 65
    populations = {"child"} if child else {"adult", "elderly"} if elderly else {"adult"}
    for line in lines:
        if line.item is None:
            continue
        limits = [lim for lim in kb.dose_limits.get(line.ingredient, ()) if lim.population in populations]
        if not limits:
            continue
        daily = line.item.daily_mg()
        single = line.item.dose if (line.item.unit or "").lower() == "mg" else None
        if daily is None and single is None:
            missing.append(line.name)
            continue
        for limit in limits:
            ceiling = limit.max_daily_mg
            per_kg = ""
            if limit.max_daily_mg_per_kg is not None:
                if patient.weight_kg is None:
                    missing.append(f"{line.name} (a child's limit needs the weight)")
                else:
                    by_weight = limit.max_daily_mg_per_kg * patient.weight_kg
                    if ceiling is None or by_weight < ceiling:
                        ceiling = by_weight
                        per_kg = (
                            f" ({limit.max_daily_mg_per_kg.normalize():f} mg/kg for {patient.weight_kg} kg)"
                        )
            if daily is not None and ceiling is not None and daily > ceiling:
                _dose_finding(kb, line, out, limit, "a day", daily, ceiling, per_kg)
            elif single is not None and limit.max_single_mg is not None and single > limit.max_single_mg:
                _dose_finding(kb, line, out, limit, "a dose", single, limit.max_single_mg, "")
    reason = "labelled limits are in the graph for a few drugs only (vetting/data/dose_limits.csv)"
    if missing:
        reason += "; not checked for: " + ", ".join(dict.fromkeys(missing))
    not_checked.append({"check": "dose", "reason": reason, "partial": "yes"})


_POPULATION_ZH = {"adult": "成人", "child": "儿童", "elderly": "老年人"}


def _dose_finding(
    kb: Knowledge,
    line: _Line,
    out: list[Finding],
    limit: DoseLimit,
    per: str,
    given: Decimal,
    ceiling: Decimal,
    why: str,
) -> None:
    name = kb.ingredients[line.ingredient].name_en
    zh_per = "日剂量" if per == "a day" else "单次剂量"
    limit_mg = f"{ceiling.quantize(Decimal('0.001')).normalize():f}"
    out.append(
        Finding(
            "dose",
            "major",
            [line.name],
            f"{name}: {given.normalize():f} mg {per} exceeds the labelled {limit.population} maximum of "
            f"{limit_mg} mg{why}",
            f"{kb.ingredients[line.ingredient].name_zh or name}{zh_per}{given.normalize():f} mg，超过说明书"
            f"{_POPULATION_ZH[limit.population]}最大{zh_per}{limit_mg} mg",
            "Lower the dose or the frequency",
            limit.source,
        )
    )


def _routes(kb: Knowledge, lines: list[_Line], out: list[Finding]) -> None:
    """A formulary product given by another route than its own (a gel taken orally …)."""
    for line in lines:
        if line.item is None or not line.item.route:
            continue
        route = kb.product_routes.get(fold(line.item.drug))
        if route is not None and fold(line.item.route) != fold(route):
            out.append(
                Finding(
                    "route",
                    "major",
                    [line.name],
                    f"{line.name} is a product for {route} use, prescribed {line.item.route}",
                    f"{line.name}为{route}给药制剂，处方给药途径为{line.item.route}",
                    "Correct the route or the product",
                    "ehospital formulary (product route)",
                )
            )


def _has_condition(patient: Patient, prefixes: tuple[str, ...]) -> bool:
    """An ICD-10 code of the patient starts with one of `prefixes` ("K92.2" matches "K922")."""
    return any(fold(c).replace(" ", "").upper().startswith(prefixes) for c in patient.conditions)


def _unknown(name: str, where: str) -> Finding:
    return Finding(
        category="unknown_drug",
        severity="moderate",
        drugs=[name],
        message_en=f"'{name}' ({where}) is not in the knowledge base: it was not checked",
        message_zh=f"“{name}”（{_WHERE_ZH[where]}）不在知识库中，未做检查",
        management="Check the name, or review this drug by hand",
        source="ehospital knowledge base",
    )


def _pairs(lines: list[_Line], current: list[_Line]) -> list[tuple[_Line, _Line]]:
    pairs = [(a, b) for n, a in enumerate(lines) for b in lines[n + 1 :] if a.ingredient != b.ingredient]
    pairs += [(a, b) for a in lines for b in current if a.ingredient != b.ingredient]
    return pairs


def _duplicates(kb: Knowledge, lines: list[_Line], current: list[_Line], out: list[Finding]) -> None:
    seen: dict[int, _Line] = {}
    for line in lines:
        first = seen.get(line.ingredient)
        if first is not None and first.item is not line.item:
            name = kb.ingredients[line.ingredient].name_en
            out.append(
                Finding(
                    category="duplicate",
                    severity="major",
                    drugs=[first.name, line.name],
                    message_en=f"{name} is prescribed twice in this prescription",
                    message_zh=f"本处方中{kb.ingredients[line.ingredient].name_zh or name}重复开具",
                    management="Keep one item",
                    source="ehospital rule: the same ingredient twice (duplicate therapy)",
                )
            )
        seen.setdefault(line.ingredient, line)
    taking = {c.ingredient: c for c in current}
    for line in seen.values():
        already = taking.get(line.ingredient)
        if already is not None:
            name = kb.ingredients[line.ingredient].name_en
            out.append(
                Finding(
                    category="duplicate",
                    severity="moderate",
                    drugs=[line.name, already.name],
                    message_en=f"The patient already takes {name}",
                    message_zh=f"患者正在使用{kb.ingredients[line.ingredient].name_zh or name}",
                    management="Confirm the current medication is stopped, or do not prescribe it again",
                    source="ehospital rule: an ingredient the patient already takes (duplicate therapy)",
                )
            )
    everyone = list(seen.values()) + current
    by_class: dict[str, list[_Line]] = {}
    for line in everyone:
        for dup in kb.duplicate_of[line.ingredient]:
            by_class.setdefault(dup.atc_prefix, []).append(line)
    for dup in kb.duplicate_classes:
        members = by_class.get(dup.atc_prefix)
        if not members or len(members) < 2:
            continue
        distinct = {m.ingredient for m in members}
        if len(distinct) > 1 and any(m.item is not None for m in members):
            out.append(
                Finding(
                    category="duplicate",
                    severity=dup.severity,
                    drugs=[m.name for m in members],
                    message_en=f"Two or more {dup.class_en}: "
                    + ", ".join(kb.ingredients[i].name_en for i in sorted(distinct)),
                    message_zh=f"同时使用两种及以上{dup.class_zh}",
                    management="Use one drug of the class",
                    source=dup.source,
                )
            )


def _interactions(
    kb: Knowledge, lines: list[_Line], current: list[_Line], patient: Patient, out: list[Finding]
) -> None:
    """One finding per pair of ingredients: the thesaurus's and ONC's rules, the curated class
    pairs (which raise the severity of a rule's finding or stand alone), then the context."""
    for a, b in _pairs(lines, current):
        rules = kb.rules_between(a.ingredient, b.ingredient)
        finding = _interaction_finding(kb, a, b, rules) if rules else None
        tags_a, tags_b = kb.prefixes[a.ingredient], kb.prefixes[b.ingredient]
        for pair in kb.class_pairs if tags_a and tags_b else ():
            if not (
                (pair.atc_a in tags_a and pair.atc_b in tags_b)
                or (pair.atc_a in tags_b and pair.atc_b in tags_a)
            ):
                continue
            if finding is None:
                finding = Finding(
                    "interaction",
                    pair.severity,
                    [a.name, b.name],
                    pair.message_en,
                    pair.message_zh,
                    pair.management,
                    pair.source,
                )
            else:
                if RANK[pair.severity] > RANK[finding.severity]:
                    finding.severity = pair.severity
                finding.message_en += f" {pair.message_en}."
                finding.source += f"; {pair.source}"
        if finding is None:
            continue
        _apply_modifiers(kb, a, b, patient, finding)
        if kb.is_non_interruptive(a.ingredient, b.ingredient) and finding.severity != "contraindicated":
            finding.interruptive = False
            finding.message_en += " (on the ONC list of interactions that need not interrupt the prescriber)"
            finding.message_zh += "（属ONC无需中断医生操作的相互作用）"
            finding.source += "; Phansalkar S et al., JAMIA 2013;20(3):489-93 (non-interruptive)"
        out.append(finding)


# ANSM's aspirin rows give one level per dose range (words of the rows' own text, folded).
_ASPIRIN = "acide acetylsalicylique"
_TIER_ZH = {"antiplatelet": "抗血小板", "analgesic": "镇痛解热", "anti-inflammatory": "抗炎"}
_ASPIRIN_TIERS = (
    ("antiplatelet", "doses antiagregantes"),
    ("analgesic", "doses antalgiques"),
    ("anti-inflammatory", "doses anti inflammatoires"),
)


def _aspirin_tier(line: _Line) -> str | None:
    """Which of ANSM's aspirin dose ranges a line is in (None when its dose is not known)."""
    item = line.item
    daily = item.daily_mg() if item is not None else None
    single = item.dose if item is not None and (item.unit or "").lower() == "mg" else None
    if daily is None or single is None:
        return None
    if single >= 1000 or daily >= 3000:
        return "anti-inflammatory"
    if daily <= 375:
        return "antiplatelet"
    return "analgesic"


def _situated(kb: Knowledge, a: _Line, b: _Line, rule: Rule, notes: list[str], notes_zh: list[str]) -> Rule:
    """For an ANSM row with one level per situation: the level of this prescription's situation
    when it can be told (aspirin's dose range), else the most severe level, saying so."""
    if not rule.levels:
        return rule
    aspirin = next((x for x in (a, b) if fold(kb.ingredients[x.ingredient].name_fr or "") == _ASPIRIN), None)
    tier = _aspirin_tier(aspirin) if aspirin is not None else None
    if tier is not None:
        words = dict(_ASPIRIN_TIERS)[tier]
        # Least severe first: a more severe level's text also names lower doses, for patients
        # with a history of ulcer (not known here, so the finding says to check it).
        for severity, level_en, level_zh, text in reversed(rule.levels):
            if words in fold(text):
                notes.append(f"aspirin at {tier} doses; a history of peptic ulcer can make it more severe")
                notes_zh.append(f"阿司匹林为{_TIER_ZH[tier]}剂量；有消化性溃疡史者可更严重")
                return replace(rule, severity=severity, level_en=level_en, level_zh=level_zh, management=text)
    notes.append(
        "ANSM gives a level per situation; the most severe is shown: "
        + "; ".join(f"{lvl_en}: {text}" for _, lvl_en, _, text in rule.levels)
    )
    notes_zh.append("ANSM按情形分级，此处显示最严重的一级")
    return rule


# What ANSM's four levels ask of the prescriber, in English (the thesaurus's own text follows).
_LEVEL_MANAGEMENT = {
    "contraindicated": "Do not combine",
    "major": "Avoid the combination; if it cannot be avoided, monitor closely",
    "moderate": "Combine only with the precautions stated (dose, monitoring)",
    "minor": "Take the interaction into account",
}


def _management(rule: Rule) -> str:
    if rule.language != "fr":
        return rule.management or rule.level_en
    own = f"; ANSM, in French: «{rule.management}»" if rule.management else ""
    return _LEVEL_MANAGEMENT[rule.severity] + own


def _interaction_finding(kb: Knowledge, a: _Line, b: _Line, rules: tuple[Rule, ...]) -> Finding | None:
    """One finding per pair: the most severe rule that applies (a dose-capped ANSM precaution
    does not apply when the capped drug's known daily dose is within the cap)."""
    notes: list[str] = []
    notes_zh: list[str] = []
    applying: list[Rule] = []
    for rule in rules:
        if rule.dose_cap is not None:
            capped, limit = rule.dose_cap
            line = next(
                (
                    x
                    for x in (a, b)
                    if capped
                    in (
                        fold(kb.ingredients[x.ingredient].name_fr or ""),
                        fold(kb.ingredients[x.ingredient].name_en),
                    )
                ),
                None,
            )
            daily = line.item.daily_mg() if line is not None and line.item is not None else None
            if daily is not None and daily <= limit:
                continue
            notes.append(
                f"daily dose {daily.normalize():f} mg exceeds the {limit} mg/day cap"
                if daily is not None
                else f"the cap is {limit} mg/day; the daily dose is not known"
            )
            notes_zh.append(
                f"日剂量{daily.normalize():f} mg，超过{limit} mg/日上限"
                if daily is not None
                else f"上限为{limit} mg/日，日剂量未知"
            )
        applying.append(rule)
    if not applying:
        return None
    top = _situated(kb, a, b, applying[0], notes, notes_zh)
    name_a, name_b = kb.ingredients[a.ingredient].name_en, kb.ingredients[b.ingredient].name_en
    zh_a = kb.ingredients[a.ingredient].name_zh or name_a
    zh_b = kb.ingredients[b.ingredient].name_zh or name_b
    current = " (current medication)" if b.item is None else ""
    mechanism = f"ANSM, in French: «{top.mechanism}»" if top.language == "fr" else top.mechanism
    message_en = f"{name_a} + {name_b}{current}: {top.level_en}. {mechanism}"
    if notes:
        message_en += " [" + "; ".join(notes) + "]"
    return Finding(
        category="interaction",
        severity=top.severity,
        drugs=[a.name, b.name],
        message_en=message_en,
        message_zh=f"{zh_a}与{zh_b}{'（正在使用）' if b.item is None else ''}存在相互作用：{top.level_zh}"
        + (f"（{'；'.join(notes_zh)}）" if notes_zh else ""),
        management=_management(top),
        source="; ".join(dict.fromkeys(r.source for r in applying)),
    )


def _apply_modifiers(kb: Knowledge, a: _Line, b: _Line, patient: Patient, finding: Finding) -> None:
    tags_a, tags_b = kb.prefixes[a.ingredient], kb.prefixes[b.ingredient]
    if not (tags_a and tags_b):
        return
    for mod in kb.modifiers:
        if mod.atc_a in tags_a and mod.atc_b in tags_b:
            second = b
        elif mod.atc_a in tags_b and mod.atc_b in tags_a:
            second = a
        else:
            continue
        applies = (
            (
                mod.when == "route_b_topical"
                and second.item is not None
                and (second.item.route or "").lower() in TOPICAL_ROUTES
            )
            or (mod.when == "age_65" and patient.age is not None and patient.age >= 65)
            or (mod.when == "prior_gi_bleed" and _has_condition(patient, GI_BLEED_CODES))
        )
        if not applies:
            continue
        rank = RANK[finding.severity] + (1 if mod.effect == "raise" else -1)
        finding.severity = SEVERITIES[max(0, min(len(SEVERITIES) - 1, rank))]
        word = "raised" if mod.effect == "raise" else "lowered"
        finding.message_en += f" Severity {word}: {mod.reason_en}."
        finding.message_zh += (
            f"；{'严重程度上调' if mod.effect == 'raise' else '严重程度下调'}：{mod.reason_zh}"
        )
        finding.source += f"; {mod.source}"
