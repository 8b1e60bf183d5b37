"""Two real server processes of one deployment on PostgreSQL + Redis: chat across them, and kill
one mid-conversation — its clients reconnect to the other and lose nothing, and nothing is
stored twice."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat_client import ChatClient, history, rest, token_of
from tests.conftest import drop_database, make_database
from tests.live import IN_CI, Cluster, live_cluster
from tests.test_chat_live import open_consultation

REDIS_URL = os.environ.get("EHOSPITAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_up() -> None:
    host, port = "127.0.0.1", 6379
    rest_of = REDIS_URL.split("://", 1)[-1].split("/", 1)[0]
    if ":" in rest_of:
        host, port_text = rest_of.rsplit(":", 1)
        port = int(port_text)
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {exc}")


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    _redis_up()
    data: Path = tmp_path_factory.mktemp("chat-cluster")
    url, name = await make_database("postgresql", data)
    assert name is not None
    try:
        with live_cluster(
            data, 2, {"EHOSPITAL_DATABASE_URL": url, "EHOSPITAL_BROKER_URL": REDIS_URL}
        ) as running:
            yield running
    finally:
        await drop_database(name)


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> dict[str, Any]:
    base = cluster.bases[0]
    patient = token_of(base, "patient", "patient-demo-1")
    doctor = token_of(base, "dr.lin", "doctor-demo-1")
    return {"patient": patient, "doctor": doctor, "cid": open_consultation(base, patient, doctor)}


async def test_two_processes_share_messages_typing_and_presence(
    cluster: Cluster, world: dict[str, Any]
) -> None:
    a, b = cluster.bases
    patient = ChatClient(a, world["patient"], world["cid"])
    doctor = ChatClient(b, world["doctor"], world["cid"])
    await patient.connect()
    await doctor.connect()
    try:
        await doctor.wait_for(lambda: doctor.last_seq == doctor.welcome["last_seq"])  # type: ignore[index]
        start = doctor.last_seq
        for i in range(20):
            await patient.send(f"a-{i}", f"患者经进程A发送 {i}")
            await doctor.send(f"b-{i}", f"医生经进程B发送 {i}")
        await patient.wait_for(lambda: patient.last_seq == start + 40)
        await doctor.wait_for(lambda: doctor.last_seq == start + 40)
        # Both sides saw the same 40 messages in the same order.
        assert [m["seq"] for m in patient.messages[-40:]] == list(range(start + 1, start + 41))
        assert [m["id"] for m in patient.messages[-40:]] == [m["id"] for m in doctor.messages[-40:]]
        await doctor.raw({"type": "typing"})
        await patient.wait_for(
            lambda: any(e["type"] == "typing" and e["role"] == "doctor" for e in patient.events)
        )
        await patient.wait_for(
            lambda: any(e["type"] == "presence" and len(e["present"]) == 2 for e in patient.events)
        )
        # A message posted over REST to process B reaches the socket held by process A.
        posted = await rest(
            b,
            world["doctor"],
            "POST",
            f"/api/v1/consultations/{world['cid']}/messages",
            json={"body": "REST 经 B"},
        )
        assert posted.status_code == 201
        await patient.wait_for(lambda: patient.last_seq == posted.json()["seq"])
    finally:
        await patient.close()
        await doctor.close()


async def test_killing_a_process_mid_conversation_loses_nothing(
    cluster: Cluster, world: dict[str, Any]
) -> None:
    a, b = cluster.bases
    patient = ChatClient(a, world["patient"], world["cid"])
    doctor = ChatClient(b, world["doctor"], world["cid"])
    await patient.connect()
    await doctor.connect()
    await patient.wait_for(lambda: patient.last_seq == patient.welcome["last_seq"])  # type: ignore[index]
    await doctor.wait_for(lambda: doctor.last_seq == doctor.welcome["last_seq"])  # type: ignore[index]

    async def doctor_talks() -> None:
        for i in range(30):
            await doctor.send(f"kill-d-{i}", f"医生 {i}")
            await asyncio.sleep(0.02)

    talking = asyncio.create_task(doctor_talks())
    for i in range(30):
        await patient.send(f"kill-p-{i}", f"患者 {i}")
        if i == 10:
            cluster.kill(0)  # process A dies with the patient's socket and whatever it was doing
        await asyncio.sleep(0.01)
    await talking
    await patient.close()
    assert patient.unacked, "the kill should have left some of the patient's messages unacknowledged"

    # The patient's app reconnects to the surviving process, resumes and resends.
    await patient.connect(b)
    await patient.wait_for(lambda: not patient.unacked, 20)
    await doctor.wait_for(lambda: all(f"kill-d-{i}" in doctor.acks for i in range(30)), 20)
    stored = await history(b, world["doctor"], world["cid"])
    last = stored[-1]["seq"]
    await patient.wait_for(lambda: patient.last_seq == last, 20)
    await doctor.wait_for(lambda: doctor.last_seq == last, 20)
    try:
        bodies = [m["body"] for m in stored]
        for i in range(30):
            assert bodies.count(f"患者 {i}") == 1, f"患者 {i} stored {bodies.count(f'患者 {i}')} times"
            assert bodies.count(f"医生 {i}") == 1
        # Each side's messages are stored in the order they were sent.
        assert [b for b in bodies if b.startswith("患者 ")][-30:] == [f"患者 {i}" for i in range(30)]
        assert [b for b in bodies if b.startswith("医生 ")][-30:] == [f"医生 {i}" for i in range(30)]
        # Both clients hold the whole history exactly once, in order (ChatClient asserts the order).
        assert [m["seq"] for m in stored] == list(range(stored[0]["seq"], last + 1))
        assert [m["id"] for m in patient.messages if m["seq"] >= stored[0]["seq"]] == [
            m["id"] for m in stored
        ]
        assert [m["id"] for m in doctor.messages if m["seq"] >= stored[0]["seq"]] == [m["id"] for m in stored]
    finally:
        await patient.close()
        await doctor.close()
