"""Live chat over WebSocket against a real server process (on SQLite and on PostgreSQL, with the
in-memory broker): ack after storage, delivery, resume after a reconnect, resend without duplicates, typing, read
receipts, REST and WebSocket side by side, and every refusal with its reason."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.chat_client import ChatClient, history, rest, token_of, ws_url
from tests.conftest import drop_database, make_database
from tests.live import live_server


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (250, 245, 240)).save(buffer, "PNG")
    return buffer.getvalue()


def open_consultation(
    base: str,
    patient_token: str,
    doctor_token: str,
    doctor_name: str = "林芳 Lin Fang",
    *,
    member_name: str = "李娜 Li Na",
    accept: bool = True,
) -> int:
    """A follow-up consultation of a demo family member in the skin centre, accepted by the
    doctor (unless `accept` is False)."""
    patient = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {patient_token}"}, timeout=30)
    doctor = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {doctor_token}"}, timeout=30)
    member = next(p for p in patient.get("/api/v1/patients").json() if p["name"] == member_name)
    centre = next(c for c in patient.get("/api/v1/centres").json() if c["code"] == "skin")
    doctors = patient.get("/api/v1/doctors", params={"centre_id": centre["id"]}).json()
    chosen = next(d for d in doctors if d["name"] == doctor_name)
    upload = patient.post(
        "/api/v1/uploads?purpose=evidence", files={"file": ("病历.png", _png(), "image/png")}
    )
    assert upload.status_code == 201, upload.text
    opened = patient.post(
        "/api/v1/consultations",
        json={
            "patient_id": member["id"],
            "centre_id": centre["id"],
            "visit_type": "follow_up",
            "complaint": "面部痤疮复诊，想调整外用药。",
            "prior_diagnosis": "寻常痤疮",
            "evidence_ids": [upload.json()["id"]],
            "doctor_id": chosen["id"],
        },
    )
    assert opened.status_code == 201, opened.text
    cid: int = opened.json()["id"]
    if accept:
        accepted = doctor.post(f"/api/v1/consultations/{cid}/accept")
        assert accepted.status_code == 200, accepted.text
    return cid


_BACKEND_OF: dict[str, str] = {}  # server URL → its database
_DATABASE_OF: dict[str, str] = {}  # server URL → its database URL


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A live server on each database: PostgreSQL stores chat text in batches (group commit),
    SQLite one message per transaction; the protocol must not tell them apart."""
    data = tmp_path_factory.mktemp("chat-live")
    url, name = await make_database(request.param, data)
    try:
        with live_server(data, {"EHOSPITAL_DATABASE_URL": url}) as base:
            _BACKEND_OF[base] = request.param
            _DATABASE_OF[base] = url
            yield base
    finally:
        if name is not None:
            await drop_database(name)


@pytest.fixture(scope="module")
def world(server: str) -> dict[str, Any]:
    patient = token_of(server, "patient", "patient-demo-1")
    doctor = token_of(server, "dr.lin", "doctor-demo-1")
    return {"patient": patient, "doctor": doctor, "cid": open_consultation(server, patient, doctor)}


async def _pair(server: str, world: dict[str, Any]) -> tuple[ChatClient, ChatClient]:
    patient = ChatClient(server, world["patient"], world["cid"])
    doctor = ChatClient(server, world["doctor"], world["cid"])
    await patient.connect()
    await doctor.connect()
    # Both start from the same history (the system lines of opening and accepting).
    await patient.wait_for(lambda: patient.last_seq == patient.welcome["last_seq"])  # type: ignore[index]
    await doctor.wait_for(lambda: doctor.last_seq == doctor.welcome["last_seq"])  # type: ignore[index]
    return patient, doctor


