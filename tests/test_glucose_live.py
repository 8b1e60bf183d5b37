"""Uploads to a running server: Nightscout-style over HTTP, and over MQTT through the real
Mosquitto broker on this machine and the bridge `ehospital serve` starts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx
import pytest

from tests.live import IN_CI, live_server

MQTT_HOST = os.environ.get("EHOSPITAL_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("EHOSPITAL_TEST_MQTT_PORT", "1883"))


def _broker_up() -> None:
    try:
        socket.create_connection((MQTT_HOST, MQTT_PORT), timeout=2).close()
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"Mosquitto is not reachable at {MQTT_HOST}:{MQTT_PORT}: {exc}")
        pytest.skip(f"Mosquitto is not reachable at {MQTT_HOST}:{MQTT_PORT}: {exc}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with the MQTT bridge, and beside it a second deployment (its own database) on
    the same broker: each must receive its own devices' messages, never the other's."""
    _broker_up()
    broker = {"EHOSPITAL_MQTT_URL": f"mqtt://{MQTT_HOST}:{MQTT_PORT}"}
    with (
        live_server(tmp_path_factory.mktemp("glucose-other"), broker),
        live_server(tmp_path_factory.mktemp("glucose-live"), broker) as base,
    ):
        yield base


def _signed_in(base: str, member: int) -> tuple[httpx.Client, int]:
    client = httpx.Client(base_url=base, timeout=30)
    token = client.post("/api/v1/auth/token", data={"username": "patient", "password": "patient-demo-1"})
    assert token.status_code == 200, token.text
    client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    family = client.get("/api/v1/patients").json()
    return client, family[member]["id"]  # demo family members without readings


def _device(client: httpx.Client, patient_id: int, unit: str) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/patients/{patient_id}/glucose/devices",
        json={"kind": "cgm", "label": "live test", "unit": unit},
    )
    assert r.status_code == 201, r.text
    device: dict[str, Any] = r.json()
    return device


def test_nightscout_uploader_against_a_running_server(server: str) -> None:
    client, patient_id = _signed_in(server, -1)
    device = _device(client, patient_id, "mg/dL")
    uploader = httpx.Client(base_url=server, timeout=30, headers={"api-secret": device["api_secret"]})
    now = datetime.now(UTC).replace(microsecond=0)
    entries = [
        {
            "type": "sgv",
            "sgv": 100 + i,
            "date": int((now - timedelta(minutes=5 * (12 - i))).timestamp() * 1000),
            "direction": "Flat",
            "device": "xDrip-LibreReceiver",
        }
        for i in range(12)
    ]
    r = uploader.post("/api/v1/entries", json=entries)
    assert r.status_code == 200, r.text
    assert all("_id" in e for e in r.json())
    assert uploader.post("/api/v1/entries", json=entries).status_code == 200  # re-sent backlog
    got = uploader.get("/api/v1/entries.json", params={"count": 100}).json()
    assert [e["sgv"] for e in got] == [111 - i for i in range(12)]
    assert uploader.get("/api/v1/status.json").json()["authorized"] is True
    wrong = httpx.Client(base_url=server, headers={"api-secret": hashlib.sha1(b"wrong").hexdigest()})
    assert wrong.post("/api/v1/entries", json=entries).status_code == 401


async def test_mqtt_readings_reach_the_server_and_are_acknowledged(server: str) -> None:
    client, patient_id = _signed_in(server, -2)
    device = _device(client, patient_id, "mmol/L")
    uid = device["uid"]
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        {"time": (now - timedelta(minutes=5 * i)).isoformat(), "value": 5.5 + i / 10} for i in range(6)
    ]
    readings.append({"time": "garbage", "value": 6.0})
    acks: list[dict[str, Any]] = []
    async with aiomqtt.Client(MQTT_HOST, MQTT_PORT, identifier=f"test-device-{uid}") as mqtt:
        await mqtt.subscribe(f"ehospital/glucose/{uid}/acks", qos=1)

        async def publish(message: dict[str, Any]) -> dict[str, Any]:
            await mqtt.publish(f"ehospital/glucose/{uid}/readings", json.dumps(message), qos=1)
            async with asyncio.timeout(20):
                async for incoming in mqtt.messages:
                    assert isinstance(incoming.payload, bytes | bytearray)
                    ack: dict[str, Any] = json.loads(incoming.payload)
                    acks.append(ack)
                    return ack
            raise AssertionError("no acknowledgement")

        # The bridge may still be subscribing just after start-up: retry until acknowledged.
        first: dict[str, Any] | None = None
        for _ in range(10):
            try:
                first = await publish({"api_secret": device["api_secret"], "id": "m1", "readings": readings})
                break
            except TimeoutError:
                continue
        assert first is not None, "the bridge never answered"
        assert first["ok"] and first["id"] == "m1"
        assert (first["stored"], first["rejected"]) == (6, 1)
        assert first["errors"][0] == {
            "index": 6,
            "code": "invalid_time",
            "message": first["errors"][0]["message"],
        }
        # The device did not see the ack and re-sends: nothing is stored twice.
        again = await publish({"api_secret": device["api_secret"], "id": "m1", "readings": readings})
        assert (again["stored"], again["duplicates"]) == (0, 6)
        # One reading on its own, a wrong secret, a payload that is not JSON.
        single = await publish({"api_secret": device["api_secret"], "time": now.isoformat(), "value": 5.0})
        assert single["ok"] and single["duplicates"] == 1
        wrong = await publish({"api_secret": "0" * 40, "readings": readings})
        assert wrong == {
            "ok": False,
            "error": {"code": "invalid_api_secret", "message": wrong["error"]["message"]},
        }
        await mqtt.publish(f"ehospital/glucose/{uid}/readings", b"\xff not json", qos=1)
        async with asyncio.timeout(20):
            async for incoming in mqtt.messages:
                assert isinstance(incoming.payload, bytes | bytearray)
                assert json.loads(incoming.payload)["error"]["code"] == "malformed_json"
                break

    start = (now - timedelta(hours=1)).isoformat()
    stored = client.get(
        f"/api/v1/patients/{patient_id}/glucose/readings",
        params={"start": start, "end": (now + timedelta(minutes=1)).isoformat()},
    ).json()["readings"]
    assert [x["value"] for x in stored] == [6.0, 5.9, 5.8, 5.7, 5.6, 5.5]
    assert all(x["unit"] == "mmol/L" for x in stored)
