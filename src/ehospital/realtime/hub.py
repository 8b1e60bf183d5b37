"""The chat hub of one server process: which of its sockets listen to which consultation.

Every event of a consultation (a stored message, typing, a read receipt, presence) is published
on the broker's one channel, tagged with the consultation's id; each process hands the events of
the consultations it holds sockets for to those sockets' queues and drops the rest unparsed.
Events queued while a publish is on its way leave together as one payload. Publishing a stored message
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


class ChatHub:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.rooms: dict[int, set[Listener]] = {}
        self._outbox: list[bytes] = []
        self._flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.start(self._on_broker)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        await self.broker.close()

    def _on_broker(self, payload: bytes) -> None:
        """A payload: one event per line, each `<consultation id> <event JSON>`; only the events
        of consultations this process holds sockets for are parsed."""
        for line in payload.split(b"\n"):
            head, _, body = line.partition(b" ")
            try:
                listeners = self.rooms.get(int(head))
                if not listeners:
                    continue
                event = orjson.loads(body)
                text = body.decode()
            except (ValueError, orjson.JSONDecodeError):
                log.warning("ignored a malformed event %r", line[:80])
                continue
            # Parsed once and the text passed along: each socket sends the same bytes.
            for listener in list(listeners):
                listener(event, text)

    async def join(self, consultation_id: int, listener: Listener) -> None:
        """Deliver the consultation's events to `listener` from now on."""
        self.rooms.setdefault(consultation_id, set()).add(listener)

    async def leave(self, consultation_id: int, listener: Listener) -> None:
        members = self.rooms.get(consultation_id)
        if members is not None:
            members.discard(listener)
            if not members:
                del self.rooms[consultation_id]

    def publish(self, consultation_id: int, event: Event) -> None:
        self.publish_many([(consultation_id, event)])

    def publish_many(self, events: list[tuple[int, Event]]) -> None:
        """Queue events for the broker; what is queued while a publish is on its way leaves
        together, as one payload, in the order it was queued."""
        if not events:
            return
        self._outbox.extend(b"%d %s" % (cid, orjson.dumps(event)) for cid, event in events)
        if self._flusher is None or self._flusher.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop: a CLI command; nobody listens in this process
                self._outbox.clear()
                return
            self._flusher = loop.create_task(self._flush(), name="hub-flush")

    async def _flush(self) -> None:
        while self._outbox:
            payload = b"\n".join(self._outbox)
            self._outbox.clear()
            try:
                await self.broker.publish(payload)
            except Exception:  # receivers fill the gap from the database on the next message
                log.warning("could not publish %d live-chat events", payload.count(b"\n") + 1, exc_info=True)


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
    after_commit(session, lambda: hub.publish(consultation_id, make_event()))