async def test_a_message_is_acknowledged_after_it_is_stored_and_reaches_the_other_side(
    server: str, world: dict[str, Any]
) -> None:
    patient, doctor = await _pair(server, world)
    try:
        start = patient.last_seq
        await patient.send("p-1", "医生您好，这周脸上又长了几颗。")
        await patient.wait_for(lambda: "p-1" in patient.acks)
        assert patient.acks["p-1"] == start + 1
        # Acknowledged means stored: the REST history has it already.
        history = (
            await rest(
                server,
                world["doctor"],
                "GET",
                f"/api/v1/consultations/{world['cid']}/messages",
                params={"after_seq": start},
            )
        ).json()
        assert [(m["seq"], m["body"], m["client_id"]) for m in history] == [
            (start + 1, "医生您好，这周脸上又长了几颗。", "p-1")
        ]
        await doctor.wait_for(lambda: doctor.last_seq == start + 1)
        assert doctor.messages[-1]["body"] == "医生您好，这周脸上又长了几颗。"
        assert doctor.messages[-1]["sender_role"] == "patient"
        await doctor.send("d-1", "请拍一张正面照片，光线充足。")
        await patient.wait_for(lambda: patient.last_seq == start + 2)
        assert patient.bodies()[-1] == "请拍一张正面照片，光线充足。"
        # The sender hears its own message once too (other tabs and devices need it).
        assert [m["seq"] for m in patient.messages].count(start + 1) == 1
    finally:
        await patient.close()
        await doctor.close()


async def test_a_client_that_reconnects_gets_exactly_what_it_missed_in_order(
    server: str, world: dict[str, Any]
) -> None:
    patient, doctor = await _pair(server, world)
    try:
        await doctor.close()
        seen = doctor.last_seq
        for i in range(5):
            await patient.send(f"gap-{i}", f"第{i}条")
        await patient.wait_for(lambda: all(f"gap-{i}" in patient.acks for i in range(5)))
        doctor_again = ChatClient(server, world["doctor"], world["cid"])
        doctor_again.last_seq = seen
        await doctor_again.connect()
        await doctor_again.wait_for(lambda: doctor_again.last_seq == patient.last_seq)
        assert doctor_again.bodies() == [f"第{i}条" for i in range(5)]
        assert [m["seq"] for m in doctor_again.messages] == list(range(seen + 1, seen + 6))
        await doctor_again.close()
    finally:
        await patient.close()


async def test_a_message_sent_again_with_its_client_id_is_not_stored_twice(
    server: str, world: dict[str, Any]
) -> None:
    patient, doctor = await _pair(server, world)
    try:
        await patient.send("same-id", "只应出现一次")
        await patient.wait_for(lambda: "same-id" in patient.acks)
        first = patient.acks.pop("same-id")
        await patient.send("same-id", "只应出现一次")
        await patient.wait_for(lambda: "same-id" in patient.acks)
        assert patient.acks["same-id"] == first
        await asyncio.sleep(0.3)
        assert doctor.bodies().count("只应出现一次") == 1
        stored = await history(server, world["doctor"], world["cid"])
        assert [m["body"] for m in stored].count("只应出现一次") == 1
        # The REST path honours the same id.
        again = await rest(
            server,
            world["patient"],
            "POST",
            f"/api/v1/consultations/{world['cid']}/messages",
            json={"body": "只应出现一次", "client_id": "same-id"},
        )
        assert again.status_code == 201 and again.json()["seq"] == first
    finally:
        await patient.close()
        await doctor.close()


