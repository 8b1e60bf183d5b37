"""The formulary shipped with the package (data/formulary.csv) and its loading into the database."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.prescriptions.models import Drug
from ehospital.prescriptions.repository import PrescriptionRepository

FORMULARY_CSV = Path(__file__).parent / "data" / "formulary.csv"


@dataclass(frozen=True)
class FormularyRow:
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


def read_formulary(path: Path = FORMULARY_CSV) -> list[FormularyRow]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            FormularyRow(
                code=row["code"],
                generic_en=row["generic_en"],
                generic_zh=row["generic_zh"],
                form=row["form"],
                strength=format(Decimal(row["strength"]).normalize(), "f"),  # "500", never "5E+2"
                unit=row["unit"],
                route=row["route"],
                atc=row["atc"],
                rx_only=row["rx_only"].strip().lower() == "true",
                control=row["control"],
                price_cents=int(row["price_cents"]),
                category=row["category"],
            )
            for row in csv.DictReader(fh)
        ]


async def sync_formulary(session: AsyncSession, path: Path = FORMULARY_CSV) -> int:
    """Add the shipped drugs the database does not have yet; returns how many were added.

    Existing rows are left alone: an admin may have retired or repriced them.
    """
    repo = PrescriptionRepository(session)
    known = await repo.drug_codes()
    added = 0
    for row in read_formulary(path):
        if row.code not in known:
            repo.add(Drug(**row.__dict__))
            added += 1
    await session.flush()
    return added
