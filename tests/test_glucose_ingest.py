"""Glucose uploads through the API: our JSON, FHIR Observations and Nightscout entries; devices
registered to patients; duplicates, per-item errors, retries; reading back in local time."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.glucose.models import Reading
from tests.personas import Persona, World

CHINA = timezone(timedelta(hours=8))


async def register(
    client: httpx.AsyncClient, who: Persona, patient_id: int, **overrides: Any
) -> dict[str, Any]:
    body = {"kind": "cgm", "label": "Sibionics GS1", "unit": "mmol/L", **overrides}
    r = await client.post(f"/api/v1/patients/{patient_id}/glucose/devices", headers=who.headers, json=body)
    assert r.status_code == 201, r.text
    device: dict[str, Any] = r.json()
    return device


def minutes_ago(n: float) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=n)).replace(microsecond=0)


async def count_readings(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Reading)) or 0)


async def test_register_device_gives_a_secret_once(client: httpx.AsyncClient, world: World) -> None:
    alice = world.alice
    device = await register(client, alice, alice.family[0].id)
    assert device["secret"].startswith("gs_")
    assert device["api_secret"] == hashlib.sha1(device["secret"].encode()).hexdigest()
    assert device["mqtt_topic"] == f"ehospital/glucose/{device['uid']}/readings"
    listed = (
        await client.get(f"/api/v1/patients/{alice.family[0].id}/glucose/devices", headers=alice.headers)
    ).json()
    assert [d["uid"] for d in listed] == [device["uid"]]
    assert "secret" not in listed[0] and "api_secret" not in listed[0]
    # Someone else's family member, a doctor, bad input.
    r = await client.post(
        f"/api/v1/patients/{world.bob.family[0].id}/glucose/devices",
        headers=alice.headers,
        json={"kind": "cgm", "label": "x"},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "patient_not_found"
    r = await client.post(
        f"/api/v1/patients/{alice.family[0].id}/glucose/devices",
        headers=world.dr_dia.headers,
        json={"kind": "cgm", "label": "x"},
    )
    assert r.status_code == 403
    r = await client.post(
        f"/api/v1/patients/{alice.family[0].id}/glucose/devices",
        headers=alice.headers,
        json={"kind": "pump", "label": "x"},
    )
    assert r.status_code == 422


async def test_bulk_json_mixed_batch_stores_the_good_and_lists_the_bad(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    alice = world.alice
    device = await register(client, alice, alice.family[0].id)
    url = f"/api/v1/glucose/devices/{device['uid']}/readings"
    t0 = minutes_ago(60).astimezone(CHINA)
    items: list[Any] = [
        {"time": t0.isoformat(), "value": 6.1},  # device unit mmol/L
        {"time": (t0 + timedelta(minutes=5)).isoformat(), "value": 120, "unit": "mg/dL"},
        {"time": "yesterday", "value": 6.0},
        {"time": (t0 + timedelta(minutes=10)).isoformat(), "value": "high"},
        {"time": (t0 + timedelta(minutes=15)).isoformat(), "value": 45.0},  # mmol/L: impossible
        {"time": (t0 + timedelta(days=2)).isoformat(), "value": 6.0},
        {"time": (t0 + timedelta(minutes=20)).isoformat(), "value": 6.0, "unit": "mmol"},
        {"time": (t0 + timedelta(minutes=25)).isoformat(), "value": 6.0, "colour": "red"},
        "not an object",
        # Naive: the device's offset (+08:00) applies.
        {"time": (t0 + timedelta(minutes=30)).replace(tzinfo=None).isoformat(), "value": 7.2},
        {"time": t0.isoformat(), "value": 6.1},  # the first one again, in the same batch
    ]
    r = await client.post(url, headers=alice.headers, json=items)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["received"], body["stored"], body["duplicates"], body["rejected"]) == (11, 3, 1, 7)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (2, "invalid_time"),
        (3, "invalid_value"),
        (4, "value_out_of_range"),
        (5, "time_in_future"),
        (6, "invalid_unit"),
        (7, "unknown_field"),
        (8, "invalid_item"),
    ]
    assert await count_readings(session) == 3
    # The retry after a dropped connection stores nothing twice.
    again = (await client.post(url, headers=alice.headers, json=items)).json()
    assert (again["stored"], again["duplicates"]) == (0, 4)
    assert await count_readings(session) == 3

    r = await client.get(
        f"/api/v1/patients/{alice.family[0].id}/glucose/readings",
        headers=alice.headers,
        params={"start": minutes_ago(120).isoformat(), "end": datetime.now(UTC).isoformat()},
    )
    readings = r.json()["readings"]
    assert [(x["value"], x["unit"]) for x in readings] == [(6.1, "mmol/L"), (120.0, "mg/dL"), (7.2, "mmol/L")]
    assert readings[0]["mgdl"] == pytest.approx(6.1 * 18, abs=0.05)
    assert all(x["utc_offset_minutes"] == 480 for x in readings)
    assert datetime.fromisoformat(readings[2]["time"]) == t0 + timedelta(minutes=30)


async def test_upload_refusals(client: httpx.AsyncClient, world: World, session: AsyncSession) -> None:
    alice = world.alice
    device = await register(client, alice, alice.family[0].id)
    url = f"/api/v1/glucose/devices/{device['uid']}/readings"
    r = await client.post(
        url,
        headers=alice.headers,
        content=b"{not json",
    )
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed_json")
    r = await client.post(url, headers=alice.headers, json={"time": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_upload")
    r = await client.post(url, headers=alice.headers, json=[{"time": "x", "value": 6}])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "no_valid_readings")
    assert r.json()["error"]["details"]["errors"][0]["code"] == "invalid_time"
    r = await client.post(url, headers=alice.headers, json=[{"value": 5}] * 50_001)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_readings")
    r = await client.post(url, json=[])
    assert (r.status_code, r.json()["error"]["code"]) == (401, "api_secret_missing")
    r = await client.post(url, headers={"api-secret": "0" * 40}, json=[])
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_api_secret")
    # Bob's token, or another device's secret, for Alice's device.
    r = await client.post(url, headers=world.bob.headers, json=[])
    assert r.status_code == 404
    other = await register(client, alice, alice.family[1].id)
    r = await client.post(url, headers={"api-secret": other["api_secret"]}, json=[])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "device_not_found")
    assert await count_readings(session) == 0
    # A retired device takes nothing more.
    r = await client.post(f"/api/v1/glucose/devices/{device['uid']}/retire", headers=alice.headers)
    assert r.status_code == 200 and r.json()["retired_at"]
    r = await client.post(url, headers={"api-secret": device["api_secret"]}, json=[])
    assert (r.status_code, r.json()["error"]["code"]) == (401, "device_retired")


def observation(loinc: str, value: float, unit: str, when: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        "effectiveDateTime": when.isoformat(),
    }


async def test_fhir_bundle_with_every_glucose_code(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    alice = world.alice
    device = await register(client, alice, alice.family[0].id, kind="meter", unit="mg/dL")
    t = minutes_ago(600).astimezone(CHINA)
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": observation("99504-3", 140, "mg/dL", t)},
            {"resource": observation("105272-9", 7.5, "mmol/L", t + timedelta(minutes=5))},
            {"resource": observation("41653-7", 98, "mg/dL", t + timedelta(minutes=10))},
            {"resource": observation("14743-9", 5.4, "mmol/L", t + timedelta(minutes=15))},
            {"resource": observation("2345-7", 5.4, "mmol/L", t + timedelta(minutes=20))},  # serum glucose
            {"resource": observation("14743-9", 100, "mg/dL", t + timedelta(minutes=25))},  # wrong unit
            {"resource": {"resourceType": "Patient"}},
        ],
    }
    r = await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers={"api-secret": device["api_secret"], "content-type": "application/fhir+json"},
        json=bundle,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["stored"], body["rejected"]) == (4, 3)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [
        (4, "unsupported_code"),
        (5, "invalid_unit"),
        (6, "not_an_observation"),
    ]
    kinds = (await session.execute(select(Reading.kind, Reading.source).order_by(Reading.measured_at))).all()
    assert [tuple(k) for k in kinds] == [("cgm", "fhir"), ("cgm", "fhir"), ("smbg", "fhir"), ("smbg", "fhir")]
    r = await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers=alice.headers,
        json={"resourceType": "Condition"},
    )
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_fhir")


async def test_nightscout_upload_and_read_back(client: httpx.AsyncClient, world: World) -> None:
    alice = world.alice
    device = await register(client, alice, alice.family[0].id, unit="mg/dL")
    secret = {"api-secret": device["api_secret"]}
    base = minutes_ago(30)
    ms = int(base.timestamp() * 1000)
    entries = [
        {
            "type": "sgv",
            "sgv": 110,
            "date": ms,
            "dateString": base.isoformat(),
            "direction": "Flat",
            "device": "xDrip-DexcomG6",
            "utcOffset": 480,
        },
        {
            "type": "sgv",
            "sgv": 118,
            "date": ms + 300_000,
            "direction": "FortyFiveUp",
            "device": "xDrip-DexcomG6",
        },
        {"type": "sgv", "sgv": 5, "date": ms + 600_000},  # a sensor status code
        {"type": "cal", "slope": 1000, "date": ms},
        {"type": "mbg", "mbg": 126, "date": ms + 900_000},
    ]
    r = await client.post("/api/v1/entries", headers=secret, json=entries)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert len(answer) == 5
    assert answer[0]["_id"] == f"{device['uid']}-{ms}" and answer[0]["sgv"] == 110
    assert answer[2]["error"]["code"] == "sensor_error"
    assert answer[3]["error"]["code"] == "unsupported_type"
    # xDrip+ re-sends its backlog: nothing is stored twice.
    assert (await client.post("/api/v1/entries.json", headers=secret, json=entries[0])).status_code == 200

    got = (await client.get("/api/v1/entries.json", headers=secret, params={"count": 2})).json()
    assert [(e["type"], e.get("sgv"), e.get("mbg")) for e in got] == [("mbg", None, 126), ("sgv", 118, None)]
    assert got[1]["utcOffset"] == 480 and got[1]["dateString"].endswith("+08:00")
    sgv = (await client.get("/api/v1/entries/sgv.json", headers=secret, params={"count": 10})).json()
    assert [e["sgv"] for e in sgv] == [118, 110]
    since = (
        await client.get("/api/v1/entries", headers=secret, params={"find[date][$gt]": str(ms), "count": 10})
    ).json()
    assert [e["date"] for e in since] == [ms + 900_000, ms + 300_000]
    assert (await client.get("/api/v1/entries", params={"count": 1})).status_code == 401
    r = await client.get("/api/v1/entries", headers=secret, params={"count": "many"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "invalid_count")
    status = (await client.get("/api/v1/status.json", headers=secret)).json()
    assert status["authorized"] is True and status["settings"]["units"] == "mg/dl"
    # A wrong secret is 401, never someone else's data.
    r = await client.get("/api/v1/entries", headers={"api-secret": hashlib.sha1(b"guess").hexdigest()})
    assert r.status_code == 401


async def test_doctors_see_readings_of_their_patients_only(client: httpx.AsyncClient, world: World) -> None:
    from tests.personas import accepted_consultation

    alice = world.alice
    await accepted_consultation(client, world)
    device = await register(client, alice, alice.family[0].id)
    t = minutes_ago(10)
    await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers=alice.headers,
        json=[{"time": t.isoformat(), "value": 6.5}],
    )
    url = f"/api/v1/patients/{alice.family[0].id}/glucose/readings"
    assert len((await client.get(url, headers=world.dr_dia.headers)).json()["readings"]) == 1
    assert (await client.get(url, headers=world.dr_skin.headers)).status_code == 404
    assert (await client.get(url, headers=world.bob.headers)).status_code == 404
    r = await client.get(url, headers=alice.headers, params={"start": "2026-01-01T00:00:00"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "naive_time")


async def test_a_large_upload_is_stored_whole_and_once(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    """More readings than one statement carries (SQLite takes them 3,000 at a time)."""
    alice = world.alice
    device = await register(client, alice, alice.family[0].id, unit="mg/dL")
    first = minutes_ago(7001)
    items = [{"time": (first + timedelta(minutes=i)).isoformat(), "value": 100 + i % 50} for i in range(7000)]
    url = f"/api/v1/glucose/devices/{device['uid']}/readings"
    r = await client.post(url, headers={"api-secret": device["api_secret"]}, json=items)
    assert (r.json()["stored"], r.json()["duplicates"]) == (7000, 0)
    r = await client.post(url, headers={"api-secret": device["api_secret"]}, json=items[3500:] + items[:10])
    assert (r.json()["stored"], r.json()["duplicates"]) == (0, 3510)
    assert await count_readings(session) == 7000
    total = await session.scalar(select(func.sum(Reading.mgdl)))
    assert total == pytest.approx(sum(100 + i % 50 for i in range(7000)))