async def test_typing_presence_and_read_receipts(server: str, world: dict[str, Any]) -> None:
    patient, doctor = await _pair(server, world)
    try:
        assert len(patient.welcome["present"]) >= 1  # type: ignore[index]
        await doctor.raw({"type": "typing"})
        await patient.wait_for(
            lambda: any(e["type"] == "typing" and e["role"] == "doctor" for e in patient.events)
        )
        await patient.wait_for(
            lambda: any(e["type"] == "presence" and len(e["present"]) == 2 for e in patient.events)
        )
        await patient.raw({"type": "read", "seq": patient.last_seq})
        await doctor.wait_for(
            lambda: any(
                e["type"] == "read" and e["role"] == "patient" and e["seq"] == patient.last_seq
                for e in doctor.events
            )
        )
        marks = (
            await rest(server, world["doctor"], "GET", f"/api/v1/consultations/{world['cid']}/read")
        ).json()
        assert {"role": "patient", "seq": patient.last_seq} in [
            {"role": m["role"], "seq": m["seq"]} for m in marks
        ]
        # A read mark never moves back, and never past the last message.
        back = await rest(
            server, world["patient"], "POST", f"/api/v1/consultations/{world['cid']}/read", json={"seq": 0}
        )
        assert back.status_code == 200 and back.json()["seq"] == patient.last_seq
        ahead = await rest(
            server,
            world["patient"],
            "POST",
            f"/api/v1/consultations/{world['cid']}/read",
            json={"seq": 10**6},
        )
        assert ahead.status_code == 200 and ahead.json()["seq"] == patient.last_seq
    finally:
        await patient.close()
        await doctor.close()


async def test_a_message_posted_over_rest_reaches_the_sockets(server: str, world: dict[str, Any]) -> None:
    patient, doctor = await _pair(server, world)
    try:
        posted = await rest(
            server,
            world["doctor"],
            "POST",
            f"/api/v1/consultations/{world['cid']}/messages",
            json={"body": "来自没有 WebSocket 的客户端"},
        )
        assert posted.status_code == 201, posted.text
        await patient.wait_for(lambda: patient.last_seq == posted.json()["seq"])
        assert patient.bodies()[-1] == "来自没有 WebSocket 的客户端"
    finally:
        await patient.close()
        await doctor.close()


async def _refusal(server: str, cid: int, frames: list[Any]) -> tuple[dict[str, Any], int | None]:
    async with connect(ws_url(server, cid)) as socket:
        for frame in frames:
            await socket.send(frame if isinstance(frame, str) else json.dumps(frame))
        error = json.loads(await asyncio.wait_for(socket.recv(), 15))
        try:
            await asyncio.wait_for(socket.recv(), 5)
        except ConnectionClosed as closed:
            return error, closed.rcvd.code if closed.rcvd else None
    return error, None


async def test_refusals_on_connect(server: str, world: dict[str, Any]) -> None:
    cid = world["cid"]
    error, code = await _refusal(server, cid, ["not json"])
    assert (error["code"], code) == ("bad_hello", 4400)
    error, code = await _refusal(server, cid, [{"type": "hello", "after_seq": -1, "token": world["patient"]}])
    assert (error["code"], code) == ("bad_hello", 4400)
    error, code = await _refusal(server, cid, [{"type": "hello", "after_seq": 0}])
    assert (error["code"], code) == ("not_authenticated", 4401)
    error, code = await _refusal(server, cid, [{"type": "hello", "after_seq": 0, "token": "ehb_nonsense"}])
    assert (error["code"], code) == ("invalid_token", 4401)
    # A doctor who is not this consultation's may not listen in.
    other = token_of(server, "dr.zhang", "doctor-demo-1")
    error, code = await _refusal(server, cid, [{"type": "hello", "after_seq": 0, "token": other}])
    assert (error["code"], code) == ("not_found", 4404)
    error, code = await _refusal(
        server, 987654, [{"type": "hello", "after_seq": 0, "token": world["patient"]}]
    )
    assert (error["code"], code) == ("not_found", 4404)


async def test_bad_frames_are_answered_and_the_socket_stays_open(server: str, world: dict[str, Any]) -> None:
    patient = ChatClient(server, world["patient"], world["cid"])
    await patient.connect()
    try:
        await patient.raw({"type": "send", "client_id": "empty", "body": ""})
        await patient.raw({"type": "send", "client_id": "bad id with spaces", "body": "x"})
        await patient.raw({"type": "send", "client_id": "long", "body": "长" * 4001})
        await patient.raw({"type": "dance"})
        await patient.raw({"type": "read", "seq": "all"})
        assert patient.socket is not None
        await patient.socket.send("{broken")
        await patient.wait_for(lambda: len([e for e in patient.events if e["type"] == "error"]) == 6)
        codes = [e["code"] for e in patient.events if e["type"] == "error"]
        assert codes == [
            "empty_message",
            "invalid_message",
            "invalid_message",
            "unknown_type",
            "invalid_read",
            "invalid_frame",
        ]
        await patient.send("still-open", "还在")
        await patient.wait_for(lambda: "still-open" in patient.acks)
    finally:
        await patient.close()


