"""FHIR in: MedicationRequests to items, patient context from FHIR resources, and the summary
of the Synthea patients in ../shared/data/fhir (`ehospital vet --fhir-dir`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ehospital.vetting import knowledge
from ehospital.vetting.fhir import RXNORM, SNOMED, items_of, names_in_text, patient_context

SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fhir" / "synthea-10"
EHOSPITAL = str(Path(sys.executable).parent / "ehospital")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", ["Metformin hydrochloride"]),
        ("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet", ["Amoxicillin", "Clavulanate"]),
        ("1 ML Epoetin Alfa 4000 UNT/ML Injection [Epogen]", ["Epoetin Alfa"]),
        ("NDA020800 0.3 ML Epinephrine 1 MG/ML Auto-Injector", ["Epinephrine"]),
        ("Ibuprofen 400 MG Oral Tablet [Ibu]", ["Ibuprofen"]),
    ],
)
def test_names_in_rxnorm_text(text: str, names: list[str]) -> None:
    assert names_in_text(text) == names


def medication_request(text: str, code: str = "0", **dosage: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": text}],
            "text": text,
        },
    }
    if dosage:
        resource["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": dosage["frequency"], "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": dosage["dose"], "unit": "mg"}}],
                "route": {"text": "Oral"},
            }
        ]
    return resource


def test_medication_requests_become_items() -> None:
    kb = knowledge()
    (item,) = items_of(kb, medication_request("Simvastatin 40 MG Oral Tablet", frequency=1, dose=40))
    assert (item.drug, item.dose, item.unit, item.route, item.frequency) == (
        "Simvastatin 40 MG Oral Tablet" if kb.resolve("Simvastatin 40 MG Oral Tablet") else "Simvastatin",
        Decimal(40),
        "mg",
        "oral",
        "qd",
    )
    by_code = items_of(kb, medication_request("whatever", code="36567"))  # RxNorm simvastatin
    assert [i.drug for i in by_code] == ["36567"]
    combo = items_of(kb, medication_request("Amoxicillin 250 MG / Clavulanate 125 MG Oral Tablet"))
    assert [kb.resolve(i.drug) is not None for i in combo] == [True, True]
    humulin = "insulin isophane, human 70 UNT/ML / insulin, regular, human 30 UNT/ML Injectable Suspension"
    assert len(items_of(kb, medication_request(humulin))) == 1  # one ingredient, named twice
    unknown = items_of(kb, medication_request("Seasonique 91 Day Pack"))
    assert [kb.resolve(i.drug) for i in unknown] == [None]  # kept, so the verdict reports it


def test_patient_context_on_a_date() -> None:
    patient = {"resourceType": "Patient", "birthDate": "1950-06-15", "gender": "female"}
    conditions: list[dict[str, Any]] = [
        {"code": {"coding": [{"system": SNOMED, "code": "431857002"}]}, "onsetDateTime": "2019-01-01"},
        {"code": {"coding": [{"system": SNOMED, "code": "59621000"}]}, "onsetDateTime": "2000-01-01"},
        {
            "code": {"coding": [{"system": SNOMED, "code": "72892002"}]},
            "onsetDateTime": "1980-01-01",
            "abatementDateTime": "1980-09-01",
        },
        {"code": {"coding": [{"system": SNOMED, "code": "160903007", "display": "Full-time employment"}]}},
    ]
    allergies = [
        {"category": ["medication"], "code": {"text": "Sulfamethoxazole / Trimethoprim"}},
        {"category": ["food"], "code": {"text": "Eggs"}},
    ]
    later, unmapped = patient_context(patient, conditions, allergies, on=date(2020, 6, 14))
    assert (later.age, later.sex, later.egfr, later.pregnant) == (69, "F", Decimal(29), None)
    assert later.conditions == ("I10",) and later.allergies == ("Sulfamethoxazole", "Trimethoprim")
    assert unmapped == ["Full-time employment"]
    then, _ = patient_context(patient, conditions, on=date(1980, 3, 1))
    assert then.pregnant is True and then.egfr is None
    measured = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "33914-3"}]},
            "valueQuantity": {"value": 41},
        }
    ]
    assert patient_context(patient, conditions, observations=measured, on=date(2020, 1, 1))[0].egfr == 41


@pytest.mark.skipif(
    not SYNTHEA.is_dir() and os.environ.get("CI") != "true",
    reason="../shared/data/fhir/synthea-10 is not beside this checkout",
)
def test_synthea_patients_are_vetted_and_summarised() -> None:
    done = subprocess.run(
        [EHOSPITAL, "vet", "--fhir-dir", str(SYNTHEA)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["patients"], summary["medication_requests"]) == (13, 1745)
    assert summary["prescriptions_vetted"] > 1000
    assert summary["medications_resolved"] >= 36 and summary["medications"] == 45
    assert "Seasonique 91 Day Pack" in summary["medications_not_resolved"]  # a brand-name pack
    assert "lisinopril 10 MG Oral Tablet" not in summary["medications_not_resolved"]
    findings = summary["findings"]
    # Synthea keeps a patient on metformin into chronic kidney disease stage 4.
    assert findings["renal/contraindicated"] > 0
    assert findings["interaction/contraindicated"] > 0 and findings["allergy/contraindicated"] > 0
    assert sum(summary["decisions"].values()) == summary["prescriptions_vetted"]
    assert "Full-time employment (finding)" in summary["conditions_not_mapped"]
    assert summary["knowledge_version"].startswith("ANSM")
