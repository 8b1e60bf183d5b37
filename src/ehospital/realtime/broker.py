"""Publish/subscribe between the server processes, plus who is present where.

`MemoryBroker` serves one process (the default install); `RedisBroker` lets any number of
processes share the work (`EHOSPITAL_BROKER_URL=redis://…`): a message published by the process
that stored it reaches the sockets every other process holds. Delivery through the broker is
best effort and fast; the database stays the record, and receivers fill any gap from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[bytes], None]
PRESENCE_TTL = 60.0  # seconds a presence mark lives without a refresh


class Broker(ABC):
    """One channel every process listens to, plus who is present where.

    Every process receives every payload and keeps the events of the consultations it holds
    sockets for (the hub filters by a prefix, without parsing the rest). One channel instead of
    one per consultation means no subscribe round trip when a socket joins, and a batch of
    events from one process travels as one payload, read once by each process; the price is
    that each process sees the whole deployment's events, a few microseconds each for those it
    drops. (Socket.IO's Redis adapter and Phoenix.PubSub broadcast the same way.)
    `handler(payload)` runs on the event loop.
    """

    def __init__(self) -> None:
        self.handler: Handler | None = None

    async def start(self, handler: Handler) -> None:
        self.handler = handler

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    async def publish(self, payload: bytes) -> None: ...

    @abstractmethod
    async def touch_presence(self, room: str, member: str) -> None:
        """Mark `member` present in `room` for PRESENCE_TTL seconds."""

    @abstractmethod
    async def leave_presence(self, room: str, member: str) -> None: ...

    @abstractmethod
    async def present(self, room: str) -> list[str]:
        """Members marked present in `room` in the last PRESENCE_TTL seconds."""


class MemoryBroker(Broker):
    """One process: publishing hands the payload to this process's own hub."""

    def __init__(self) -> None:
        super().__init__()
        self.presence: dict[str, dict[str, float]] = {}

    async def publish(self, payload: bytes) -> None:
        if self.handler is not None:
            self.handler(payload)

    async def touch_presence(self, room: str, member: str) -> None:
        self.presence.setdefault(room, {})[member] = time.monotonic() + PRESENCE_TTL

    async def leave_presence(self, room: str, member: str) -> None:
        members = self.presence.get(room, {})
        members.pop(member, None)
        if not members:
            self.presence.pop(room, None)

    async def present(self, room: str) -> list[str]:
        now = time.monotonic()
        members = self.presence.get(room, {})
        return sorted(m for m, until in members.items() if until > now)


class RedisBroker(Broker):
    """Redis pub/sub on one channel (`<prefix>:events`), read by one subscriber connection per
    process; presence in a sorted set per room scored by expiry time."""

    def __init__(self, url: str, prefix: str = "ehospital") -> None:
        super().__init__()
        import redis.asyncio as aioredis

        self.url = url
        self.prefix = prefix
        self.channel = f"{prefix}:events"
        # A blocking pool: under a burst (thousands of sockets joining at once) callers wait up
        # to 10 s for one of 64 connections instead of failing at once.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10)
        self.redis: Any = aioredis.Redis(connection_pool=pool)
        self.pubsub: Any = None
        self.reader: asyncio.Task[None] | None = None

    def _key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def start(self, handler: Handler) -> None:
        await super().start(handler)
        await self.redis.ping()  # a broker that does not answer stops the start-up, loudly
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self.pubsub.subscribe(self.channel)
        self.reader = asyncio.create_task(self._read(), name="broker-reader")

    async def _read(self) -> None:
        while True:
            try:
                async for item in self.pubsub.listen():
                    if item.get("type") != "message" or self.handler is None:
                        continue
                    try:
                        self.handler(item["data"])
                    except Exception:  # one bad payload must not stop the reader
                        log.exception("broker handler failed")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the broker subscription; reconnecting", exc_info=True)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self.pubsub.subscribe(self.channel)

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    async def publish(self, payload: bytes) -> None:
        await self.redis.publish(self.channel, payload)

    async def touch_presence(self, room: str, member: str) -> None:
        key = self._key(f"presence:{room}")
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(key, {member: now + PRESENCE_TTL})
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.expire(key, int(PRESENCE_TTL * 2))
        await pipe.execute()

    async def leave_presence(self, room: str, member: str) -> None:
        await self.redis.zrem(self._key(f"presence:{room}"), member)

    async def present(self, room: str) -> list[str]:
        found = await self.redis.zrangebyscore(self._key(f"presence:{room}"), time.time(), "+inf")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in found)


def broker_from_url(url: str, prefix: str = "ehospital") -> Broker:
    """The broker a setting names: "" → in memory; redis://… → Redis."""
    if not url:
        return MemoryBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url, prefix)
    raise ValueError(f"unsupported broker URL {url!r} (expected redis://host:port/db)")