async def test_a_revoked_token_ends_the_socket_at_its_next_frame(server: str, world: dict[str, Any]) -> None:
    token = token_of(server, "patient", "patient-demo-1")
    patient = ChatClient(server, token, world["cid"])
    await patient.connect()
    revoked = await rest(server, token, "POST", "/api/v1/auth/logout")
    assert revoked.status_code == 204, revoked.text
    await patient.raw({"type": "send", "client_id": "after-logout", "body": "不应保存"})
    await patient.wait_for(lambda: any(e.get("code") == "invalid_token" for e in patient.events))
    await patient.close()
    stored = await history(server, world["doctor"], world["cid"])
    assert "不应保存" not in [m["body"] for m in stored]


async def test_video_call_signalling_and_record(server: str, world: dict[str, Any]) -> None:
    """The doctor rings, signals pass to the other side only, and the record keeps start, end and
    duration; the rules: doctors start, one call at a time, a hang-up counts once."""
    cid = world["cid"]
    refused = await rest(server, world["patient"], "POST", f"/api/v1/consultations/{cid}/calls")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "wrong_role")
    patient, doctor = await _pair(server, world)
    try:
        await doctor.raw({"type": "call_start"})
        await patient.wait_for(
            lambda: any(e["type"] == "call" and e["event"] == "ring" for e in patient.events)
        )
        call = next(e["call"] for e in patient.events if e["type"] == "call")
        again = await rest(server, world["doctor"], "POST", f"/api/v1/consultations/{cid}/calls")
        assert (again.status_code, again.json()["error"]["code"]) == (409, "call_in_progress")
        await patient.raw({"type": "signal", "call_id": call["id"], "data": {"kind": "ready"}})
        await doctor.wait_for(lambda: any(e["type"] == "signal" for e in doctor.events))
        signal = next(e for e in doctor.events if e["type"] == "signal")
        assert signal["data"] == {"kind": "ready"} and signal["call_id"] == call["id"]
        await patient.raw({"type": "signal", "call_id": call["id"], "data": "x" * 10})
        await patient.raw({"type": "signal", "call_id": call["id"], "data": {"sdp": "x" * 70_000}})
        await patient.raw({"type": "signal", "call_id": "one", "data": {}})
        await patient.wait_for(lambda: len([e for e in patient.events if e["type"] == "error"]) == 3)
        assert [e["code"] for e in patient.events if e["type"] == "error"] == [
            "invalid_signal",
            "invalid_signal",
            "invalid_call",
        ]
        await doctor.raw({"type": "call_connected", "call_id": call["id"]})
        await patient.wait_for(
            lambda: any(e["type"] == "call" and e["event"] == "connected" for e in patient.events)
        )
        await asyncio.sleep(1.1)
        ended = await rest(
            server, world["patient"], "POST", f"/api/v1/consultations/{cid}/calls/{call['id']}/end"
        )
        assert ended.status_code == 200 and ended.json()["end_reason"] == "hangup"
        assert ended.json()["duration_seconds"] >= 1
        twice = await rest(
            server,
            world["doctor"],
            "POST",
            f"/api/v1/consultations/{cid}/calls/{call['id']}/end",
            json={"reason": "failed"},
        )
        assert twice.status_code == 200 and twice.json()["ended_at"] == ended.json()["ended_at"]
        await doctor.wait_for(
            lambda: any(e["type"] == "call" and e["event"] == "ended" for e in doctor.events)
        )
        await doctor.wait_for(
            lambda: any(m["body"].startswith("video call ended after 0:0") for m in doctor.messages)
        )
        await patient.raw({"type": "signal", "call_id": call["id"], "data": {"kind": "ice"}})
        await patient.wait_for(lambda: any(e.get("code") == "call_ended" for e in patient.events))
        listed = (await rest(server, world["doctor"], "GET", f"/api/v1/consultations/{cid}/calls")).json()
        assert [c["id"] for c in listed][-1] == call["id"] and listed[-1]["connected_at"] is not None
        missing = await rest(server, world["doctor"], "POST", f"/api/v1/consultations/{cid}/calls/999999/end")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "call_not_found")
        bad = await rest(
            server,
            world["doctor"],
            "POST",
            f"/api/v1/consultations/{cid}/calls/{call['id']}/end",
            json={"reason": "bored"},
        )
        assert bad.status_code == 422
        config = await rest(server, world["patient"], "GET", "/api/v1/calls/config")
        assert config.status_code == 200 and config.json() == {"ice_servers": []}
    finally:
        await patient.close()
        await doctor.close()


