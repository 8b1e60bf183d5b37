"""The socket writer's ordering (no server): messages that arrive ahead of one they follow wait
for it; a gap still open after the wait is filled from the database; nothing is sent twice."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest

from ehospital.auth.models import Role
from ehospital.consultations import live
from ehospital.kit.context import Actor


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(orjson.loads(text))


def _connection(last_sent: int = 0) -> tuple[live._Connection, _Socket]:
    socket = _Socket()
    actor = Actor(account_id=1, role=Role.PATIENT, username="patient", display_name="Li Na")
    conn = live._Connection(
        cast(Any, socket), cast(Any, None), cast(Any, None), 7, "token", "bearer", actor, last_sent=last_sent
    )
    return conn, socket


def _message(seq: int) -> tuple[dict[str, Any], str]:
    event = {"type": "message", "consultation_id": 7, "message": {"seq": seq, "body": f"m{seq}"}}
    return event, orjson.dumps(event).decode()


async def _run(conn: live._Connection, seconds: float) -> None:
    task = asyncio.create_task(conn.write())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _seqs(socket: _Socket) -> list[int]:
    return [f["message"]["seq"] for f in socket.sent if f["type"] == "message"]


async def test_a_message_ahead_of_its_predecessor_waits_for_it() -> None:
    conn, socket = _connection(last_sent=3)
    fills: list[tuple[int, int | None]] = []

    async def fill(after: int, upto: int | None = None) -> None:  # must not be needed
        fills.append((after, upto))

    conn.send_messages_after = fill  # type: ignore[method-assign]
    for seq in (5, 6, 4, 6, 3, 7):  # 4 late; 6 and 3 repeated
        conn.deliver(*_message(seq))
    conn.deliver({"type": "typing"}, '{"type":"typing"}')
    await _run(conn, 0.05)
    assert _seqs(socket) == [4, 5, 6, 7]
    assert fills == []
    assert [f["type"] for f in socket.sent].count("typing") == 1


async def test_a_gap_still_open_after_the_wait_is_filled_from_the_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "message_event", _event_of)
    monkeypatch.setattr(live, "REORDER_WAIT", 0.1)
    conn, socket = _connection(last_sent=1)
    fills = _fill_from_database(conn)  # the database holds 2, 3 and 4
    conn.deliver(*_message(3))
    conn.deliver(*_message(4))  # 2 never arrives live (a publish lost with a broker hiccup)
    await _run(conn, live.REORDER_WAIT + 0.1)
    assert fills == [(1, 4)]
    assert _seqs(socket) == [2, 3, 4]
    conn2, socket2 = _connection(last_sent=4)
    conn2.deliver(*_message(5))
    await _run(conn2, 0.02)
    assert _seqs(socket2) == [5]


def _fill_from_database(conn: live._Connection) -> list[tuple[int, int | None]]:
    """Stands in for the writer's database read (the database holds every seq): sends each
    stored message after `after` up to `upto` the way the real fill does; returns the calls."""
    fills: list[tuple[int, int | None]] = []

    async def fill(after: int, upto: int | None = None) -> None:
        fills.append((after, upto))
        assert upto is not None
        for seq in range(after + 1, upto + 1):
            await conn._send_message(cast(Any, _Stored(seq)))

    conn.send_messages_after = fill  # type: ignore[method-assign]
    return fills


class _Stored:
    """A stored message as the writer's database fill sees it."""

    def __init__(self, seq: int) -> None:
        self.seq = seq


def _event_of(message: _Stored) -> dict[str, Any]:
    return {
        "type": "message",
        "consultation_id": 7,
        "message": {"seq": message.seq, "body": f"m{message.seq}"},
    }


def _ack(seq: int, client_id: str) -> tuple[dict[str, Any], str]:
    event = {
        "type": "ack",
        "client_id": client_id,
        "seq": seq,
        "duplicate": False,
        "message": {"seq": seq, "sender_id": 1, "client_id": client_id, "body": f"m{seq}"},
    }
    return event, orjson.dumps(event).decode()


def _own_echo(seq: int, client_id: str) -> tuple[dict[str, Any], str]:
    event = {
        "type": "message",
        "consultation_id": 7,
        "message": {"seq": seq, "sender_id": 1, "client_id": client_id, "body": f"m{seq}"},
    }
    return event, orjson.dumps(event).decode()


def _stream(socket: _Socket) -> list[tuple[str, int]]:
    return [(f["type"], f["seq"] if f["type"] == "ack" else f["message"]["seq"]) for f in socket.sent]


async def test_the_ack_of_an_own_message_takes_the_place_of_its_echo() -> None:
    for arrivals in (["ack", "echo", "next"], ["echo", "next", "ack"], ["next", "ack", "echo"]):
        conn, socket = _connection(last_sent=3)
        conn.own.add("c4")
        frames = {"ack": _ack(4, "c4"), "echo": _own_echo(4, "c4"), "next": _message(5)}
        for name in arrivals:
            conn.deliver(*frames[name])
        await _run(conn, 0.03)
        assert _stream(socket) == [("ack", 4), ("message", 5)], arrivals
        assert conn.own == set()


async def test_an_ack_held_for_a_missing_message_is_still_sent_after_the_fill(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(live, "message_event", _event_of)
    monkeypatch.setattr(live, "REORDER_WAIT", 0.05)
    conn, socket = _connection(last_sent=1)
    conn.own.add("c3")
    _fill_from_database(conn)
    conn.deliver(*_ack(3, "c3"))  # 2 never arrives live
    await _run(conn, 0.15)
    assert _stream(socket) == [("message", 2), ("message", 3), ("ack", 3)]
    # A repeated send's ack (an old seq) goes out at once.
    conn2, socket2 = _connection(last_sent=9)
    conn2.deliver(*_ack(4, "old"))
    await _run(conn2, 0.02)
    assert _stream(socket2) == [("ack", 4)]
