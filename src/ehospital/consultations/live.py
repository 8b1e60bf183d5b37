"""Live chat over WebSocket: `/api/v1/consultations/{id}/live`.

The protocol (JSON text frames; docs/ARCHITECTURE.md has the full table):

* the client opens with `{"type": "hello", "after_seq": N, "token": "<bearer>"}` (a web page
  signed in by its session cookie leaves the token out);
* the server answers `welcome` (status, last seq, who is present, read marks), then every stored
  message after N in order, then live events: `message`, `typing`, `read`, `presence`;
* `{"type": "send", "client_id": "...", "body": "..."}` is stored, committed, and only then
  acknowledged with `{"type": "ack", "client_id", "seq", "id", "duplicate", "message"}`; the ack
  carries the stored message and stands in for its `message` frame on the socket that sent it
  (every other socket, the sender's other tabs too, gets the `message` frame); a `client_id`
  sent again (after a reconnect that lost the ack) is acknowledged with the stored message,
  never stored twice;
* `typing`, `read` (with `seq`) and `ping` complete the set.

Every message has a per-consultation sequence number, and each socket receives each seq once
and in order, as a `message` frame or as the `ack` of its own send (an ack whose seq the socket
has already had, a repeat, carries nothing new). A live message that arrives ahead of one it
has not seen (two processes publishing out of order) waits briefly for it, and a gap still open
then is filled from the database. A client that reconnects with the last seq it received gets
exactly what it missed. The token is checked again on every frame (the
principal cache makes that cheap) and the consultation's rights by the service on every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ehospital.auth.service import SESSION_COOKIE, AuthService, principals, token_hash
from ehospital.consultations.batch import MessageBatcher
from ehospital.consultations.models import Message
from ehospital.consultations.repository import ConsultationRepository
from ehospital.consultations.schemas import CallEndIn, CallRead, MessageCreate, MessageRead, ReadIn
from ehospital.consultations.service import ConsultationService, message_event
from ehospital.deps import Runtime
from ehospital.kit.context import Actor
from ehospital.kit.errors import DomainError
from ehospital.realtime.hub import ChatHub, Event, current_hub

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["consultations"])

HELLO_SECONDS = 10.0
QUEUE_LIMIT = 2000  # events waiting for a slow socket before it is told to reconnect
BACKLOG_PAGE = 500
PRESENCE_REFRESH = 20.0
TYPING_INTERVAL = 1.0  # at most one typing event per second per socket
REORDER_WAIT = 1.0  # seconds a message that arrived early waits for the one before it

# Close codes (4000–4999 are the application's).
CLOSE_BAD_HELLO = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_LAGGING = 4408


class _Lagging(Exception):
    pass


# Token look-ups in flight, by token digest: sockets of one token whose cache entry lapsed at
# the same moment wait for one look-up instead of each running its own.
_lookups: dict[bytes, asyncio.Future[Actor | None]] = {}


@dataclass
class _Connection:
    socket: WebSocket
    runtime: Runtime
    hub: ChatHub
    consultation_id: int
    token: str
    kind: str  # "bearer" or "session"
    actor: Actor
    last_sent: int = 0
    queue: asyncio.Queue[tuple[Event, str]] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    lagging: bool = False
    last_typing: float = 0.0
    digest: bytes = b""
    verified: Actor | None = None  # the cache entry self.actor was last taken from
    own: set[str] = field(default_factory=set)  # client_ids sent here whose echo is still due

    def __post_init__(self) -> None:
        self.digest = token_hash(self.token)

    @property
    def member(self) -> str:
        return f"{self.actor.account_id}:{self.actor.role}"

    def deliver(self, event: Event, raw: str) -> None:
        """The hub's listener: queue an event (and its JSON, sent as is) for the writer; never
        blocks the broker reader."""
        try:
            self.queue.put_nowait((event, raw))
        except asyncio.QueueFull:
            self.lagging = True

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send_text(orjson.dumps(frame).decode())

    async def error(self, code: str, message: str, **extra: Any) -> None:
        """An error frame for a bad or refused frame; the socket stays open."""
        await self.send({"type": "error", "code": code, "message": message, **extra})

    async def refused(self, exc: DomainError, **extra: Any) -> None:
        await self.error(exc.code, exc.message, status=exc.status_code, **extra)

    async def reauthenticate(self) -> None:
        """The token again: from this process's principal cache when it is fresh (no database),
        else through the database (expired or revoked: the socket ends). When the cache entry
        lapses, the sockets of one token that ask at the same moment share one look-up."""
        cached = principals.get(self.digest)
        if cached is not None:
            if cached is not self.verified:  # a fresh entry: the same principal, re-read
                self.actor = dataclasses.replace(cached, address=self.actor.address, request_id=None)
                self.verified = cached
            return
        lookup = _lookups.get(self.digest)
        if lookup is None:
            lookup = _lookups[self.digest] = asyncio.ensure_future(self._lookup())
            digest = self.digest
            lookup.add_done_callback(lambda _: _lookups.pop(digest, None))
        actor = await asyncio.shield(lookup)
        if actor is None:
            raise _Unauthenticated
        self.actor = dataclasses.replace(actor, address=self.actor.address, request_id=None)

    async def _lookup(self) -> Actor | None:
        async with self.runtime.sessionmaker() as session:
            actor = await AuthService(session, self.runtime.settings).authenticate(
                self.token, address=None, request_id=None, kind=self.kind
            )
            await session.commit()
        return actor

    async def send_messages_after(self, after: int, upto: int | None = None) -> None:
        """Stored messages with seq > after (and ≤ upto), in order, from the database."""
        while True:
            async with self.runtime.sessionmaker() as session:
                found = list(
                    await ConsultationRepository(session).messages(self.consultation_id, after, BACKLOG_PAGE)
                )
            for message in found:
                if upto is not None and message.seq > upto:
                    return
                await self._send_message(message)
                after = message.seq
            if len(found) < BACKLOG_PAGE:
                return

    async def _send_message(self, message: Message) -> None:
        if message.seq <= self.last_sent:
            return
        await self.send(message_event(message))
        self.last_sent = message.seq

    async def write(self) -> None:
        """Queued events to the socket; each seq exactly once and in order.

        A seq reaches the socket as a `message` frame or, for a message this socket sent, as
        the `ack` that carries it (the echo of an own message is dropped: the ack stands in its
        place). Two processes publish in the order their batches commit, so an event can
        arrive just ahead of one it follows: it waits (up to REORDER_WAIT) for the one it
        follows; only a message still missing then is read from the database, where it is
        already committed (the consultation row lock orders the numbers)."""
        ahead: dict[int, tuple[str, bool]] = {}  # seq → (JSON, is an ack) of early arrivals
        deadline = 0.0
        loop = asyncio.get_running_loop()
        me = self.actor.account_id
        while True:
            if ahead:
                try:
                    async with asyncio.timeout_at(deadline):
                        event, raw = await self.queue.get()
                except TimeoutError:
                    await self.send_messages_after(self.last_sent, max(ahead))
                    for seq in sorted(ahead):  # the acks held: the client still needs them
                        if ahead[seq][1]:
                            await self.socket.send_text(ahead[seq][0])
                    ahead.clear()
                    continue
            else:
                event, raw = await self.queue.get()
            if self.lagging:
                raise _Lagging
            kind = event.get("type")
            if kind == "message":
                message = event["message"]
                seq = int(message["seq"])
                client_id = message.get("client_id")
                if client_id is not None and message.get("sender_id") == me and client_id in self.own:
                    self.own.discard(client_id)
                    continue  # the echo of a message sent here: its ack takes its place
                is_ack = False
            elif kind == "ack":
                seq = int(event["seq"])
                is_ack = True
                if seq <= self.last_sent:  # a repeat, or its seq already went out as a message
                    await self.socket.send_text(raw)
                    continue
            else:
                await self.socket.send_text(raw)
                continue
            if seq <= self.last_sent:
                continue  # already sent (from the backlog, or a gap fill)
            if seq > self.last_sent + 1:
                if not ahead:
                    deadline = loop.time() + REORDER_WAIT
                if seq not in ahead or is_ack:
                    ahead[seq] = (raw, is_ack)
                continue
            await self.socket.send_text(raw)
            self.last_sent = seq
            while self.last_sent + 1 in ahead:
                await self.socket.send_text(ahead.pop(self.last_sent + 1)[0])
                self.last_sent += 1
            for stale in [s for s in ahead if s <= self.last_sent]:
                if ahead[stale][1]:
                    await self.socket.send_text(ahead[stale][0])
                del ahead[stale]


class _Unauthenticated(Exception):
    pass


async def _hello(socket: WebSocket) -> dict[str, Any]:
    try:
        raw = await asyncio.wait_for(socket.receive_text(), HELLO_SECONDS)
        frame = orjson.loads(raw)
    except TimeoutError as exc:
        raise _BadHello("no hello within 10 s") from exc
    except orjson.JSONDecodeError as exc:
        raise _BadHello("the first frame must be a JSON hello") from exc
    if not isinstance(frame, dict) or frame.get("type") != "hello":
        raise _BadHello('the first frame must be {"type": "hello", ...}')
    after = frame.get("after_seq", 0)
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= 2_000_000_000:
        raise _BadHello("after_seq must be a whole number ≥ 0")
    token = frame.get("token")
    if token is not None and not isinstance(token, str):
        raise _BadHello("token must be a string")
    return frame


class _BadHello(Exception):
    pass


def _same_origin(socket: WebSocket) -> bool:
    """A cookie-signed socket must come from our own pages (no cross-site WebSocket hijacking)."""
    origin = socket.headers.get("origin")
    host = socket.headers.get("host")
    if origin is None or host is None:
        return False
    return origin.split("://", 1)[-1] == host


async def _close(socket: WebSocket, code: int, reason: str, error_code: str) -> None:
    with contextlib.suppress(Exception):
        await socket.send_text(
            orjson.dumps({"type": "error", "code": error_code, "message": reason}).decode()
        )
        await socket.close(code, reason[:120])


@router.websocket("/consultations/{consultation_id}/live")
async def live(socket: WebSocket, consultation_id: int) -> None:
    """Live chat of one consultation (see the module's documentation for the protocol)."""
    runtime: Runtime = socket.app.state.runtime
    hub = current_hub()
    await socket.accept()
    if hub is None:  # pragma: no cover - the lifespan always starts one
        await _close(socket, 1011, "live chat is not running", "unavailable")
        return
    try:
        hello = await _hello(socket)
    except _BadHello as exc:
        await _close(socket, CLOSE_BAD_HELLO, str(exc), "bad_hello")
        return
    except WebSocketDisconnect:
        return
    token: str | None = hello.get("token")
    kind = "bearer"
    if token is None:
        token = socket.cookies.get(SESSION_COOKIE)
        kind = "session"
        if token is not None and not _same_origin(socket):
            await _close(socket, CLOSE_UNAUTHENTICATED, "cross-site socket refused", "bad_origin")
            return
    if not token:
        await _close(socket, CLOSE_UNAUTHENTICATED, "sign in first (token missing)", "not_authenticated")
        return
    address = socket.client.host if socket.client else None
    async with runtime.sessionmaker() as session:
        actor = await AuthService(session, runtime.settings).authenticate(
            token, address=address, request_id=None, kind=kind
        )
        consultation = None
        if actor is not None:
            consultation = await ConsultationRepository(session).visible(actor, consultation_id)
        await session.commit()
    if actor is None:
        await _close(
            socket, CLOSE_UNAUTHENTICATED, "the token is invalid, expired or revoked", "invalid_token"
        )
        return
    if consultation is None:
        await _close(socket, CLOSE_NOT_FOUND, "no such consultation, or not yours", "not_found")
        return

    after = min(int(hello["after_seq"]), consultation.last_seq)
    conn = _Connection(socket, runtime, hub, consultation_id, token, kind, actor, last_sent=after)
    # Subscribe before reading the backlog: whatever is committed from now on arrives live,
    # whatever was committed before is in the backlog, and seq numbers drop what is in both.
    await hub.join(consultation_id, conn.deliver)
    room = str(consultation_id)
    try:
        await hub.broker.touch_presence(room, conn.member)
        async with runtime.sessionmaker() as session:
            service = ConsultationService(session, runtime.settings, runtime.files)
            marks = await service.read_marks(actor, consultation_id)
            open_call = await ConsultationRepository(session).open_call(consultation_id)
            ice = service.call_config()
        await conn.send(
            {
                "type": "welcome",
                "consultation_id": consultation_id,
                "status": consultation.status,
                "last_seq": consultation.last_seq,
                "you": {"account_id": actor.account_id, "role": str(actor.role)},
                "present": await hub.broker.present(room),
                "reads": [m.model_dump(mode="json") for m in marks],
                "call": None
                if open_call is None
                else CallRead.model_validate(open_call).model_dump(mode="json"),
                "ice_servers": [
                    server.model_dump(mode="json", exclude_none=True) for server in ice.ice_servers
                ],
            }
        )
        hub.publish(consultation_id, await _presence(hub, consultation_id))
        await conn.send_messages_after(conn.last_sent)
        await _serve(conn)
    except (WebSocketDisconnect, _Unauthenticated, _Lagging, asyncio.CancelledError) as exc:
        if isinstance(exc, _Unauthenticated):
            await _close(socket, CLOSE_UNAUTHENTICATED, "the token expired or was revoked", "invalid_token")
        elif isinstance(exc, _Lagging):
            await _close(socket, CLOSE_LAGGING, "too far behind: reconnect and resume", "lagging")
        elif isinstance(exc, asyncio.CancelledError):
            raise
    except Exception:
        log.exception("live chat of consultation %s failed", consultation_id)
        await _close(socket, 1011, "internal error", "internal")
    finally:
        await hub.leave(consultation_id, conn.deliver)
        with contextlib.suppress(Exception):
            await hub.broker.leave_presence(room, conn.member)
            hub.publish(consultation_id, await _presence(hub, consultation_id))


async def _presence(hub: ChatHub, consultation_id: int) -> Event:
    return {
        "type": "presence",
        "consultation_id": consultation_id,
        "present": await hub.broker.present(str(consultation_id)),
    }


async def _serve(conn: _Connection) -> None:
    """Read frames and write events until the socket closes or a side fails."""
    writer = asyncio.create_task(conn.write(), name="live-writer")
    heartbeat = asyncio.create_task(_heartbeat(conn), name="live-presence")
    reader = asyncio.create_task(_read(conn), name="live-reader")
    try:
        done, _ = await asyncio.wait({writer, heartbeat, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # re-raise what ended it
    finally:
        for task in (writer, heartbeat, reader):
            task.cancel()
        for task in (writer, heartbeat, reader):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _heartbeat(conn: _Connection) -> None:
    while True:
        await asyncio.sleep(PRESENCE_REFRESH)
        await conn.hub.broker.touch_presence(str(conn.consultation_id), conn.member)


async def _read(conn: _Connection) -> None:
    while True:
        raw = await conn.socket.receive_text()
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError:
            await conn.error("invalid_frame", "not JSON")
            continue
        if not isinstance(frame, dict):
            await conn.error("invalid_frame", "a frame is a JSON object")
            continue
        kind = frame.get("type")
        if kind == "ping":
            await conn.send({"type": "pong"})
            continue
        await conn.reauthenticate()  # every frame: an expired or revoked token ends the socket
        if kind == "send":
            await _on_send(conn, frame)
        elif kind == "typing":
            now = time.monotonic()
            if now - conn.last_typing >= TYPING_INTERVAL:
                conn.last_typing = now
                conn.hub.publish(
                    conn.consultation_id,
                    {
                        "type": "typing",
                        "consultation_id": conn.consultation_id,
                        "account_id": conn.actor.account_id,
                        "role": str(conn.actor.role),
                        "name": conn.actor.display_name,
                    },
                )
        elif kind == "read":
            await _on_read(conn, frame)
        elif kind == "call_start":
            await _attempt(conn, lambda service: service.start_call(conn.actor, conn.consultation_id))
        elif kind in ("signal", "call_connected", "hangup"):
            await _on_call(conn, kind, frame)
        else:
            await conn.error("unknown_type", f"unknown frame type {kind!r}")


class _Repeated(Exception):
    """A `client_id` already stored (the unique index said so)."""


class _Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


async def _in_transaction(runtime: Runtime, work: Any) -> Any:
    """Run `work(service)` in one committed transaction; a DomainError rolls it back.

    A database that is momentarily out of reach (no connection free in time, a dropped
    connection) is answered as the DomainError `unavailable` (503): the frame failed, nothing
    was stored, the socket stays open and the client may send it again (with its client_id).
    """
    try:
        async with runtime.sessionmaker() as session:
            service = ConsultationService(session, runtime.settings, runtime.files)
            try:
                result = await work(service)
            except DomainError:
                await session.rollback()
                raise
            await session.commit()
            return result
    except IntegrityError as exc:
        raise _Repeated from exc
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.warning("live chat: database unavailable for a frame: %s", exc)
        raise _Unavailable("the service is busy; send it again") from exc


async def _attempt(conn: _Connection, work: Any) -> None:
    """Run `work(service)` in a transaction; a refusal is answered with its error frame."""
    try:
        await _in_transaction(conn.runtime, work)
    except DomainError as exc:
        await conn.refused(exc)


async def _post_one(
    runtime: Runtime, actor: Actor, consultation_id: int, data: MessageCreate
) -> tuple[dict[str, Any], bool]:
    """One message in a transaction of its own: (the message as JSON, stored now); a repeated
    client_id is answered with the stored message. Raises DomainError for a refusal."""
    try:
        try:  # most messages are new: store without looking the client_id up first
            message, stored = await _in_transaction(
                runtime,
                lambda service: service.post_message_once(actor, consultation_id, data, look_first=False),
            )
        except _Repeated:
            message, stored = await _in_transaction(
                runtime, lambda service: service.post_message_once(actor, consultation_id, data)
            )
    except _Repeated as exc:  # pragma: no cover - a repeat found by the index and then gone
        raise _Unavailable("send it again") from exc
    return MessageRead.model_validate(message).model_dump(mode="json"), stored


def batcher_of(app: Any, runtime: Runtime) -> MessageBatcher:
    """The process's group-commit writer of chat messages (made on first use)."""
    batcher: MessageBatcher | None = getattr(app.state, "chat_batcher", None)
    if batcher is None:
        batcher = app.state.chat_batcher = MessageBatcher(
            runtime.engine, lambda actor, cid, data: _post_one(runtime, actor, cid, data)
        )
    return batcher


async def _on_send(conn: _Connection, frame: dict[str, Any]) -> None:
    client_id = frame.get("client_id")
    try:
        data = MessageCreate.model_validate({k: v for k, v in frame.items() if k != "type"})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        await conn.error("invalid_message", problems, client_id=client_id)
        return
    if data.client_id is not None:
        conn.own.add(data.client_id)
    try:
        message, stored = await batcher_of(conn.socket.app, conn.runtime).post(
            conn.actor, conn.consultation_id, data
        )
    except DomainError as exc:
        if data.client_id is not None:
            conn.own.discard(data.client_id)
        await conn.refused(exc, client_id=client_id)
        return
    if not stored and data.client_id is not None:
        conn.own.discard(data.client_id)  # nothing new was published: no echo will come
    # Committed: now, and only now, the sender hears that it is stored. The ack carries the
    # message and takes its place in this socket's stream, in seq order (see write()).
    ack = {
        "type": "ack",
        "client_id": data.client_id,
        "seq": message["seq"],
        "id": message["id"],
        "duplicate": not stored,
        "message": message,
    }
    conn.deliver(ack, orjson.dumps(ack).decode())


async def _on_read(conn: _Connection, frame: dict[str, Any]) -> None:
    try:
        data = ReadIn.model_validate({"seq": frame.get("seq")})
    except ValidationError:
        await conn.error("invalid_read", "seq must be a whole number ≥ 0")
        return
    await _attempt(conn, lambda service: service.mark_read(conn.actor, conn.consultation_id, data.seq))


SIGNAL_LIMIT = 64 * 1024  # an SDP offer with many candidates is a few kB


async def _on_call(conn: _Connection, kind: str, frame: dict[str, Any]) -> None:
    """WebRTC signalling (offer, answer, ICE candidates) relayed to the other side, and the
    call's connection and end, recorded in the consultation."""
    call_id = frame.get("call_id")
    if not isinstance(call_id, int) or isinstance(call_id, bool) or call_id <= 0:
        await conn.error("invalid_call", "call_id must be a call's id")
        return
    if kind == "call_connected":
        await _attempt(
            conn, lambda service: service.call_connected(conn.actor, conn.consultation_id, call_id)
        )
        return
    if kind == "hangup":
        try:
            reason = CallEndIn.model_validate({"reason": frame.get("reason", "hangup")}).reason
        except ValidationError:
            await conn.error("invalid_call", "unknown hang-up reason")
            return
        await _attempt(
            conn, lambda service: service.end_call(conn.actor, conn.consultation_id, call_id, reason)
        )
        return
    data = frame.get("data")
    if not isinstance(data, dict) or len(orjson.dumps(data)) > SIGNAL_LIMIT:
        await conn.error("invalid_signal", "data must be an object under 64 kB")
        return
    async with conn.runtime.sessionmaker() as session:
        call = await ConsultationRepository(session).call(conn.consultation_id, call_id)
    if call is None or call.ended_at is not None:
        await conn.error("call_ended", "no such call going on")
        return
    conn.hub.publish(
        conn.consultation_id,
        {
            "type": "signal",
            "consultation_id": conn.consultation_id,
            "call_id": call_id,
            "from": conn.actor.account_id,
            "data": data,
        },
    )