async def test_many_sockets_at_once_keep_every_message_once_and_in_each_senders_order(
    server: str, world: dict[str, Any]
) -> None:
    """Eight sockets (four per side) send at once: whatever the batches, seq stays gapless, no
    message is stored twice, each socket's messages keep their order, and every socket receives
    every message once. On PostgreSQL the messages of one batch share their stored time, which
    shows that the group commit really grouped them."""
    clients = [ChatClient(server, world["patient" if k % 2 else "doctor"], world["cid"]) for k in range(8)]
    for c in clients:
        await c.connect()
    try:
        start = clients[0].welcome["last_seq"]  # type: ignore[index]
        for c in clients:
            await c.wait_for(lambda c=c: c.last_seq >= start)
        count = 15
        for i in range(count):  # pipelined: nobody waits for an ack before the next send
            for k, c in enumerate(clients):
                await c.send(f"burst-{k}-{i}", f"burst {k}/{i}")
        total = count * len(clients)
        for c in clients:
            await c.wait_for(lambda c=c: c.last_seq >= start + total, 30)
        stored = [m for m in await history(server, world["doctor"], world["cid"]) if m["seq"] > start]
        assert [m["seq"] for m in stored] == list(range(start + 1, start + total + 1))
        for k in range(len(clients)):
            mine = [m["body"] for m in stored if m["client_id"].startswith(f"burst-{k}-")]
            assert mine == [f"burst {k}/{i}" for i in range(count)]
        for k, c in enumerate(clients):
            assert [m["seq"] for m in c.messages if m["seq"] > start] == list(
                range(start + 1, start + total + 1)
            )
            assert all(f"burst-{k}-{i}" in c.acks for i in range(count))
        if _BACKEND_OF[server] == "postgresql":
            assert len({m["created_at"] for m in stored}) < total, "no two messages were stored together"
    finally:
        for c in clients:
            await c.close()


async def test_refusals_and_repeats_inside_a_busy_moment(server: str, world: dict[str, Any]) -> None:
    """A message to a cancelled consultation, the same client_id from two sockets of one
    account and ordinary messages, all at once: the refusal names its reason, the repeat is
    stored once and both sockets hear its seq, the rest is stored."""
    cancelled = open_consultation(
        server, world["patient"], world["doctor"], member_name="李建国 Li Jianguo", accept=False
    )
    gone = await rest(server, world["patient"], "POST", f"/api/v1/consultations/{cancelled}/cancel", json={})
    assert gone.status_code == 200, gone.text
    closed = ChatClient(server, world["patient"], cancelled)
    one, two = (
        ChatClient(server, world["patient"], world["cid"]),
        ChatClient(server, world["patient"], world["cid"]),
    )
    doctor = ChatClient(server, world["doctor"], world["cid"])
    for c in (closed, one, two, doctor):
        await c.connect()
    try:
        await asyncio.gather(
            closed.send("late-1", "还在吗？"),
            one.send("twice", "同一条"),
            two.send("twice", "同一条"),
            doctor.send("busy-d", "收到"),
        )
        await closed.wait_for(lambda: any(e.get("client_id") == "late-1" for e in closed.events))
        refusal = next(e for e in closed.events if e.get("client_id") == "late-1")
        assert refusal["type"] == "error" and refusal["code"] == "consultation_closed"
        await one.wait_for(lambda: "twice" in one.acks)
        await two.wait_for(lambda: "twice" in two.acks)
        await doctor.wait_for(lambda: "busy-d" in doctor.acks)
        assert one.acks["twice"] == two.acks["twice"]
        stored = await history(server, world["doctor"], world["cid"])
        assert [m["client_id"] for m in stored].count("twice") == 1
        assert [m["client_id"] for m in stored].count("busy-d") == 1
        assert "late-1" not in [m["client_id"] for m in await history(server, world["patient"], cancelled)]
    finally:
        for c in (closed, one, two, doctor):
            await c.close()


