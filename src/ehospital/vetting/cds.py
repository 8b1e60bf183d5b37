"""CDS Hooks 2.0 for the vetting engine: discovery, and cards for the `order-sign` and
`order-select` hooks from FHIR R4 MedicationRequests (pure: no database, no web framework).

https://cds-hooks.hl7.org/2.0/ — the draft orders come in `context.draftOrders` (a Bundle);
the patient, conditions, medications, allergies and eGFR may come in `prefetch`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from ehospital.vetting.engine import Finding, Item, Verdict, vet
from ehospital.vetting.fhir import items_of, medication_names, patient_context
from ehospital.vetting.knowledge import Knowledge

SERVICE_ID = "ehospital-prescription-vetting"
SELECT_SERVICE_ID = "ehospital-prescription-vetting-select"
HOOKS = {SERVICE_ID: "order-sign", SELECT_SERVICE_ID: "order-select"}
OVERRIDE_SYSTEM = "urn:ehospital:cds:override-reason"
OVERRIDE_REASONS = (
    ("patient-aware", "Patient aware of the risk and consents"),
    ("benefit-outweighs-risk", "Benefit outweighs the risk"),
    ("will-monitor", "Will monitor the patient"),
    ("not-relevant", "Not relevant to this patient"),
)
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    "egfr": "Observation?patient={{context.patientId}}&code=http://loinc.org|33914-3,http://loinc.org|62238-1"
    "&_sort=-date&_count=1",
}
INDICATOR = {"contraindicated": "critical", "major": "warning", "moderate": "warning", "minor": "info"}


def discovery() -> dict[str, Any]:
    description = (
        "Pre-screens medication orders with the ehospital knowledge graph (ANSM interaction "
        "thesaurus, ONC lists, curated rules with their sources): interactions, duplicate "
        "therapy, allergy, renal, pregnancy, age and disease rules, doses. Every finding cites "
        "its source; a pharmacist still reviews every prescription."
    )
    return {
        "services": [
            {
                "hook": hook,
                "id": service_id,
                "title": "ehospital prescription vetting",
                "description": description,
                "prefetch": PREFETCH,
                "usageRequirements": "Bearer token of an ehospital doctor or pharmacist account.",
            }
            for service_id, hook in HOOKS.items()
        ]
    }


class CdsRequestError(ValueError):
    """The request cannot be answered: a machine-readable code and a reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class IssuedCard:
    uuid: str
    indicator: str
    category: str
    summary: str
    source: str
    body: dict[str, Any]


def _resources(value: Any) -> list[Mapping[str, Any]]:
    """A Bundle's resources, a list of resources, or one resource."""
    if isinstance(value, Mapping) and value.get("resourceType") == "Bundle":
        entries = value.get("entry")
        return [
            e["resource"]
            for e in (entries if isinstance(entries, list) else [])
            if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
        ]
    if isinstance(value, list):
        return [r for r in value if isinstance(r, Mapping)]
    return [value] if isinstance(value, Mapping) and value.get("resourceType") else []


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def cards_for(kb: Knowledge, service_id: str, request: Mapping[str, Any]) -> tuple[list[IssuedCard], Verdict]:
    hook = HOOKS.get(service_id)
    if hook is None:
        raise CdsRequestError("unknown_service", f"no CDS service {service_id!r}")
    if request.get("hook") != hook:
        raise CdsRequestError("wrong_hook", f"the service {service_id} answers the {hook} hook")
    context = request.get("context")
    if not isinstance(context, Mapping):
        raise CdsRequestError("missing_context", "the request has no context")
    orders = [
        r for r in _resources(context.get("draftOrders")) if r.get("resourceType") == "MedicationRequest"
    ]
    if not orders:
        raise CdsRequestError("no_medication_orders", "context.draftOrders holds no MedicationRequest")
    prefetch = request.get("prefetch") if isinstance(request.get("prefetch"), Mapping) else {}
    assert isinstance(prefetch, Mapping)
    patients = _resources(prefetch.get("patient"))
    current: list[str] = []
    for med in _resources(prefetch.get("medications")):
        if med.get("resourceType") == "MedicationRequest" and med.get("status", "active") == "active":
            current += medication_names(kb, med)[0]
    on = date.today()
    patient, _ = patient_context(
        patients[0] if patients else None,
        _resources(prefetch.get("conditions")),
        _resources(prefetch.get("allergies")),
        _resources(prefetch.get("egfr")),
        current,
        on=on,
    )
    items: list[Item] = []
    order_of_drug: dict[str, str] = {}  # item name → MedicationRequest/<id> (for suggestions)
    for order in orders:
        for item in items_of(kb, order):
            items.append(item)
            if order.get("id"):
                order_of_drug[item.drug] = f"MedicationRequest/{order['id']}"
    verdict = vet(items, patient, kb)
    raw = context.get("selections")
    selected = {str(s) for s in raw} if hook == "order-select" and isinstance(raw, list) else set()
    cards = [
        _card(finding, order_of_drug)
        for finding in verdict.findings
        if not selected or any(order_of_drug.get(d) in selected for d in finding.drugs)
    ]
    return cards, verdict


def _card(finding: Finding, order_of_drug: Mapping[str, str]) -> IssuedCard:
    card_id = str(uuid.uuid4())
    suggestions = [
        {
            "label": _short(f"Remove {drug} from the order", 80),
            "uuid": str(uuid.uuid4()),
            "actions": [
                {"type": "delete", "description": f"Remove {drug}", "resourceId": [order_of_drug[drug]]}
            ],
        }
        for drug in dict.fromkeys(finding.drugs)
        if drug in order_of_drug and finding.category not in ("unknown_drug",)
    ]
    summary = _short(f"{finding.severity.capitalize()} {finding.category}: {finding.message_en}", 139)
    body: dict[str, Any] = {
        "uuid": card_id,
        "summary": summary,
        "detail": f"{finding.message_en}\n\n**Management:** {finding.management}\n\n{finding.message_zh}",
        "indicator": INDICATOR[finding.severity],
        "source": {
            "label": _short(finding.source, 200),
            "topic": {"code": finding.category, "system": "urn:ehospital:vetting:category"},
        },
        "overrideReasons": [
            {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
            for code, display in OVERRIDE_REASONS
        ],
    }
    if suggestions:
        body["suggestions"] = suggestions
        body["selectionBehavior"] = "at-most-one"
    return IssuedCard(card_id, body["indicator"], finding.category, summary, finding.source, body)
