"""The quality dashboard: exact figures from consultations with known timestamps, who may see
which centre, and refused input; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.quality.service import percentile, today_in_china
from tests.personas import Persona, World, accepted_consultation
from tests.quality_data import FIRST, LAST, quality_story

URL = "/api/v1/quality/dashboard"


async def get(client: httpx.AsyncClient, who: Persona, url: str = URL, **params: str) -> httpx.Response:
    return await client.get(url, headers=who.headers, params=params)


def stats(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "day"}


DAY_2_DIABETES = {
    "requested": 6,
    "completed": 2,
    "expired": 1,
    "cancelled": 1,
    "terminated": 0,
    "open": 2,
    "completion_rate": 0.3333,
    "expiry_rate": 0.1667,
    "cancellation_rate": 0.1667,
    "answered": 3,
    "first_response_p50_s": 900.0,  # 5, 15 and 45 minutes
    "first_response_p90_s": 2340.0,  # 15 + 0.8 × 30 minutes
    "first_response_p95_s": 2520.0,
    "refunds": 0,
    "refund_cents": 0,
}
DAY_3_DIABETES = {
    "requested": 1,
    "completed": 1,
    "expired": 0,
    "cancelled": 0,
    "terminated": 0,
    "open": 0,
    "completion_rate": 1.0,
    "expiry_rate": 0.0,
    "cancellation_rate": 0.0,
    "answered": 1,
    "first_response_p50_s": 3600.0,
    "first_response_p90_s": 3600.0,
    "first_response_p95_s": 3600.0,
    "refunds": 1,
    "refund_cents": 4200,
}


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([1.0, 2.0], 0.5) == 1.5
    values = [float(v) for v in range(10, 1001, 10)]  # 10 … 1000 seconds; answers to 0.1 s
    assert (percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.95)) == (
        505.0,
        901.0,
        950.5,
    )


async def test_the_manager_sees_exact_figures_of_their_centre(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    r = await get(client, world.manager, **{"from": FIRST, "to": LAST})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["first_day"], body["last_day"], body["timezone"]) == (FIRST, LAST, "Asia/Shanghai")
    assert [c["code"] for c in body["centres"]] == ["t-diabetes"]
    assert [d["day"] for d in body["days"]] == [FIRST, LAST]
    assert stats(body["days"][0]) == DAY_2_DIABETES
    assert stats(body["days"][1]) == DAY_3_DIABETES
    assert body["totals"] == {
        "requested": 7,
        "completed": 3,
        "expired": 1,
        "cancelled": 1,
        "terminated": 0,
        "open": 2,
        "completion_rate": 0.4286,
        "expiry_rate": 0.1429,
        "cancellation_rate": 0.1429,
        "answered": 4,
        "first_response_p50_s": 1800.0,  # 5, 15, 45, 60 minutes
        "first_response_p90_s": 3330.0,
        "first_response_p95_s": 3465.0,
        "refunds": 1,
        "refund_cents": 4200,
    }
    [centre] = body["by_centre"]
    assert centre["totals"] == body["totals"] and centre["days"] == body["days"]

    doctors = {d["name"]: d for d in body["doctors"]}
    assert set(doctors) == {"dr.dia", "dr.dia2"}  # verified doctors of the centre; not dr.new
    assert doctors["dr.dia"] | {"doctor_id": 0} == {
        "doctor_id": 0,
        "name": "dr.dia",
        "centre_id": world.diabetes.id,
        "accepted": 2,
        "completed": 3,  # c0 was requested the day before but completed in the period
        "messages": 3,
        "answered": 2,
        "first_response_p50_s": 600.0,
        "open_now": 0,
    }
    dia2 = doctors["dr.dia2"]
    assert (dia2["accepted"], dia2["completed"], dia2["messages"], dia2["open_now"]) == (2, 1, 2, 1)
    assert (dia2["answered"], dia2["first_response_p50_s"]) == (2, 3150.0)


async def test_the_admin_sees_every_centre_or_the_one_named(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    body = (await get(client, world.admin, **{"from": FIRST, "to": LAST})).json()
    by_code = {c["centre"]["code"]: c for c in body["by_centre"]}
    assert {"t-diabetes", "t-skin"} <= set(by_code)
    assert [stats(d) for d in by_code["t-diabetes"]["days"]] == [DAY_2_DIABETES, DAY_3_DIABETES]
    skin_day = by_code["t-skin"]["days"][0]
    assert (skin_day["requested"], skin_day["completed"], skin_day["first_response_p50_s"]) == (1, 1, 600.0)
    assert (skin_day["refunds"], skin_day["refund_cents"]) == (1, 999)
    day2 = body["days"][0]
    assert (day2["requested"], day2["answered"], day2["first_response_p50_s"]) == (7, 4, 750.0)
    assert (body["totals"]["refunds"], body["totals"]["refund_cents"]) == (2, 5199)
    assert {"dr.dia", "dr.dia2", "dr.skin"} <= {d["name"] for d in body["doctors"]}

    for centre in ("t-skin", str(world.skin.id)):
        one = (await get(client, world.admin, centre=centre, **{"from": FIRST, "to": LAST})).json()
        assert [c["code"] for c in one["centres"]] == ["t-skin"]
        assert one["totals"]["requested"] == 1 and [d["name"] for d in one["doctors"]] == ["dr.skin"]


async def test_the_csv_has_a_row_per_day_and_centre(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    r = await get(client, world.manager, f"{URL}.csv", **{"from": FIRST, "to": LAST})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert f'filename="quality-{FIRST}-{LAST}.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["day"], row["centre_code"]) for row in rows] == [(FIRST, "t-diabetes"), (LAST, "t-diabetes")]
    assert rows[0]["requested"] == "6" and rows[0]["first_response_p90_s"] == "2340.0"
    assert rows[1]["refund_cents"] == "4200" and rows[1]["completion_rate"] == "1.0"


async def test_a_consultation_through_the_api_counts_today(client: httpx.AsyncClient, world: World) -> None:
    c = await accepted_consultation(client, world)
    body = (await get(client, world.manager)).json()
    assert len(body["days"]) == 14 and body["last_day"] == today_in_china().isoformat()
    assert body["totals"]["requested"] == 1 and body["totals"]["answered"] == 0  # "accepted" is no answer
    sent = await client.post(
        f"/api/v1/consultations/{c['id']}/messages", headers=world.dr_dia.headers, json={"body": "Hello"}
    )
    assert sent.status_code == 201
    body = (await get(client, world.manager)).json()
    assert body["totals"]["answered"] == 1 and body["totals"]["open"] == 1
    assert body["totals"]["first_response_p50_s"] is not None and body["totals"]["first_response_p50_s"] >= 0
    dia = next(d for d in body["doctors"] if d["doctor_id"] == world.dr_dia.doctor_id)
    assert (dia["accepted"], dia["messages"], dia["answered"], dia["open_now"]) == (1, 1, 1, 1)


async def test_an_empty_period_has_every_day_and_no_figures(client: httpx.AsyncClient, world: World) -> None:
    body = (await get(client, world.manager, **{"from": "2020-02-28", "to": "2020-03-01"})).json()
    assert [d["day"] for d in body["days"]] == ["2020-02-28", "2020-02-29", "2020-03-01"]
    assert body["totals"]["requested"] == 0 and body["totals"]["completion_rate"] is None
    assert body["totals"]["first_response_p50_s"] is None
    assert {d["name"] for d in body["doctors"]} == {"dr.dia", "dr.dia2"}


@pytest.mark.parametrize("name", ["alice", "dr_dia", "pharmacist"])
async def test_other_roles_are_refused(client: httpx.AsyncClient, world: World, name: str) -> None:
    who: Persona = getattr(world, name)
    for url in (URL, f"{URL}.csv"):
        r = await get(client, who, url)
        assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role", (name, url)


async def test_a_manager_cannot_see_another_centre(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    await quality_story(session, world)
    for centre in ("t-skin", str(world.skin.id)):
        r = await get(client, world.manager, centre=centre)
        assert r.status_code == 404 and r.json()["error"]["code"] == "centre_not_found"
    mine = await get(client, world.manager, centre="t-diabetes")
    assert mine.status_code == 200
    assert (await client.get(URL)).status_code == 401


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"from": "2026-03-05", "to": "2026-03-01"}, 422, "date_range_reversed"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, 422, "date_range_too_long"),
        ({"from": "2026-02-30"}, 422, "invalid_date"),
        ({"to": "yesterday"}, 422, "invalid_date"),
        ({"from": "20260301"}, 422, "invalid_date"),
        ({"from": "0001-01-01", "to": "0001-01-02"}, 422, "invalid_date"),
        ({"from": "9999-12-30", "to": "9999-12-31"}, 422, "invalid_date"),
        ({"from": "2026-03-01" * 4}, 422, "validation_error"),
        ({"centre": "no-such-centre"}, 404, "centre_not_found"),
        ({"centre": "9" * 30}, 404, "centre_not_found"),
        ({"centre": "x" * 40}, 404, "centre_not_found"),
    ],
)
async def test_bad_input_is_refused_with_a_code(
    client: httpx.AsyncClient, world: World, params: dict[str, str], status: int, code: str
) -> None:
    r = await get(client, world.admin, **params)
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text


async def test_a_whole_year_and_a_day_is_the_limit(client: httpx.AsyncClient, world: World) -> None:
    start = date(2024, 1, 1)
    ok = await get(
        client, world.admin, **{"from": start.isoformat(), "to": (start + timedelta(days=365)).isoformat()}
    )
    assert ok.status_code == 200 and len(ok.json()["days"]) == 366
    only_to = await get(client, world.admin, to="2024-03-14")
    assert only_to.json()["first_day"] == "2024-03-01"
