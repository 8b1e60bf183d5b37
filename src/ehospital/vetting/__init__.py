"""The prescription vetting engine: a pharmaceutical knowledge graph and the clinical checks
that pre-screen every prescription before the pharmacist. A pure library: no database, no web
server. `vet(items, patient)` → `Verdict`."""

from ehospital.vetting.engine import Finding, Item, Patient, Verdict, vet
from ehospital.vetting.knowledge import Knowledge, KnowledgeUnavailable, build, knowledge

__all__ = [
    "Finding",
    "Item",
    "Knowledge",
    "KnowledgeUnavailable",
    "Patient",
    "Verdict",
    "build",
    "knowledge",
    "vet",
]
