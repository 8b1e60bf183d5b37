"""Symptom triage: the classifier (negation, red flags, the deployment's directory), the API on both
databases with bad input, and the accuracy floor on the shipped labelled set."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.cli import main
from ehospital.demo import CENTRES
from ehospital.directory.models import Centre, Clinic
from ehospital.directory.repository import DirectoryRepository
from ehospital.triage.engine import (
    MAX_TEXT,
    CentreEntry,
    ClinicEntry,
    TriageInputError,
    demo_directory,
    detect_language,
    suggest,
)
from ehospital.triage.evaluate import evaluate, load_cases, wilson
from ehospital.triage.lexicon import raw_lexicon, stem
from tests.personas import World

CASES = Path(__file__).parent / "data" / "triage_cases.jsonl"
DEMO = demo_directory()


def top(text: str, directory: list[CentreEntry] | None = None) -> tuple[str | None, str | None]:
    result = suggest(text, directory if directory is not None else DEMO)
    first = result.top
    if first is None or not result.matched:
        return (None, None)
    return (first.centre.code, first.clinic.code if first.clinic else None)


# --- the classifier -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("脸上长了很多痘痘，额头最多", ("skin", "acne")),
        ("my hair is falling out in clumps", ("skin", "hairloss")),
        ("怀孕24周，糖耐量异常", ("diabetes", "gdm")),
        ("dialysis three times a week and my fistula aches", ("kidney", "ckd")),
        ("肾移植后在吃他克莫司", ("kidney", "transplant")),
        ("wheezy at night, using my blue inhaler a lot", ("respiratory", "asthma")),
        ("我爸慢阻肺，走几步就喘", ("respiratory", "copd")),
        ("blood pressure 160/100 on amlodipine", ("cardiology", "hypertension")),
        ("脚踝肿，晚上躺不平", ("cardiology", "hf")),
        ("grandma keeps forgetting things and got lost", ("senior", "memory")),
        ("奶奶这个月摔倒两次", ("senior", "falls")),
        ("my son has haemophilia and a knee bleed", ("rare", "haemophilia")),
        ("孩子确诊脊髓性肌萎缩症", ("rare", "sma")),
    ],
)
def test_each_centre_and_clinic_in_both_languages(text: str, expected: tuple[str, str]) -> None:
    assert top(text) == expected


def test_negated_terms_are_ignored_and_reported() -> None:
    result = suggest("脸上长了很多痘痘，不痒", DEMO)
    assert (result.top and result.top.clinic and result.top.clinic.code) == "acne"
    assert result.negated == ["痒"]
    result = suggest("I have no chest pain, but my ankles are swollen and I need extra pillows", DEMO)
    assert "chest pain" in result.negated
    assert result.emergency is None
    assert top("I have no chest pain, but my ankles are swollen and I need extra pillows") == (
        "cardiology",
        "hf",
    )
    # A negation does not reach past a clause break or "but"
    assert suggest("没有发烧，但是咳嗽有痰", DEMO).negated == []
    assert top("not itchy at all, no rash") == (None, None)
    assert top("我没有糖尿病，就是皮肤很痒")[0] == "skin"


def test_words_that_look_like_negations_are_not() -> None:
    # 无力 / 不稳 / can't: symptoms, not negations
    assert top("走路不稳，腿软，最近摔了一跤") == ("senior", "falls")
    assert top("I can't remember what I did yesterday, my memory is getting worse") == ("senior", "memory")
    # "not sure" hedges, it does not negate
    assert top("I'm not sure, but I think it's acne on my chin") == ("skin", "acne")


def test_reasons_name_the_matched_words() -> None:
    result = suggest("Type 2 diabetes, on metformin, HbA1c is 8", DEMO)
    assert result.top is not None
    terms = {r.term.lower() for r in result.top.reasons}
    assert {"type 2", "metformin", "hba1c"} <= terms
    assert result.top.level == "high" and 0 < result.top.confidence <= 1


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("胸口像压了块石头一样痛，出冷汗", "heart_attack"),
        ("crushing chest pain going down my left arm and I'm sweating", "heart_attack"),
        ("my dad's face is drooping on one side and his speech is slurred", "stroke"),
        ("爸爸突然左边胳膊没力气抬不起来", "stroke"),
        ("I can't breathe properly and my lips look blue", "severe_breathing"),
        ("最近不想活了", "suicide_risk"),
        ("I have been thinking about how to kill myself", "suicide_risk"),
        ("妈妈低血糖，现在糊涂了叫不醒", "severe_hypoglycaemia"),
        ("after the peanut my throat feels tight and I can't breathe", "anaphylaxis"),
    ],
)
def test_red_flags_send_to_the_emergency_department(text: str, flag: str) -> None:
    result = suggest(text, DEMO)
    assert result.emergency is not None and result.emergency.code == flag
    assert "120" in result.emergency.advice


def test_negated_or_mild_symptoms_raise_no_red_flag() -> None:
    for text in (
        "没有胸痛，也不出汗，就是血压有点高",
        "no chest pain and no sweating, just palpitations sometimes",
        "a bit short of breath climbing the stairs",
        "my acne makes me feel low but I am fine otherwise",
    ):
        assert suggest(text, DEMO).emergency is None, text


def test_only_centres_and_clinics_of_the_directory_are_suggested() -> None:
    without_rare = [c for c in DEMO if c.code != "rare"]
    result = suggest("my son has haemophilia and a knee bleed", without_rare)
    assert all(s.centre.code != "rare" for s in result.suggestions)
    only_acne = [CentreEntry("skin", "Skin", "皮肤", (ClinicEntry("acne", "Acne", "痤疮"),))]
    assert top("my hair is falling out in clumps", only_acne) == ("skin", None)


def test_nothing_matching_well_says_so_and_offers_general_practice_if_there_is_one() -> None:
    result = suggest("toothache for three days", DEMO)
    assert not result.matched and result.message and result.suggestions == []
    general = [*DEMO, CentreEntry("general", "General practice", "全科", (), id=99)]
    result = suggest("toothache for three days", general)
    assert not result.matched
    assert result.top is not None and result.top.fallback and result.top.centre.code == "general"
    assert result.top.level == "low"


def test_language_detection_and_disclaimer() -> None:
    assert detect_language("脸上长痘") == "zh"
    assert detect_language("acne on my face") == "en"
    assert detect_language("我的 HbA1c 是 8") == "zh"
    zh = suggest("脸上长痘", DEMO)
    assert zh.lang == "zh" and "不是诊断" in zh.disclaimer
    assert zh.top is not None and zh.top.centre.name("zh") == "皮肤病医院"
    assert "not a diagnosis" in suggest("脸上长痘", DEMO, lang="en").disclaimer


def test_input_is_checked() -> None:
    with pytest.raises(TriageInputError) as empty:
        suggest("   ", DEMO)
    assert empty.value.code == "text_empty"
    with pytest.raises(TriageInputError) as long:
        suggest("痒" * (MAX_TEXT + 1), DEMO)
    assert long.value.code == "text_too_long"


def test_stemming_is_consistent() -> None:
    assert stem("itching") == stem("itches") == "itch"
    assert stem("thinning") == stem("thin")
    assert stem("wheezing") == stem("wheeze") == stem("wheezy")


def test_the_lexicon_covers_every_demo_clinic() -> None:
    lexicon = raw_lexicon()["centres"]
    for code, _en, _zh, _den, _dzh, clinics in CENTRES:
        assert code in lexicon, code
        for clinic, _cen, _czh in clinics:
            assert lexicon[code]["clinics"].get(clinic, {}).get("terms"), (code, clinic)


# --- the labelled set and its accuracy ----------------------------------------------------------


def test_the_labelled_set() -> None:
    cases = load_cases(CASES)
    assert len(cases) >= 120
    assert len({c.id for c in cases}) == len(cases)
    assert sum(c.lang == "zh" for c in cases) >= 50 and sum(c.lang == "en" for c in cases) >= 50
    assert all(c.source.startswith("https://") for c in cases)
    assert all(c.lang == detect_language(c.text) for c in cases)
    assert 0.25 <= sum(c.holdout for c in cases) / len(cases) <= 0.35
    assert sum(c.emergency for c in cases) >= 10
    labelled = {(c.centre, c.clinic) for c in cases}
    for code, _en, _zh, _den, _dzh, clinics in CENTRES:
        for clinic, _cen, _czh in clinics:
            assert (code, clinic) in labelled, (code, clinic)


def test_accuracy_floor() -> None:
    """Set a little below what was measured (docs/PERFORMANCE.md): a regression fails here."""
    groups = evaluate(load_cases(CASES))["groups"]
    floors = {
        "all": {"top1_centre": 0.95, "top1_clinic": 0.93, "top3_centre": 0.97},
        "lang:zh": {"top1_centre": 0.93, "top1_clinic": 0.9},
        "lang:en": {"top1_centre": 0.93, "top1_clinic": 0.9},
        "holdout": {"top1_centre": 0.93, "top1_clinic": 0.9},
    }
    for group, minimum in floors.items():
        for metric, floor in minimum.items():
            assert groups[group][metric]["value"] >= floor, (group, metric, groups[group][metric])
    assert groups["all"]["emergency_recall"]["value"] >= 0.9
    assert groups["all"]["emergency_precision"]["value"] >= 0.9


def test_wilson_interval() -> None:
    low, high = wilson(90, 100)
    assert round(low, 3) == 0.826 and round(high, 3) == 0.945
    assert wilson(0, 0) == (0.0, 1.0)


def test_cli_evaluate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["triage", "evaluate", "--cases", str(CASES), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["groups"]["all"]["cases"] == len(load_cases(CASES))
    assert main(["triage", "evaluate", "--cases", str(CASES)]) == 0
    assert "top-1 centre" in capsys.readouterr().out
    assert main(["triage", "evaluate", "--cases", "/nonexistent.jsonl"]) == 2


# --- the API, on both databases -------------------------------------------------------------


async def seed_directory(session: AsyncSession, world: World) -> dict[str, Centre]:
    """The demo hospital's centres and clinics (those not there already) in the test's transaction."""
    repo = DirectoryRepository(session)
    centres: dict[str, Centre] = {}
    for code, en, zh, den, dzh, clinics in CENTRES:
        centre = await repo.centre_by_code(code)
        if centre is None:
            centre = Centre(
                organisation_id=world.hospital.id,
                code=code,
                name_en=en,
                name_zh=zh,
                description_en=den,
                description_zh=dzh,
            )
            session.add(centre)
            await session.flush()
            for c_code, c_en, c_zh in clinics:
                session.add(Clinic(centre_id=centre.id, code=c_code, name_en=c_en, name_zh=c_zh))
            await session.flush()
        centres[code] = centre
    await session.commit()
    return centres


async def test_api_suggests_a_centre_of_this_deployment(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    centres = await seed_directory(session, world)
    r = await client.post(
        "/api/v1/triage", headers=world.alice.headers, json={"text": "脸上长了很多痘痘，不痒"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["suggestion_only"] is True and body["matched"] is True and body["lang"] == "zh"
    assert "不是诊断" in body["disclaimer"] and body["emergency"] is None
    first = body["suggestions"][0]
    assert first["centre_code"] == "skin" and first["centre_id"] == centres["skin"].id
    assert first["centre_name"] == "皮肤病医院" and first["clinic_code"] == "acne"
    clinics = await DirectoryRepository(session).clinics([centres["skin"].id])
    assert first["clinic_id"] == next(c.id for c in clinics if c.code == "acne")
    assert any(reason["term"] == "痘痘" for reason in first["reasons"])
    assert body["negated"] == ["痒"]

    r = await client.post(
        "/api/v1/triage",
        headers=world.dr_dia.headers,
        json={"text": "crushing chest pain, sweating, pain in my left arm", "lang": "zh"},
    )
    assert r.status_code == 200
    emergency = r.json()["emergency"]
    assert emergency["code"] == "heart_attack" and "120" in emergency["advice"]


async def test_api_without_a_match(client: httpx.AsyncClient, session: AsyncSession, world: World) -> None:
    await seed_directory(session, world)
    r = await client.post(
        "/api/v1/triage", headers=world.alice.headers, json={"text": "toothache", "lang": "en"}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["matched"] is False and body["message"]
    assert all(s["fallback"] or s["level"] == "low" for s in body["suggestions"])


async def test_api_needs_a_signed_in_account(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("/api/v1/triage", json={"text": "acne"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"text": ""}, "text_empty"),
        ({"text": "   \n "}, "text_empty"),
        ({"text": "x" * (MAX_TEXT + 1)}, "text_too_long"),
        ({"text": 123}, "validation_error"),
        ({"text": ["acne"]}, "validation_error"),
        ({"text": None}, "validation_error"),
        ({}, "validation_error"),
        ({"text": "acne", "lang": "fr"}, "validation_error"),
        ({"text": "acne", "extra": 1}, "validation_error"),
        (["acne"], "validation_error"),
    ],
)
async def test_api_bad_input_is_422_with_a_code(
    client: httpx.AsyncClient, world: World, body: object, code: str
) -> None:
    r = await client.post("/api/v1/triage", headers=world.alice.headers, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code


async def test_api_malformed_json_is_the_apps_400(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post(
        "/api/v1/triage",
        headers={**world.alice.headers, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"  # as everywhere
