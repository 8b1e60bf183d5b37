"""The MQTT bridge: devices publish readings to the broker, the server stores them.

A device publishes JSON to `ehospital/glucose/<uid>/readings`:
`{"api_secret": "<SHA-1 of the device secret>", "id"?: "<message id>", "readings": [{"time",
"value", "unit"?, "kind"?}, ...]}` (a single reading's fields in place of `readings` also do).
The bridge checks the secret against the topic's device, stores the readings exactly as the bulk
API does (duplicates ignored, per-item errors) and answers on `ehospital/glucose/<uid>/acks`
with the same summary plus the message id, so a device can drop what was acknowledged and
re-send the rest: re-sending is harmless.

Every server process may run a bridge: they subscribe through a shared subscription
(`$share/<group>/…`, the group named after the deployment's database unless
EHOSPITAL_MQTT_GROUP says otherwise), so the broker hands each message to one of them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ehospital.db import session_scope
from ehospital.glucose.ingest import MAX_ITEMS, parse_items
from ehospital.glucose.models import Device
from ehospital.glucose.service import DeviceKey, GlucoseService, defaults_of
from ehospital.kit.errors import DomainError
from ehospital.kit.models import utcnow

log = logging.getLogger("ehospital.mqtt")

TOPIC_PREFIX = "ehospital/glucose"
READINGS = f"{TOPIC_PREFIX}/+/readings"


def subscription(group: str) -> str:
    """The shared subscription of one deployment's processes: the broker hands each message
    to one of them. Deployments sharing a broker need different groups (by default each
    is named after its database), or one would receive the other's devices."""
    return f"$share/{group}/{READINGS}"


def default_group(database_url: str) -> str:
    return "ehospital-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


MAX_PAYLOAD = 4 * 1024 * 1024


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def broker_address(url: str) -> BrokerAddress:
    """`mqtt://[user:password@]host[:port]` (1883) or `mqtts://…` (8883, TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"the MQTT URL must be mqtt://host[:port] or mqtts://host[:port], not {url!r}")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        parts.hostname, parts.port or (8883 if tls else 1883), parts.username, parts.password, tls
    )


def device_of_topic(topic: str) -> str | None:
    pieces = topic.split("/")
    if len(pieces) == 4 and "/".join(pieces[:2]) == TOPIC_PREFIX and pieces[3] == "readings":
        return pieces[2]
    return None


async def handle(
    payload: bytes, uid: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> dict[str, Any] | None:
    """Store one message's readings; the acknowledgement to publish (errors included), or None
    for a device this deployment does not know: another deployment on the same broker receives
    the message too and answers for its own devices."""
    async with session_scope(sessionmaker) as session:
        device = await session.scalar(select(Device).where(Device.uid == uid))
        if device is None:
            return None
        answer: dict[str, Any] = {}
        try:
            if len(payload) > MAX_PAYLOAD:
                raise _Refused("payload_too_large", f"messages are limited to {MAX_PAYLOAD} bytes")
            try:
                message = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                raise _Refused("malformed_json", "the payload is not valid JSON") from None
            if not isinstance(message, dict):
                raise _Refused("invalid_upload", "the payload must be a JSON object")
            if isinstance(message.get("id"), str | int):
                answer["id"] = message["id"]
            items = message.get("readings")
            if items is None:
                items = [{k: v for k, v in message.items() if k not in ("api_secret", "id")}]
            if not isinstance(items, list):
                raise _Refused("invalid_upload", "readings must be a list")
            if len(items) > MAX_ITEMS:
                raise _Refused("too_many_readings", f"at most {MAX_ITEMS} readings per message")
            secret = message.get("api_secret")
            service = GlucoseService(session)
            proven = await service.device_by_api_secret(secret if isinstance(secret, str) else None)
            if proven.id != device.id:
                raise _Refused("invalid_api_secret", "the api_secret is not this device's")
            now = utcnow()
            good, bad = parse_items(items, defaults_of(device), now)
            result = await service.ingest(DeviceKey.of(device), "mqtt", good, bad, len(items), now)
            answer.update(result.as_dict())
            answer["ok"] = True
        except (_Refused, DomainError) as exc:
            answer.update(ok=False, error={"code": exc.code, "message": exc.message})
        return answer


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def run_bridge(url: str, sessionmaker: async_sessionmaker[AsyncSession], group: str) -> None:
    """Subscribe and store until cancelled; reconnect (1 s, doubling to 30 s) when the broker
    goes away."""
    address = broker_address(url)
    delay = 1.0
    while True:
        try:
            async with aiomqtt.Client(
                address.host,
                address.port,
                username=address.username,
                password=address.password,
                identifier=f"ehospital-{os.getpid()}",
                tls_params=aiomqtt.TLSParameters() if address.tls else None,
            ) as client:
                await client.subscribe(subscription(group), qos=1)
                log.info(
                    "MQTT bridge subscribed to %s at %s:%s", subscription(group), address.host, address.port
                )
                delay = 1.0
                async for message in client.messages:
                    uid = device_of_topic(str(message.topic))
                    if uid is None or not isinstance(message.payload, bytes | bytearray):
                        continue
                    try:
                        answer = await handle(bytes(message.payload), uid, sessionmaker)
                    except Exception:  # a database failure: the device re-sends what has no ack
                        log.exception("MQTT message for %s not stored", uid)
                        continue
                    if answer is None:
                        continue
                    await client.publish(f"{TOPIC_PREFIX}/{uid}/acks", json.dumps(answer), qos=1)
        except aiomqtt.MqttError as exc:
            log.warning(
                "MQTT broker %s:%s unavailable (%s); retrying in %.0f s",
                address.host,
                address.port,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
