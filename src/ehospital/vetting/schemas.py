"""The JSON form of a vetting request (CLI and HTTP), validated, and its conversion."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from ehospital.kit.schemas import Input
from ehospital.vetting.engine import Item, Patient

Name = str  # drug names: free text, bounded below


class PatientIn(Input):
    age: int | None = Field(default=None, ge=0, le=130)
    sex: Literal["F", "M", "female", "male", "f", "m"] | None = None
    weight_kg: Decimal | None = Field(default=None, gt=0, le=500)
    pregnant: bool | None = None
    lactating: bool | None = None
    egfr: Decimal | None = Field(default=None, ge=0, le=300)
    allergies: list[Name] = Field(default_factory=list, max_length=50)
    conditions: list[Name] = Field(default_factory=list, max_length=100)
    current_medications: list[Name] = Field(default_factory=list, max_length=100)

    def to_engine(self) -> Patient:
        return Patient(
            age=self.age,
            sex=None if self.sex is None else self.sex[0].upper(),
            weight_kg=self.weight_kg,
            pregnant=self.pregnant,
            lactating=self.lactating,
            egfr=self.egfr,
            allergies=tuple(a[:200] for a in self.allergies),
            conditions=tuple(c[:200] for c in self.conditions),
            current_medications=tuple(m[:200] for m in self.current_medications),
        )


class ItemIn(Input):
    drug: str = Field(min_length=1, max_length=200)
    dose: Decimal | None = Field(default=None, gt=0, le=1_000_000)
    unit: str | None = Field(default=None, max_length=20)
    route: str | None = Field(default=None, max_length=40)
    frequency: str | None = Field(default=None, max_length=20)
    days: int | None = Field(default=None, ge=1, le=366)

    def to_engine(self) -> Item:
        return Item(self.drug, self.dose, self.unit, self.route, self.frequency, self.days)


class VetRequest(Input):
    patient: PatientIn = Field(default_factory=PatientIn)
    items: list[ItemIn] = Field(min_length=1, max_length=20)
