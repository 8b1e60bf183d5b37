"""The vetting engine: names, interactions (ANSM, ONC), dose caps, context, duplicates, the
decision, the CLI, and a property test that it never raises on valid input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ehospital.vetting import Item, Patient, Verdict, knowledge, vet
from ehospital.vetting.knowledge import RANK, build, rx_data_dir
from ehospital.vetting.schemas import VetRequest

EHOSPITAL = str(Path(sys.executable).parent / "ehospital")
RX_DATA = rx_data_dir()
needs_onc = pytest.mark.skipif(
    RX_DATA is None and os.environ.get("CI") != "true",
    reason="../shared/data/rx (the ONC lists) is not beside this checkout",
)


def interactions(verdict: Verdict) -> list[Any]:
    return [f for f in verdict.findings if f.category == "interaction"]


def mg(drug: str, dose: int, frequency: str = "qd", route: str = "oral") -> Item:
    return Item(drug, Decimal(dose), "mg", route, frequency)


# --- the graph ----------------------------------------------------------------------------------


def test_the_graph_builds_fast_from_its_recorded_sources() -> None:
    kb = build()
    assert kb.build_seconds < 2.0
    assert "ANSM 2020_01" in kb.version
    assert sum(len(r) for r in kb.term_rules.values()) > 1500  # ≈ 3,100 rows, both directions merged
    if RX_DATA is not None:
        assert "ONC high-priority 2012" in kb.version and kb.onc and kb.non_interruptive


@pytest.mark.parametrize(
    "name",
    ["Simvastatin", "SIMVASTATIN", "辛伐他汀", "C10AA01", "simvastatine", "36567", "simvastatin-20mg-tab"],
)
def test_names_resolve_in_every_form(name: str) -> None:
    kb = knowledge()
    ids = kb.resolve(name)
    assert ids is not None and kb.ingredients[ids[0]].name_en == "simvastatin"


@pytest.mark.parametrize(
    ("name", "same_as"),
    [
        ("atorvastatin calcium", "atorvastatin"),
        ("Metoprolol Succinate", "metoprolol"),
        ("acetaminophen", "paracetamol"),
        ("rifampin", "rifampicin"),
        ("cyclosporine", "ciclosporin"),
        ("aspirin", "acetylsalicylic acid"),
        ("St John's wort", "millepertuis"),
        ("阿司匹林", "aspirin"),
    ],
)
def test_salts_and_other_names_are_the_same_drug(name: str, same_as: str) -> None:
    kb = knowledge()
    assert kb.resolve(name) is not None and kb.resolve(name) == kb.resolve(same_as)


def test_a_combination_product_names_each_ingredient() -> None:
    kb = knowledge()
    ids = kb.resolve("amoxicillin/clavulanate")
    assert ids is not None and len(ids) == 2


def test_unknown_names_are_reported_never_dropped() -> None:
    verdict = vet([Item("xyzzy-olol"), Item("metformin")], Patient(current_medications=("unobtainium",)))
    assert verdict.unresolved == ["xyzzy-olol", "unobtainium"]
    unknown = [f for f in verdict.findings if f.category == "unknown_drug"]
    assert [f.drugs for f in unknown] == [["xyzzy-olol"], ["unobtainium"]]
    assert verdict.decision == "review"  # a drug nobody checked needs the pharmacist's eye


def test_the_knowledge_browser_describes_a_drug_with_its_sources() -> None:
    found = knowledge().describe("warfarin")
    assert found is not None
    (warfarin,) = found["ingredients"]
    assert warfarin["name_zh"] == "华法林" and "B01AA03" in warfarin["atc"]
    assert "antivitamines k" in [c.lower() for c in warfarin["classes"]]
    assert any(i["severity"] == "contraindicated" for i in warfarin["interactions"])
    pregnancy = [r for r in warfarin["patient_rules"] if r["category"] == "pregnancy"]
    assert pregnancy and pregnancy[0]["when"] == "pregnant" and "Coumadin" in pregnancy[0]["source"]
    metformin = knowledge().describe("metformin")
    assert metformin is not None
    (m,) = metformin["ingredients"]
    assert m["dose_limits"][0]["max_daily_mg"] == "2550" and "egfr < 30" in m["patient_rules"][0]["when"]
    assert knowledge().describe("amoxicillin")["ingredients"][0]["allergy_groups"] == ["penicillins"]  # type: ignore[index]
    assert any("ANSM" in s for s in found["sources"])
    assert knowledge().describe("no-such-drug") is None


# --- interactions -------------------------------------------------------------------------------


def test_a_contraindicated_pair_blocks() -> None:
    verdict = vet([mg("simvastatin", 20), mg("clarithromycin", 500, "bid")])
    (finding,) = interactions(verdict)
    assert finding.severity == "contraindicated" and verdict.decision == "block"
    assert "ANSM" in finding.source and finding.message_zh and finding.management


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("pantoprazole", "clopidogrel"),  # only omeprazole/esomeprazole interact (ANSM)
        ("amlodipine", "atorvastatin"),  # the amlodipine dose cap concerns simvastatin only
        ("metformin", "amlodipine"),
        ("paracetamol", "amoxicillin"),
    ],
)
def test_pairs_that_must_not_alert(a: str, b: str) -> None:
    verdict = vet([Item(a), Item(b)])
    assert interactions(verdict) == [] and verdict.decision == "pass"


def test_simvastatin_with_amlodipine_alerts_only_above_20_mg_a_day() -> None:
    over = vet([mg("simvastatin", 40), mg("amlodipine", 5)])
    (finding,) = interactions(over)
    assert finding.severity == "moderate" and "exceeds the 20 mg/day cap" in finding.message_en
    assert "日剂量40 mg，超过20 mg/日上限" in finding.message_zh
    assert interactions(vet([mg("simvastatin", 20), mg("amlodipine", 5)])) == []
    assert interactions(vet([mg("simvastatin", 10, "bid"), mg("amlodipine", 5)])) == []
    assert len(interactions(vet([mg("simvastatin", 20, "bid"), mg("amlodipine", 5)]))) == 1
    unknown_dose = interactions(vet([Item("simvastatin"), Item("amlodipine")]))
    assert len(unknown_dose) == 1 and "daily dose is not known" in unknown_dose[0].message_en


@pytest.mark.parametrize(
    ("dose", "frequency", "severity"),
    [(100, "qd", "minor"), (500, "tid", "major"), (1000, "tid", "contraindicated")],
)
def test_aspirin_with_an_anticoagulant_depends_on_the_aspirin_dose(
    dose: int, frequency: str, severity: str
) -> None:
    """ANSM grades aspirin + oral anticoagulant by aspirin dose: antiplatelet (50–375 mg a day),
    analgesic (≥ 500 mg a dose, < 3 g a day), anti-inflammatory (≥ 1 g a dose or ≥ 3 g a day)."""
    (finding,) = interactions(
        vet([mg("aspirin", dose, frequency)], Patient(current_medications=("warfarin",)))
    )
    assert finding.severity == severity and "doses" in finding.message_en
    unknown = interactions(vet([Item("aspirin")], Patient(current_medications=("warfarin",))))
    assert unknown[0].severity == "contraindicated" and "the most severe is shown" in unknown[0].message_en


def test_against_current_medications() -> None:
    verdict = vet([mg("ibuprofen", 400, "tid")], Patient(current_medications=("warfarin",)))
    (finding,) = interactions(verdict)
    assert finding.drugs == ["ibuprofen", "warfarin"] and finding.severity == "major"
    assert "(current medication)" in finding.message_en and "正在使用" in finding.message_zh


def test_warfarin_with_an_nsaid_depends_on_route_age_and_history() -> None:
    def severity(item: Item, patient: Patient) -> str:
        (finding,) = interactions(vet([item, Item("warfarin")], patient))
        return str(finding.severity)

    plain = Patient(age=50)
    assert severity(mg("ibuprofen", 400, "tid"), plain) == "major"
    topical = Item("diclofenac", route="topical")
    assert severity(topical, plain) == "moderate"
    assert severity(mg("ibuprofen", 400, "tid"), Patient(age=70)) == "contraindicated"
    assert severity(mg("ibuprofen", 400, "tid"), Patient(age=50, conditions=("K92.2",))) == "contraindicated"
    (why,) = interactions(vet([topical, Item("warfarin")], plain))
    assert "Severity lowered" in why.message_en and "Heyneman" in why.source


@needs_onc
def test_every_onc_high_priority_pair_alerts() -> None:
    assert RX_DATA is not None
    kb = knowledge()
    checked = 0
    with (RX_DATA / "onc_high_priority_15_classes.csv").open(encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            objects = [d.strip() for d in row["object_drugs"].split(";") if d.strip()]
            precipitants = [d.strip() for d in row["precipitant_drugs"].split(";") if d.strip()]
            for a in objects:
                for b in precipitants:
                    if a.upper() == "NSAID" or kb.resolve(a) == kb.resolve(b):
                        continue
                    found = interactions(vet([Item(a), Item(b)]))
                    assert found, (row["onc_table2_id"], a, b)
                    assert RANK[found[0].severity] >= RANK["major"], (a, b, found[0].severity)
                    assert found[0].interruptive
                    checked += 1
    assert checked > 300


@needs_onc
def test_non_interruptive_pairs_are_shown_without_interrupting() -> None:
    verdict = vet([Item("simvastatin")], Patient(current_medications=("warfarin",)))
    (finding,) = interactions(verdict)
    assert finding.severity == "moderate" and finding.interruptive is False
    assert "JAMIA 2013" in finding.source
    assert verdict.decision == "pass"


def test_ace_inhibitor_with_an_arb_cites_both_sources() -> None:
    (finding,) = interactions(vet([Item("enalapril"), Item("losartan")]))
    assert "ANSM" in finding.source and "ESC/ESH" in finding.source


# --- duplicates ---------------------------------------------------------------------------------


def test_the_same_ingredient_twice() -> None:
    verdict = vet([Item("metformin-500mg-tab"), Item("二甲双胍")])
    (dup,) = [f for f in verdict.findings if f.category == "duplicate"]
    assert dup.severity == "major" and verdict.decision == "review"


def test_two_drugs_of_one_class_and_one_already_taken() -> None:
    statins = vet([Item("atorvastatin"), Item("rosuvastatin")])
    (dup,) = [f for f in statins.findings if f.category == "duplicate"]
    assert dup.severity == "moderate" and "STOPP" in dup.source
    taken = vet([Item("amlodipine")], Patient(current_medications=("amlodipine besylate",)))
    assert [f.message_en for f in taken.findings] == ["The patient already takes amlodipine"]


def test_the_verdict_says_what_was_not_checked() -> None:
    bare = vet([Item("metformin")])
    assert bare.checked == ["interaction", "duplicate", "dose", "route", "unknown_drug"]
    skipped = {c["check"]: c["reason"] for c in bare.not_checked}
    assert skipped["renal"] == "no eGFR given" and skipped["allergy"] == "no allergies given"
    assert set(skipped) == {
        "allergy",
        "renal",
        "pregnancy",
        "lactation",
        "age",
        "sex",
        "disease",
        "hepatic",
        "dose",
    }
    assert "metformin" in skipped["dose"]  # no dose given: its maximum could not be checked
    full = Patient(
        age=40,
        sex="F",
        pregnant=False,
        lactating=False,
        egfr=Decimal(90),
        allergies=("penicillin",),
        conditions=("I10",),
    )
    complete = vet([mg("metformin", 500, "bid")], full)
    assert [c["check"] for c in complete.not_checked] == ["dose"]  # partial by nature
    assert complete.decision == "pass"


# --- the patient --------------------------------------------------------------------------------


def categories(verdict: Verdict) -> dict[str, str]:
    return {f.category: f.severity for f in verdict.findings}


def test_allergy_to_the_drug_its_class_and_cross_reactive_classes() -> None:
    penicillin = Patient(allergies=("penicillin",))
    assert categories(vet([Item("amoxicillin")], penicillin)) == {"allergy": "contraindicated"}
    assert vet([Item("amoxicillin/clavulanate")], penicillin).decision == "block"
    (cross,) = vet([Item("cefuroxime")], penicillin).findings
    assert (cross.category, cross.severity) == (
        "allergy",
        "moderate",
    ) and "J Allergy Clin Immunol" in cross.source
    assert vet([Item("azithromycin")], penicillin).findings == []
    # By ingredient, in Chinese, and an allergy nobody knows.
    assert categories(vet([Item("阿莫西林")], Patient(allergies=("amoxicillin",)))) == {
        "allergy": "contraindicated"
    }
    assert categories(vet([Item("cefalexin")], Patient(allergies=("头孢菌素",)))) == {
        "allergy": "contraindicated"
    }
    unknown = vet([Item("metformin")], Patient(allergies=("moonbeams",)))
    assert unknown.unresolved == ["moonbeams"] and unknown.decision == "review"


@pytest.mark.parametrize(
    ("item", "patient", "category", "severity"),
    [
        (Item("metformin"), Patient(egfr=Decimal(25)), "renal", "contraindicated"),
        (Item("metformin"), Patient(egfr=Decimal(40)), "renal", "moderate"),
        (Item("ibuprofen"), Patient(egfr=Decimal(40)), "renal", "major"),
        (Item("dabigatran etexilate"), Patient(egfr=Decimal(20)), "renal", "contraindicated"),
        (Item("warfarin"), Patient(pregnant=True), "pregnancy", "contraindicated"),
        (Item("enalapril"), Patient(pregnant=True), "pregnancy", "contraindicated"),
        (Item("losartan"), Patient(pregnant=True), "pregnancy", "contraindicated"),
        (Item("doxycycline"), Patient(pregnant=True), "pregnancy", "major"),
        (Item("codeine"), Patient(lactating=True), "lactation", "major"),
        (Item("glibenclamide"), Patient(age=75), "age", "major"),
        (Item("diazepam"), Patient(age=80), "age", "major"),
        (Item("aspirin"), Patient(age=10), "age", "contraindicated"),
        (Item("doxycycline"), Patient(age=6), "age", "contraindicated"),
        (Item("finasteride"), Patient(sex="F"), "sex", "contraindicated"),
        (Item("propranolol"), Patient(conditions=("J45.9",)), "disease", "contraindicated"),
        (Item("pioglitazone"), Patient(conditions=("I50.0",)), "disease", "contraindicated"),
        (Item("atorvastatin"), Patient(conditions=("K74.6",)), "hepatic", "major"),
    ],
)
def test_patient_rules(item: Item, patient: Patient, category: str, severity: str) -> None:
    found = [f for f in vet([item], patient).findings if f.category == category]
    assert [f.severity for f in found] == [severity]
    assert found[0].source and found[0].message_zh


@pytest.mark.parametrize(
    ("item", "patient"),
    [
        (Item("metformin"), Patient(egfr=Decimal(60))),
        (Item("warfarin"), Patient(pregnant=False)),
        (Item("glibenclamide"), Patient(age=50)),
        (Item("aspirin"), Patient(age=30)),
        (Item("finasteride"), Patient(sex="M")),
        (Item("propranolol"), Patient(conditions=("I10",))),
        (Item("amlodipine"), Patient(age=80, egfr=Decimal(20), pregnant=True, conditions=("I50",))),
    ],
)
def test_patient_rules_that_must_not_fire(item: Item, patient: Patient) -> None:
    assert vet([item], patient).findings == []


def test_doses_against_the_labelled_limits() -> None:
    (over,) = vet([mg("metformin", 1000, "tid")]).findings
    assert (over.category, over.severity) == ("dose", "major") and "2550" in over.message_en
    assert "Glucophage" in over.source and "日剂量3000 mg" in over.message_zh
    assert vet([mg("metformin", 850, "tid")]).findings == []
    (single,) = vet([mg("paracetamol", 1500, "bid")]).findings  # 3 g a day, but 1.5 g a dose
    assert "a dose exceeds the labelled adult maximum of 1000 mg" in single.message_en
    # A child's limit is per kg: 15 kg × 75 mg/kg = 1,125 mg a day.
    child = Patient(age=4, weight_kg=Decimal(15))
    (per_kg,) = vet([mg("paracetamol", 400, "qid")], child).findings
    assert "1125 mg (75 mg/kg for 15 kg)" in per_kg.message_en and "BNF for Children" in per_kg.source
    assert vet([mg("paracetamol", 250, "qid")], child).findings == []
    unweighed = vet([mg("paracetamol", 400, "qid")], Patient(age=4))
    reasons = {c["check"]: c["reason"] for c in unweighed.not_checked}
    assert unweighed.findings == [] and "needs the weight" in reasons["dose"]
    # Older adults: the elderly limit and the adult one.
    old = vet([mg("zolpidem", 10, "qn")], Patient(age=75)).findings
    (elderly,) = [f for f in old if f.category == "dose"]  # Beers flags the Z-drug itself too
    assert "elderly maximum of 5 mg" in elderly.message_en
    assert vet([mg("zolpidem", 10, "qn")], Patient(age=40)).findings == []
    (citalopram,) = vet([mg("citalopram", 40, "qd")], Patient(age=70)).findings
    assert "elderly maximum of 20 mg" in citalopram.message_en and "over 60 years" in citalopram.source
    assert vet([mg("citalopram", 40, "qd")], Patient(age=50)).findings == []
    (sertraline,) = vet([mg("sertraline", 150, "bid")]).findings
    assert "Zoloft" in sertraline.source


def test_every_dose_limit_names_a_known_drug_and_a_source() -> None:
    kb = knowledge()
    limits = [lim for found in kb.dose_limits.values() for lim in found]
    assert len(limits) >= 40
    assert all(lim.source and lim.population in ("adult", "child", "elderly") for lim in limits)
    assert all(lim.max_daily_mg or lim.max_single_mg for lim in limits)


def test_route_of_a_formulary_product() -> None:
    (wrong,) = vet([Item("metformin-500mg-tab", route="topical")]).findings
    assert (wrong.category, wrong.severity) == ("route", "major")
    assert vet([Item("metformin-500mg-tab", route="oral")]).findings == []


# --- never raises -------------------------------------------------------------------------------

NAMES = ["simvastatin", "amlodipine", "warfarin", "ibuprofen", "辛伐他汀", "C10AA01", "xyzzy", "", " "]
item_strategy = st.fixed_dictionaries(
    {"drug": st.one_of(st.sampled_from(NAMES[:-2]), st.text(min_size=1, max_size=40))},
    optional={
        "dose": st.one_of(st.decimals(min_value="0.001", max_value="100000", places=3), st.integers(1, 5000)),
        "unit": st.sampled_from(["mg", "g", "ml", "IU", "MG"]),
        "route": st.sampled_from(["oral", "topical", "iv", "x"]),
        "frequency": st.sampled_from(["qd", "bid", "tid", "qid", "prn", "QW", "weird"]),
        "days": st.integers(1, 366),
    },
)
patient_strategy = st.fixed_dictionaries(
    {},
    optional={
        "age": st.integers(0, 130),
        "sex": st.sampled_from(["F", "M"]),
        "weight_kg": st.integers(1, 500),
        "pregnant": st.booleans(),
        "egfr": st.integers(0, 300),
        "conditions": st.lists(st.sampled_from(["K92.2", "I10", "", "k25"]), max_size=3),
        "current_medications": st.lists(st.one_of(st.sampled_from(NAMES), st.text(max_size=20)), max_size=4),
        "allergies": st.lists(st.text(max_size=20), max_size=3),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(item_strategy, min_size=1, max_size=6), patient=patient_strategy)
def test_vetting_never_raises_on_valid_input(items: list[dict[str, Any]], patient: dict[str, Any]) -> None:
    try:
        request = VetRequest.model_validate({"patient": patient, "items": items})
    except ValidationError:
        assume(False)  # the property is about input that passes the schema
        return
    out = vet([i.to_engine() for i in request.items], request.patient.to_engine()).as_dict()
    assert out["decision"] in ("block", "review", "pass")
    json.dumps(out, ensure_ascii=False)


# --- the CLI ------------------------------------------------------------------------------------


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([EHOSPITAL, "vet", *args], input=stdin, capture_output=True, text=True, timeout=60)


def test_cli_vets_a_file_and_stdin(tmp_path: Path) -> None:
    request = {
        "patient": {"age": 70, "sex": "F", "current_medications": ["warfarin"]},
        "items": [
            {"drug": "simvastatin", "dose": 40, "unit": "mg", "frequency": "qd"},
            {"drug": "ibuprofen"},
        ],
    }
    path = tmp_path / "rx.json"
    path.write_text(json.dumps(request))
    from_file = run_cli(str(path))
    assert from_file.returncode == 0, from_file.stderr
    verdict = json.loads(from_file.stdout)
    assert verdict["decision"] == "block" and verdict["knowledge_version"].startswith("ANSM")
    assert {f["category"] for f in verdict["findings"]} == {"interaction", "age"}  # NSAID at 70
    assert json.loads(run_cli("-", stdin=json.dumps(request)).stdout) == verdict


def test_cli_batch_keeps_order_and_reports_bad_lines() -> None:
    lines = [
        json.dumps({"items": [{"drug": "fluoxetine"}, {"drug": "selegiline"}]}),
        "not json",
        json.dumps({"items": []}),
        json.dumps({"items": [{"drug": "metformin"}]}),
    ]
    done = run_cli("--batch", "-", stdin="\n".join(lines) + "\n")
    assert done.returncode == 1  # some lines could not be vetted
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [o.get("decision") for o in out] == ["review", None, None, "pass"]
    assert out[1] == {"line": 2, "error": {"code": "malformed_json", "message": out[1]["error"]["message"]}}
    assert out[2]["error"]["code"] == "validation_error"


def test_cli_bad_input_gets_one_clear_line(tmp_path: Path) -> None:
    missing = run_cli(str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    garbage = run_cli("-", stdin="{")
    assert garbage.returncode == 2 and "is not JSON" in garbage.stderr
    invalid = run_cli("-", stdin=json.dumps({"items": [{"drug": "x", "dose": -1}]}))
    assert invalid.returncode == 2 and json.loads(invalid.stdout)["error"]["code"] == "validation_error"
    neither = run_cli()
    assert neither.returncode == 2 and "give one FILE" in neither.stderr


# --- over HTTP ----------------------------------------------------------------------------------


async def test_vet_over_http_for_clinicians_only(client: Any, world: Any) -> None:
    body = {"patient": {"age": 70}, "items": [{"drug": "simvastatin"}, {"drug": "clarithromycin"}]}
    for who in (world.dr_dia, world.pharmacist):
        r = await client.post("/api/v1/vet", headers=who.headers, json=body)
        assert r.status_code == 200, r.text
        assert r.json()["decision"] == "block"
    r = await client.post("/api/v1/vet", headers=world.alice.headers, json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_clinician"
    assert (await client.post("/api/v1/vet", json=body)).status_code == 401
    r = await client.post("/api/v1/vet", headers=world.dr_dia.headers, json={"items": [{"drug": ""}]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error"
    r = await client.post("/api/v1/vet", headers=world.dr_dia.headers, json={**body, "extra": 1})
    assert r.status_code == 422


async def test_browse_the_knowledge_graph(client: Any) -> None:
    r = await client.get("/api/v1/knowledge/drugs/辛伐他汀")
    assert r.status_code == 200
    (simvastatin,) = r.json()["ingredients"]
    assert simvastatin["name_en"] == "simvastatin" and simvastatin["interactions"]
    assert all(i["source"] for i in simvastatin["interactions"])
    r = await client.get("/api/v1/knowledge/drugs/unobtainium")
    assert r.status_code == 404 and r.json()["error"]["code"] == "drug_not_known"
