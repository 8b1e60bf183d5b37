"""FHIR R4 resources in, vetting input out: MedicationRequest → items, and Patient, Condition,
AllergyIntolerance and Observation → the patient's context (pure functions, plain dicts)."""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ehospital.vetting.engine import Item, Patient
from ehospital.vetting.knowledge import Knowledge

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
ICD10 = ("http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm")
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
# eGFR (per 1.73 m²) in LOINC: CKD-EPI and MDRD variants.
EGFR_LOINC = frozenset(
    {"33914-3", "48642-3", "48643-1", "62238-1", "88293-6", "88294-4", "98979-8", "69405-9"}
)
PERIODS_PER_DAY = {"h": Decimal(24), "d": Decimal(1), "wk": Decimal(1) / 7, "mo": Decimal(1) / 30}
_NUMBER = re.compile(r"\d")
_LEADING_AMOUNT = re.compile(
    r"^(?:(?:NDA|ANDA|BLA)\d+\s+)?(?:\d+(?:\.\d+)? (?:ML|HR|MG|G|ACTUAT)\s+)*", re.IGNORECASE
)
_BRACKETS = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True, slots=True)
class SnomedFact:
    kind: str  # pregnancy | egfr_max | icd10
    value: str
    source: str


@functools.cache
def snomed_facts() -> dict[str, SnomedFact]:
    path = Path(__file__).parent / "data" / "snomed.csv"
    with path.open(encoding="utf-8", newline="") as f:
        return {r["code"]: SnomedFact(r["kind"], r["value"], r["source"]) for r in csv.DictReader(f)}


def names_in_text(text: str) -> list[str]:
    """Ingredient names in an RxNorm-style description: "24 HR Metformin hydrochloride 500 MG
    Extended Release Oral Tablet" → ["Metformin hydrochloride"]; "Amoxicillin 250 MG /
    Clavulanate 125 MG Oral Tablet" → ["Amoxicillin", "Clavulanate"]."""
    cleaned = _LEADING_AMOUNT.sub("", _BRACKETS.sub("", text)).strip()
    names: list[str] = []
    for part in cleaned.split(" / "):
        words: list[str] = []
        for word in part.split():
            if _NUMBER.search(word):
                break
            words.append(word)
        name = " ".join(words).strip(" ,")
        if name:
            names.append(name)
    return names


