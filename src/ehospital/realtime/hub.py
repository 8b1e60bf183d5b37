"""The chat hub of one server process: which of its sockets listen to which consultation.

Every event of a consultation (a stored message, typing, a read receipt, presence) is published
on the broker channel `chat:<id>`; each process subscribes to the channels of the consultations
it holds sockets for and hands the events to those sockets' queues. Publishing a stored message
happens only after its transaction committed (`publish_after_commit`), so whatever a client
receives live is already in the database, and a client that reconnects can read it again there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.kit.txn import after_commit
from ehospital.realtime.broker import Broker

log = logging.getLogger(__name__)

Event = dict[str, Any]
Listener = Callable[[Event, str], None]  # the event, and its JSON text as published


def channel_of(consultation_id: int) -> str:
    return f"chat:{consultation_id}"


class ChatHub:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rooms: dict[int, set[Listener]] = {}
        self._joining: dict[int, asyncio.Lock] = {}
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.broker.start(self._on_broker)

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await self.broker.close()

    def _on_broker(self, channel: str, payload: bytes) -> None:
        if not channel.startswith("chat:"):
            return
        try:
            consultation_id = int(channel[5:])
            event = orjson.loads(payload)
            text = payload.decode()
        except (ValueError, orjson.JSONDecodeError):
            log.warning("ignored a malformed event on %s", channel)
            return
        # Parsed once and the text passed along: each socket sends the same bytes.
        for listener in list(self.rooms.get(consultation_id, ())):
            listener(event, text)

    async def join(self, consultation_id: int, listener: Listener) -> None:
        """Deliver the consultation's events to `listener` from now on (subscribed on return)."""
        lock = self._joining.setdefault(consultation_id, asyncio.Lock())
        async with lock:
            members = self.rooms.get(consultation_id)
            if members is None:
                await self.broker.subscribe(channel_of(consultation_id))
                members = self.rooms[consultation_id] = set()
            members.add(listener)

    async def leave(self, consultation_id: int, listener: Listener) -> None:
        lock = self._joining.setdefault(consultation_id, asyncio.Lock())
        async with lock:
            members = self.rooms.get(consultation_id)
            if members is None:
                return
            members.discard(listener)
            if not members:
                del self.rooms[consultation_id]
                self._joining.pop(consultation_id, None)
                try:
                    await self.broker.unsubscribe(channel_of(consultation_id))
                except Exception:  # the reader resubscribes what is still wanted after a reconnect
                    log.warning("could not unsubscribe from %s", consultation_id, exc_info=True)

    async def publish(self, consultation_id: int, event: Event) -> None:
        await self.broker.publish(channel_of(consultation_id), orjson.dumps(event))

    def publish_soon(self, consultation_id: int, event: Event) -> None:
        """Publish from synchronous code (an after-commit hook) on the running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: a CLI command; nobody listens in this process
            return
        task = loop.create_task(self._publish_logged(consultation_id, event))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_logged(self, consultation_id: int, event: Event) -> None:
        try:
            await self.publish(consultation_id, event)
        except Exception:  # receivers fill the gap from the database on the next message
            log.warning("could not publish to consultation %s", consultation_id, exc_info=True)


_hub: ChatHub | None = None


def set_hub(hub: ChatHub | None) -> None:
    global _hub
    _hub = hub


def current_hub() -> ChatHub | None:
    return _hub


def publish_after_commit(
    session: AsyncSession, consultation_id: int, make_event: Callable[[], Event]
) -> None:
    """Publish the event once the session's transaction has committed (never on rollback)."""
    hub = _hub
    if hub is None:
        return
    after_commit(session, lambda: hub.publish_soon(consultation_id, make_event()))
