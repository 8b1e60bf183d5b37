"""The drug catalogue shipped in the package (prescriptions/data/formulary.csv): shape and a few facts."""

from __future__ import annotations

import csv
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import get_args

import ehospital
from ehospital.prescriptions.schemas import Form, Route

CSV_PATH = Path(ehospital.__file__).parent / "prescriptions" / "data" / "formulary.csv"

HEADER = [
    "code",
    "generic_en",
    "generic_zh",
    "form",
    "strength",
    "unit",
    "route",
    "atc",
    "rx_only",
    "control",
    "price_cents",
    "category",
]
FORMS = set(get_args(Form))  # the API accepts exactly what the file uses
UNITS = {"mg", "g", "mcg", "mg/mL", "units/mL", "%", "mcg/dose", "MBq"}
ROUTES = set(get_args(Route))
CONTROLS = {"none", "narcotic", "psychotropic_1", "psychotropic_2", "toxic", "radioactive"}
CATEGORIES = {
    "diabetes",
    "cardiovascular",
    "respiratory",
    "antibiotic",
    "analgesic",
    "dermatology",
    "psychiatric",
    "gastro",
    "kidney",
    "thyroid",
    "gout",
    "allergy",
    "neurology",
    "urology",
    "ophthalmology",
    "other",
}
BIG_CATEGORIES = [
    "diabetes",
    "cardiovascular",
    "respiratory",
    "antibiotic",
    "analgesic",
    "dermatology",
    "psychiatric",
]

CODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]+$")
ATC_RE = re.compile(r"^[A-V][0-9]{2}[A-Z]{2}[0-9]{2}$")
PRICE_RE = re.compile(r"^[1-9][0-9]*$")
STRENGTH_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
ISOTOPE_RE = re.compile(r"\([0-9]+[A-Z][a-z]?\)")


def _header() -> list[str]:
    with CSV_PATH.open(encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh))


def _rows() -> list[dict[str, str]]:
    with CSV_PATH.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _by_generic(generic_en: str) -> list[dict[str, str]]:
    found = [r for r in _rows() if r["generic_en"] == generic_en]
    assert found, f"no row for {generic_en}"
    return found


def test_file_is_utf8_without_bom() -> None:
    raw = CSV_PATH.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    raw.decode("utf-8")


def test_header_is_exact() -> None:
    assert _header() == HEADER


def test_enough_rows_and_every_row_complete() -> None:
    rows = _rows()
    assert len(rows) >= 200
    for row in rows:
        assert None not in row, f"extra cells in {row}"
        for column in HEADER:
            value = row[column]
            assert value, f"{row['code']}: empty {column}"
            assert value == value.strip(), f"{row['code']}: stray whitespace in {column}"


def test_codes_unique_and_well_formed() -> None:
    codes = [r["code"] for r in _rows()]
    duplicates = [c for c, n in Counter(codes).items() if n > 1]
    assert not duplicates
    bad = [c for c in codes if not CODE_RE.match(c)]
    assert not bad


def test_atc_codes_are_level_5() -> None:
    bad = [(r["code"], r["atc"]) for r in _rows() if not ATC_RE.match(r["atc"])]
    assert not bad


def test_enumerated_columns() -> None:
    for row in _rows():
        code = row["code"]
        assert row["form"] in FORMS, code
        assert row["unit"] in UNITS, code
        assert row["route"] in ROUTES, code
        assert row["control"] in CONTROLS, code
        assert row["category"] in CATEGORIES, code
        assert row["rx_only"] in {"true", "false"}, code


def test_prices_are_positive_integers() -> None:
    for row in _rows():
        assert PRICE_RE.match(row["price_cents"]), row["code"]
        assert int(row["price_cents"]) > 0


def test_strength_is_a_positive_plain_decimal() -> None:
    for row in _rows():
        strength = row["strength"]
        assert STRENGTH_RE.match(strength), f"{row['code']}: {strength!r}"
        assert Decimal(strength) > 0, row["code"]


def test_main_categories_are_well_stocked() -> None:
    counts = Counter(r["category"] for r in _rows())
    for category in BIG_CATEGORIES:
        assert counts[category] >= 8, f"{category}: {counts[category]}"
    for category in CATEGORIES:
        assert counts[category] >= 1, category


def test_every_control_class_present() -> None:
    present = {r["control"] for r in _rows()}
    assert present == CONTROLS


def test_controlled_drugs_are_prescription_only() -> None:
    for row in _rows():
        if row["control"] != "none":
            assert row["rx_only"] == "true", row["code"]


def test_no_duplicate_products() -> None:
    keys = Counter((r["generic_en"], r["form"], r["strength"], r["unit"]) for r in _rows())
    assert not [k for k, n in keys.items() if n > 1]


