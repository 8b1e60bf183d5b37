"""Prescription payloads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal, get_args

from pydantic import Field

from ehospital.kit.schemas import DbId, Input, Output
from ehospital.prescriptions.rules import FREQUENCIES

# The vocabularies of the formulary file (prescriptions/data/README.md) and the API.
Route = Literal[
    "oral",
    "topical",
    "inhalation",
    "subcutaneous",
    "intravenous",
    "intramuscular",
    "transdermal",
    "ophthalmic",
    "nasal",
    "rectal",
]
Form = Literal[
    "tablet",
    "tablet_er",
    "capsule",
    "capsule_er",
    "granules",
    "oral_solution",
    "suspension",
    "injection",
    "injection_pen",
    "inhaler",
    "nebuliser_solution",
    "cream",
    "ointment",
    "gel",
    "lotion",
    "solution_topical",
    "patch",
    "eye_drops",
    "nasal_spray",
    "suppository",
]
Frequency = Literal["qd", "bid", "tid", "qid", "q12h", "q8h", "q6h", "qn", "qw"]
assert set(get_args(Frequency)) == set(FREQUENCIES)
DoseUnit = Literal["mg", "g", "mcg", "mL", "units", "puff", "drop", "application", "patch"]
# The same vocabularies as tuples, in the order pages offer them.
ROUTES: tuple[str, ...] = get_args(Route)
DOSE_UNITS: tuple[str, ...] = get_args(DoseUnit)
FREQUENCY_CODES: tuple[str, ...] = get_args(Frequency)


class ItemIn(Input):
    drug_code: str = Field(min_length=1, max_length=80)
    dose: Decimal = Field(gt=0, le=100_000, max_digits=12, decimal_places=4)
    dose_unit: DoseUnit
    route: Route
    frequency: Frequency
    days: int = Field(ge=1, le=366)
    quantity: int = Field(ge=1, le=10_000)
    instructions: str = Field(default="", max_length=500)


class PrescriptionIn(Input):
    pharmacy_id: DbId = Field(description="The pharmacy whose pharmacist reviews and dispenses it")
    items: list[ItemIn] = Field(min_length=1, max_length=10)
    chronic: bool = False
    long_term: bool = Field(default=False, description="Stable chronic disease: up to 12 weeks")
    extended_reason: str | None = Field(default=None, max_length=500)
    guardian_present: bool = Field(default=False, description="Required for a patient under 6")
    validity_days: Literal[1, 3] = 1
    note: str | None = Field(default=None, max_length=1000)


class DrugCreate(Input):
    code: str = Field(min_length=2, max_length=80, pattern=r"^[a-z0-9][a-z0-9.-]+$")
    generic_en: str = Field(min_length=2, max_length=120)
    generic_zh: str = Field(min_length=1, max_length=60)
    form: Form
    strength: Decimal = Field(gt=0, le=1_000_000, max_digits=12, decimal_places=4)
    unit: Literal["mg", "g", "mcg", "mg/mL", "units/mL", "%", "mcg/dose", "MBq"]
    route: Route
    atc: str = Field(pattern=r"^[A-V][0-9]{2}[A-Z]{2}[0-9]{2}$")
    rx_only: bool = True
    control: Literal["none", "narcotic", "psychotropic_1", "psychotropic_2", "toxic", "radioactive"] = "none"
    price_cents: int = Field(ge=1, le=100_000_000)
    category: str = Field(min_length=2, max_length=24, pattern=r"^[a-z_]+$")


class DrugRead(Output):
    code: str
    generic_en: str
    generic_zh: str
    form: str
    strength: str
    unit: str
    route: str
    atc: str
    rx_only: bool
    control: str
    price_cents: int
    category: str
    retired: bool


class ItemRead(Output):
    position: int
    drug: DrugRead
    dose: str
    dose_unit: str
    route: str
    frequency: str
    days: int
    quantity: int
    instructions: str


class FindingRead(Output):
    rule: str
    severity: str
    message: str
    message_zh: str
    source: str
    evidence: str


class PrescriptionRead(Output):
    id: int
    lineage_id: int | None
    version: int
    status: str
    consultation_id: int
    patient_id: int
    doctor_id: int
    diagnosis_code: str
    diagnosis_text: str
    chronic: bool
    long_term: bool
    extended_reason: str | None
    guardian_present: bool
    validity_days: int
    pharmacy_id: int
    expires_at: datetime | None
    note: str | None
    created_at: datetime
    signed_at: datetime | None
    key_fingerprint: str | None
    signature: str | None = Field(description="Ed25519 signature, base64")
    items: list[ItemRead]
    findings: list[FindingRead] = Field(default_factory=list)


class ReviewIn(Input):
    decision: Literal["approve", "reject", "return"]
    reason: str | None = Field(default=None, max_length=1000, description="Required to reject or return")


class TextIn(Input):
    text: str = Field(min_length=2, max_length=1000)


class QueueEntry(Output):
    id: int
    version: int
    severity_rank: int
    signed_at: datetime | None
    expires_at: datetime | None
    diagnosis_code: str
    items: int


class VerifyResult(Output):
    prescription_id: int
    valid: bool
    key_fingerprint: str | None
    reason: str | None = None
