"""A small live-chat client for the tests (and the idea of what a mobile client does): it keeps
the last seq it received, resends what was not acknowledged after a reconnect, and drops
nothing it has not seen."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


def token_of(base: str, username: str, password: str) -> str:
    response = httpx.post(f"{base}/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def rest(base: str, token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One API request with a bearer token (without blocking the event loop)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


async def history(base: str, token: str, consultation_id: int) -> list[dict[str, Any]]:
    """Every stored message of a consultation (up to 500), over REST."""
    response = await rest(
        base, token, "GET", f"/api/v1/consultations/{consultation_id}/messages", params={"limit": 500}
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def ws_url(base: str, consultation_id: int) -> str:
    return base.replace("http://", "ws://") + f"/api/v1/consultations/{consultation_id}/live"


class ChatClient:
    def __init__(self, base: str, token: str, consultation_id: int) -> None:
        self.base = base
        self.token = token
        self.consultation_id = consultation_id
        self.socket: ClientConnection | None = None
        self.last_seq = 0
        self.messages: list[dict[str, Any]] = []  # every message received, in arrival order
        self.events: list[dict[str, Any]] = []  # every other frame
        self.acks: dict[str, int] = {}
        self.unacked: dict[str, str] = {}
        self.welcome: dict[str, Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def connect(self, base: str | None = None) -> dict[str, Any]:
        if base is not None:
            self.base = base
        self.socket = await connect(ws_url(self.base, self.consultation_id), open_timeout=10)
        await self.socket.send(json.dumps({"type": "hello", "token": self.token, "after_seq": self.last_seq}))
        welcome: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), 10))
        assert welcome["type"] == "welcome", welcome
        self.welcome = welcome
        self._reader = asyncio.create_task(self._read(self.socket))
        for client_id, body in list(self.unacked.items()):  # resend what may not be stored
            await self.socket.send(json.dumps({"type": "send", "client_id": client_id, "body": body}))
        return welcome

    async def _read(self, socket: ClientConnection) -> None:
        try:
            async for raw in socket:
                frame = json.loads(raw)
                if frame["type"] == "message":
                    seq = frame["message"]["seq"]
                    assert seq == self.last_seq + 1, f"got seq {seq} after {self.last_seq}"
                    self.last_seq = seq
                    self.messages.append(frame["message"])
                elif frame["type"] == "ack":
                    # The ack of my own send carries the message in its place in the stream,
                    # unless the stream already had that seq (a repeat, or a gap filled first).
                    seq = frame["seq"]
                    if seq > self.last_seq:
                        assert seq == self.last_seq + 1, f"ack of seq {seq} after {self.last_seq}"
                        self.last_seq = seq
                        self.messages.append(frame["message"])
                    self.acks[frame["client_id"]] = seq
                    self.unacked.pop(frame["client_id"], None)
                else:
                    self.events.append(frame)
                self._changed.set()
        except Exception:
            pass
        finally:
            self._changed.set()

    async def send(self, client_id: str, body: str) -> None:
        """Send, or keep it for the next connection when the socket is gone (as an app would)."""
        assert self.socket is not None
        self.unacked[client_id] = body
        with contextlib.suppress(ConnectionClosed):
            await self.socket.send(json.dumps({"type": "send", "client_id": client_id, "body": body}))

    async def raw(self, frame: dict[str, Any]) -> None:
        assert self.socket is not None
        await self.socket.send(json.dumps(frame))

    async def wait_for(self, predicate: Any, seconds: float = 10.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), seconds)

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def bodies(self) -> list[str]:
        return [m["body"] for m in self.messages if m["kind"] == "text"]