def _codings(concept: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    found = concept.get("coding")
    return [c for c in found if isinstance(c, Mapping)] if isinstance(found, list) else []


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() and number > 0 else None


def medication_names(kb: Knowledge, request: Mapping[str, Any]) -> tuple[list[str], str]:
    """The names to vet for a MedicationRequest (its codes first, then its text), and the text
    that names it for people. A name that resolves to nothing is still returned, so the verdict
    reports it."""
    concept = request.get("medicationCodeableConcept")
    codings = _codings(concept)
    text = concept.get("text") if isinstance(concept, Mapping) else None
    label = str(text or next((c.get("display") for c in codings if c.get("display")), ""))
    for coding in codings:
        code = str(coding.get("code") or "")
        if code and coding.get("system") in (RXNORM, ATC) and kb.resolve(code):
            return [code], label or code
    for text in [label, *(str(c.get("display") or "") for c in codings)]:
        if not text:
            continue
        if kb.resolve(text):
            return [text], text
        parts = names_in_text(text)
        if parts and all(kb.resolve(p) for p in parts):
            return parts, text
    parts = names_in_text(label) if label else []
    return (parts or [label or "(no medication named)"]), label


def items_of(kb: Knowledge, request: Mapping[str, Any]) -> list[Item]:
    """A MedicationRequest as vetting items: its ingredients, with the dose, unit, route and
    frequency of its first dosage instruction when it has one ingredient."""
    names, _ = medication_names(kb, request)
    dose = unit = route = frequency = None
    dosages = request.get("dosageInstruction")
    if isinstance(dosages, list) and dosages and isinstance(dosages[0], Mapping):
        dosage = dosages[0]
        rates = dosage.get("doseAndRate")
        if isinstance(rates, list) and rates and isinstance(rates[0], Mapping):
            quantity = rates[0].get("doseQuantity")
            if isinstance(quantity, Mapping):
                dose = _decimal(quantity.get("value"))
                unit = str(quantity.get("unit") or quantity.get("code") or "") or None
        route_concept = dosage.get("route")
        if isinstance(route_concept, Mapping):
            route = (
                str(
                    route_concept.get("text")
                    or next((c.get("display") for c in _codings(route_concept) if c.get("display")), "")
                )
                or None
            )
        frequency = _frequency(dosage.get("timing"))
    if len(names) != 1:
        # One item per ingredient (two RxNorm names of one ingredient are one item).
        seen: dict[tuple[int, ...] | str, str] = {}
        for name in names:
            seen.setdefault(kb.resolve(name) or name, name)
        return [Item(name) for name in seen.values()]
    return [Item(names[0], dose, unit, route.lower() if route else None, frequency)]


def _frequency(timing: Any) -> str | None:
    """FHIR Timing.repeat as the pad's frequency words (1/d → qd, 2/d → bid …), when it is one."""
    if not isinstance(timing, Mapping) or not isinstance(timing.get("repeat"), Mapping):
        return None
    repeat = timing["repeat"]
    times, period = _decimal(repeat.get("frequency")), _decimal(repeat.get("period"))
    per_day = PERIODS_PER_DAY.get(str(repeat.get("periodUnit") or ""))
    if times is None or period is None or per_day is None:
        return None
    daily = times * per_day / period
    return {Decimal(1): "qd", Decimal(2): "bid", Decimal(3): "tid", Decimal(4): "qid", Decimal(6): "q4h"}.get(
        daily.normalize()
    )


def parse_date(value: Any) -> date | None:
    """The date of a FHIR date or dateTime (its first ten characters), or None."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return datetime.fromisoformat(value[:10]).date()
    except ValueError:
        return None


def _active_on(resource: Mapping[str, Any], on: date) -> bool:
    start = parse_date(resource.get("onsetDateTime") or resource.get("recordedDate"))
    end = parse_date(resource.get("abatementDateTime"))
    return (start is None or start <= on) and (end is None or on < end)


def patient_context(
    patient: Mapping[str, Any] | None,
    conditions: Iterable[Mapping[str, Any]] = (),
    allergies: Iterable[Mapping[str, Any]] = (),
    observations: Iterable[Mapping[str, Any]] = (),
    current_medications: Iterable[str] = (),
    on: date | None = None,
) -> tuple[Patient, list[str]]:
    """The vetting patient on a date from FHIR resources, and the active conditions that could
    not be read (SNOMED CT concepts the graph has no ICD-10 equivalent or fact for)."""
    on = on or date.today()
    notes: list[str] = []
    age = sex = None
    if isinstance(patient, Mapping):
        born = parse_date(patient.get("birthDate"))
        if born is not None:
            age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
        sex = {"female": "F", "male": "M"}.get(str(patient.get("gender") or ""))
    codes: list[str] = []
    pregnant: bool | None = None
    egfr: Decimal | None = None
    unmapped: set[str] = set()
    facts = snomed_facts()
    for condition in conditions:
        if not isinstance(condition, Mapping) or not _active_on(condition, on):
            continue
        for coding in _codings(condition.get("code")):
            system, code = coding.get("system"), str(coding.get("code") or "")
            if system in ICD10:
                codes.append(code)
            elif system == SNOMED and code in facts:
                fact = facts[code]
                if fact.kind == "icd10":
                    codes.append(fact.value)
                elif fact.kind == "pregnancy":
                    pregnant = True
                elif fact.kind == "egfr_max":
                    bound = Decimal(fact.value)
                    egfr = bound if egfr is None else min(egfr, bound)
            elif system == SNOMED:
                unmapped.add(str(coding.get("display") or code))
    for observation in observations:
        codings = _codings(observation.get("code")) if isinstance(observation, Mapping) else []
        if any(c.get("system") == LOINC and c.get("code") in EGFR_LOINC for c in codings):
            value = observation.get("valueQuantity") if isinstance(observation, Mapping) else None
            measured = _decimal(value.get("value")) if isinstance(value, Mapping) else None
            if measured is not None:
                egfr = measured  # a measurement beats the CKD stage's bound
    allergy_names: list[str] = []
    for allergy in allergies:
        if not isinstance(allergy, Mapping):
            continue
        categories = allergy.get("category")
        if isinstance(categories, list) and categories and "medication" not in categories:
            continue  # food and environment allergies are not drugs
        concept = allergy.get("code")
        text = concept.get("text") if isinstance(concept, Mapping) else None
        name = str(text or next((c.get("display") for c in _codings(concept) if c.get("display")), ""))
        if name:  # "Sulfamethoxazole / Trimethoprim": each ingredient is an allergen
            allergy_names += [part.strip() for part in name.split(" / ") if part.strip()]
    notes += sorted(unmapped)
    return (
        Patient(
            age=age,
            sex=sex,
            pregnant=pregnant if pregnant is not None else (False if sex == "M" else None),
            egfr=egfr,
            allergies=tuple(allergy_names),
            conditions=tuple(codes),
            current_medications=tuple(current_medications),
        ),
        notes,
    )