def test_chinese_names_are_chinese() -> None:
    for row in _rows():
        assert CJK_RE.search(row["generic_zh"]), row["code"]
        # INNs are lower case; only an isotope label such as "(131I)" keeps its element symbol.
        name = ISOTOPE_RE.sub("", row["generic_en"])
        assert name == name.lower(), row["code"]


def test_one_substance_one_name_and_one_atc_per_use() -> None:
    # One generic name maps to one Chinese name and, per route and category, to one ATC code.
    # A substance may carry several ATC codes by route or indication (metronidazole oral P01AB01 vs
    # parenteral J01XD01; finasteride 1 mg D11AX10 vs 5 mg G04CB01), never two for the same use.
    zh: dict[str, set[str]] = {}
    atc: dict[tuple[str, str, str], set[str]] = {}
    for row in _rows():
        zh.setdefault(row["generic_en"], set()).add(row["generic_zh"])
        atc.setdefault((row["generic_en"], row["route"], row["category"]), set()).add(row["atc"])
    assert {k: v for k, v in zh.items() if len(v) > 1} == {}
    assert {k: v for k, v in atc.items() if len(v) > 1} == {}


def test_units_fit_forms() -> None:
    per_dose = {"tablet", "tablet_er", "capsule", "capsule_er", "granules", "suppository"}
    topical = {"cream", "ointment", "gel", "lotion", "solution_topical", "eye_drops"}
    for row in _rows():
        if row["form"] in per_dose:
            assert row["unit"] in {"mg", "g", "mcg"}, row["code"]
        if row["form"] in topical:
            assert row["unit"] == "%", row["code"]
        if row["form"] == "nasal_spray":
            assert row["unit"] == "mcg/dose", row["code"]
        if row["unit"] == "%":
            assert Decimal(row["strength"]) <= 100, row["code"]


def test_spot_check_known_facts() -> None:
    expected_atc = {
        "metformin": "A10BA02",
        "atorvastatin": "C10AA05",
        "amlodipine": "C08CA01",
        "amoxicillin": "J01CA04",
        "sertraline": "N06AB06",
        "adapalene": "D10AD03",
        "omeprazole": "A02BC01",
        "levothyroxine sodium": "H03AA01",
        "allopurinol": "M04AA01",
        "loratadine": "R06AX13",
        "paracetamol": "N02BE01",
        "morphine": "N02AA01",
        "diazepam": "N05BA01",
    }
    for generic, atc in expected_atc.items():
        assert {r["atc"] for r in _by_generic(generic)} == {atc}, generic

    assert {r["control"] for r in _by_generic("morphine")} == {"narcotic"}
    assert {r["control"] for r in _by_generic("fentanyl")} == {"narcotic"}
    assert {r["control"] for r in _by_generic("diazepam")} == {"psychotropic_2"}
    assert {r["control"] for r in _by_generic("tramadol")} == {"psychotropic_2"}
    assert {r["control"] for r in _by_generic("methylphenidate")} == {"psychotropic_1"}
    assert {r["control"] for r in _by_generic("arsenic trioxide")} == {"toxic"}
    assert {r["control"] for r in _by_generic("sodium iodide (131I)")} == {"radioactive"}
    assert {r["control"] for r in _by_generic("metformin")} == {"none"}

    assert {r["generic_zh"] for r in _by_generic("metformin")} == {"二甲双胍"}
    assert {r["generic_zh"] for r in _by_generic("amlodipine")} == {"氨氯地平"}
    assert {r["generic_zh"] for r in _by_generic("atorvastatin")} == {"阿托伐他汀"}

    # OTC in China, per the brief: paracetamol tablets and loratadine.
    assert {r["rx_only"] for r in _by_generic("paracetamol") if r["form"] == "tablet"} == {"false"}
    assert {r["rx_only"] for r in _by_generic("loratadine")} == {"false"}
    assert {r["rx_only"] for r in _by_generic("amoxicillin")} == {"true"}

    # Finasteride is classed by indication: 1 mg for hair loss (D11AX10), 5 mg for BPH (G04CB01).
    finasteride = {r["strength"]: r["atc"] for r in _by_generic("finasteride")}
    assert finasteride == {"1": "D11AX10", "5": "G04CB01"}
    # Metronidazole: oral under P01AB01, parenteral under J01XD01, topical under D06BX01.
    metronidazole = {r["route"]: r["atc"] for r in _by_generic("metronidazole")}
    assert metronidazole == {"oral": "P01AB01", "intravenous": "J01XD01", "topical": "D06BX01"}

    glargine = {(r["strength"], r["unit"], r["form"]) for r in _by_generic("insulin glargine")}
    assert ("100", "units/mL", "injection_pen") in glargine


def test_codes_mention_the_product() -> None:
    # Codes are assigned once and must stay stable; they start with the generic name's first word.
    for row in _rows():
        first_word = re.sub(r"[^a-z0-9]+", "-", row["generic_en"]).split("-")[0]
        assert row["code"].startswith(first_word), row["code"]
