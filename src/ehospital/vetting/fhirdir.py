"""`ehospital vet --fhir-dir DIR`: vet the prescriptions of FHIR patients (bulk NDJSON, e.g.
Synthea) against their medications, conditions and allergies at the time, and summarise."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from ehospital.vetting.engine import vet
from ehospital.vetting.fhir import items_of, medication_names, parse_date, patient_context
from ehospital.vetting.knowledge import Knowledge

# A medication counts as current for this long after its latest request (Synthea renews chronic
# medications at each visit and records no end date on stopped requests).
CURRENT_FOR = timedelta(days=180)
RESOURCES = ("Patient", "MedicationRequest", "Condition", "AllergyIntolerance", "Observation")


def read_resources(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every resource of the kinds vetting needs, from *.ndjson (and *.json bundles)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(directory.glob("*.ndjson")):
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    _keep(json.loads(line), found)
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for entry in document.get("entry", []) if isinstance(document, dict) else []:
            _keep(entry.get("resource"), found)
    return found


def _keep(resource: Any, found: dict[str, list[dict[str, Any]]]) -> None:
    if isinstance(resource, dict) and resource.get("resourceType") in RESOURCES:
        found[str(resource["resourceType"])].append(resource)


def _subject(resource: Mapping[str, Any]) -> str:
    ref = resource.get("subject") or resource.get("patient") or {}
    return str(ref.get("reference", "")).removeprefix("Patient/") if isinstance(ref, Mapping) else ""


def _prescriptions(requests: list[dict[str, Any]]) -> Iterator[tuple[date, list[dict[str, Any]]]]:
    """A patient's medication requests as prescriptions: those of one encounter (or, without
    one, one day) together, oldest first."""
    groups: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for request in requests:
        when = parse_date(request.get("authoredOn"))
        if when is None:
            continue
        encounter = request.get("encounter")
        ref = str(encounter.get("reference", "")) if isinstance(encounter, Mapping) else ""
        groups[(when, ref or when.isoformat())].append(request)
    for (when, _), group in sorted(groups.items(), key=lambda g: g[0]):
        yield when, group


def summarise(kb: Knowledge, directory: Path) -> dict[str, Any]:
    resources = read_resources(directory)
    by_patient: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for kind in RESOURCES[1:]:
        for resource in resources.get(kind, []):
            by_patient[_subject(resource)][kind].append(resource)
    patients = {str(p.get("id")): p for p in resources.get("Patient", [])}
    labels_resolved: set[str] = set()
    labels_unresolved: set[str] = set()
    decisions: Counter[str] = Counter()
    findings: Counter[str] = Counter()
    unmapped: set[str] = set()
    examples: dict[str, dict[str, Any]] = {}
    vetted = 0
    for patient_id, patient in sorted(patients.items()):
        own = by_patient.get(patient_id, {})
        requests = own.get("MedicationRequest", [])
        history: list[tuple[date, str]] = []  # (authored, name to vet) of earlier prescriptions
        for when, group in _prescriptions(requests):
            items = [item for request in group for item in items_of(kb, request)]
            # What this prescription renews is not also "already taken".
            renewed = {kb.resolve(item.drug) for item in items}
            current = sorted(
                {
                    name
                    for authored, name in history
                    if when - authored <= CURRENT_FOR and kb.resolve(name) not in renewed
                }
            )
            context, context_notes = patient_context(
                patient,
                own.get("Condition", []),
                own.get("AllergyIntolerance", []),
                own.get("Observation", []),
                current,
                on=when,
            )
            unmapped.update(context_notes)
            for request in group:
                names, label = medication_names(kb, request)
                (labels_resolved if all(kb.resolve(n) for n in names) else labels_unresolved).add(label)
            verdict = vet(items, context, kb)
            vetted += 1
            decisions[verdict.decision] += 1
            for finding in verdict.findings:
                key = f"{finding.category}/{finding.severity}"
                findings[key] += 1
                examples.setdefault(
                    key,
                    {
                        "patient": patient_id,
                        "date": when.isoformat(),
                        "drugs": finding.drugs,
                        "message": finding.message_en[:200],
                    },
                )
            history += [(when, item.drug) for item in items]
    medications = labels_resolved | labels_unresolved
    return {
        "directory": str(directory),
        "patients": len(patients),
        "medication_requests": len(resources.get("MedicationRequest", [])),
        "prescriptions_vetted": vetted,
        "medications": len(medications),
        "medications_resolved": len(labels_resolved),
        "medications_not_resolved": sorted(labels_unresolved),
        "decisions": dict(sorted(decisions.items())),
        "findings": dict(sorted(findings.items())),
        "examples": dict(sorted(examples.items())),
        "conditions_not_mapped": sorted(unmapped),
        "current_medications_window_days": CURRENT_FOR.days,
        "knowledge_version": kb.version,
    }