async def test_the_doctors_first_live_message_starts_the_consultation(
    server: str, world: dict[str, Any]
) -> None:
    cid = open_consultation(server, world["patient"], world["doctor"], member_name="王强 Wang Qiang")
    before = (await rest(server, world["doctor"], "GET", f"/api/v1/consultations/{cid}")).json()
    assert before["status"] == "accepted" and before["first_response_at"] is None
    doctor = ChatClient(server, world["doctor"], cid)
    await doctor.connect()
    try:
        await doctor.send("first", "您好，我看了您的照片。")
        await doctor.wait_for(lambda: "first" in doctor.acks)
    finally:
        await doctor.close()
    after = (await rest(server, world["doctor"], "GET", f"/api/v1/consultations/{cid}")).json()
    assert after["status"] == "in_progress"
    assert after["first_response_at"] is not None and after["started_at"] == after["first_response_at"]
    message = (await history(server, world["doctor"], cid))[-1]
    assert message["body"] == "您好，我看了您的照片。" and message["sender_role"] == "doctor"


async def test_a_consultation_locked_elsewhere_holds_up_only_its_own_messages(
    server: str, world: dict[str, Any]
) -> None:
    """Another transaction holds a consultation's row (another process's batch, a long REST
    request): the batch skips it instead of waiting, so the other consultations' messages are
    stored at once; the held one is stored, in order, once the lock is released."""
    if _BACKEND_OF[server] != "postgresql":
        pytest.skip("row locks and SKIP LOCKED: PostgreSQL (SQLite writes one message at a time)")
    import asyncpg  # type: ignore[import-untyped]

    other = open_consultation(server, world["patient"], world["doctor"], member_name="王小明 Wang Xiaoming")
    held = ChatClient(server, world["patient"], world["cid"])
    free = ChatClient(server, world["patient"], other)
    for c in (held, free):
        await c.connect()
    dsn = _DATABASE_OF[server].replace("postgresql+asyncpg://", "postgresql://")
    blocker = await asyncpg.connect(dsn)
    try:
        before = held.welcome["last_seq"]  # type: ignore[index]
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("SELECT 1 FROM consultations WHERE id = $1 FOR UPDATE", world["cid"])
        await held.send("held-1", "锁住的会诊")
        await asyncio.sleep(0.05)
        for i in range(3):
            await free.send(f"free-{i}", f"未锁的会诊 {i}")
            await free.wait_for(lambda i=i: f"free-{i}" in free.acks, 5)
        await asyncio.sleep(0.3)
        assert "held-1" not in held.acks  # still waiting for the lock, not refused
        assert not [e for e in held.events if e.get("type") == "error"]
        await lock.commit()
        await held.wait_for(lambda: "held-1" in held.acks, 10)
        assert held.acks["held-1"] == before + 1
        stored = await history(server, world["patient"], world["cid"])
        assert [m["client_id"] for m in stored].count("held-1") == 1
    finally:
        await blocker.close()
        for c in (held, free):
            await c.close()
