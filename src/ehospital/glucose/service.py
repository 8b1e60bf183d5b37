"""Glucose devices and readings: registration, authenticated uploads, access to a patient's data."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.glucose.alerting import AlertService
from ehospital.glucose.ingest import Batch, DeviceDefaults, ItemError
from ehospital.glucose.models import Device, DeviceKind
from ehospital.glucose.repository import ReadingRepository, SeriesRows
from ehospital.glucose.schemas import DeviceCreate
from ehospital.kit.context import SYSTEM, Actor
from ehospital.kit.errors import Conflict, Forbidden, NotFound, Unauthenticated
from ehospital.kit.models import one_or_none, utcnow
from ehospital.patients.models import Patient
from ehospital.patients.repository import visible_patients

# The statements of every upload, built once (building them costs more than running them).
_DEVICE_BY_DIGEST = select(Device).where(Device.secret_digest == bindparam("digest"))
_LAST_READING = (
    update(Device)
    .where(Device.id == bindparam("device"))
    .where((Device.last_reading_at.is_(None)) | (Device.last_reading_at < bindparam("latest")))
    .values(last_reading_at=bindparam("latest"))
    .execution_options(synchronize_session=False)
)


def api_secret_of(secret: str) -> str:
    """What a Nightscout uploader sends as `api-secret`: the SHA-1 (hex) of the secret."""
    return hashlib.sha1(secret.encode()).hexdigest()


def secret_digest(api_secret: str) -> bytes:
    """What the table keeps: SHA-256 of the api-secret (itself a credential, so never stored)."""
    return hashlib.sha256(api_secret.strip().lower().encode()).digest()


@dataclass
class UploadResult:
    received: int
    stored: int
    duplicates: int
    errors: list[ItemError]
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": len(self.errors),
            "errors": [e.as_dict() for e in self.errors],
            "alerts_raised": self.alerts,
        }


@dataclass(frozen=True, slots=True)
class DeviceKey:
    """What an upload needs to know of its device (kept in the process's cache of devices)."""

    id: int
    patient_id: int
    uid: str
    kind: str
    unit: str
    utc_offset_minutes: int

    @classmethod
    def of(cls, device: Device) -> DeviceKey:
        return cls(
            device.id, device.patient_id, device.uid, device.kind, device.unit, device.utc_offset_minutes
        )


class DeviceCache:
    """Devices whose api-secret this process checked recently, so an upload is parsed before it
    touches the database (SQLite serves one request at a time). An entry lives `ttl` seconds;
    retiring a device evicts it here at once, and in other processes within `ttl`
    (EHOSPITAL_TOKEN_CACHE_SECONDS, as for bearer tokens)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: dict[bytes, tuple[DeviceKey, float]] = {}
        self.max_entries = max_entries

    def get(self, digest: bytes) -> DeviceKey | None:
        found = self._entries.get(digest)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def put(self, digest: bytes, key: DeviceKey, seconds: float) -> None:
        if seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = (key, time.monotonic() + seconds)

    def evict(self, digest: bytes) -> None:
        self._entries.pop(digest, None)


known_devices = DeviceCache()


def defaults_of(device: Device | DeviceKey) -> DeviceDefaults:
    kind = "cgm" if device.kind == DeviceKind.CGM else "smbg"
    return DeviceDefaults(unit=device.unit, offset_minutes=device.utc_offset_minutes, kind=kind)


class GlucoseService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.readings_repo = ReadingRepository(session)

    # --- patients -------------------------------------------------------------------------------

    async def patient(self, actor: Actor, patient_id: int) -> Patient:
        """A patient whose glucose data the actor may see (404 otherwise)."""
        found = await one_or_none(self.session, visible_patients(actor).where(Patient.id == patient_id))
        if found is None:
            raise NotFound("no such patient", code="patient_not_found")
        return found

    async def own_patient(self, actor: Actor, patient_id: int) -> Patient:
        """A member of the actor's own family (registering devices, uploading)."""
        if not actor.is_patient:
            raise Forbidden(
                "only the patient's own account manages their devices", code="not_a_patient_account"
            )
        return await self.patient(actor, patient_id)

    # --- devices --------------------------------------------------------------------------------

    async def register_device(self, actor: Actor, patient_id: int, data: DeviceCreate) -> tuple[Device, str]:
        """Register a meter or CGM to a family member; returns the device and its secret (shown
        this once: the uploader's configuration needs it)."""
        patient = await self.own_patient(actor, patient_id)
        secret = "gs_" + secrets.token_urlsafe(24)
        device = Device(
            patient_id=patient.id,
            uid="gd_" + secrets.token_hex(8),
            kind=data.kind,
            label=data.label,
            unit=data.unit,
            utc_offset_minutes=data.utc_offset_minutes,
            secret_digest=secret_digest(api_secret_of(secret)),
            registered_by=actor.account_id,
        )
        self.session.add(device)
        await self.session.flush()
        record(self.session, actor, "create", "glucose_device", device.id, patient_id=patient.id)
        return device, secret

    async def devices(self, actor: Actor, patient_id: int) -> list[Device]:
        patient = await self.patient(actor, patient_id)
        rows = await self.session.scalars(
            select(Device).where(Device.patient_id == patient.id).order_by(Device.id)
        )
        return list(rows)

    async def owned_device(self, actor: Actor, uid: str) -> Device:
        device = await one_or_none(self.session, select(Device).where(Device.uid == uid))
        if device is None:
            raise NotFound("no such device", code="device_not_found")
        await self.own_patient(actor, device.patient_id)  # 404 / 403 for anyone else
        return device

    async def retire_device(self, actor: Actor, uid: str) -> Device:
        device = await self.owned_device(actor, uid)
        known_devices.evict(device.secret_digest)
        if device.retired_at is None:
            device.retired_at = utcnow()
            record(self.session, actor, "retire", "glucose_device", device.id, patient_id=device.patient_id)
        return device

    async def device_by_api_secret(self, api_secret: str | None) -> Device:
        """The device whose secret's SHA-1 this is (Nightscout's `api-secret`), or 401."""
        if not api_secret or len(api_secret) > 128:
            raise Unauthenticated("the api-secret header is missing", code="api_secret_missing")
        device: Device | None = await self.session.scalar(
            _DEVICE_BY_DIGEST, {"digest": secret_digest(api_secret)}
        )
        if device is None or not hmac.compare_digest(device.secret_digest, secret_digest(api_secret)):
            raise Unauthenticated("the api-secret matches no registered device", code="invalid_api_secret")
        if device.retired_at is not None:
            raise Unauthenticated("this device has been retired", code="device_retired")
        return device

    async def device_key(self, api_secret: str | None, ttl: float = 0.0) -> DeviceKey:
        """The device of an api-secret, from this process's cache when it was checked less
        than `ttl` seconds ago, else from the database (401 when none, or retired)."""
        if api_secret and len(api_secret) <= 128:
            cached = known_devices.get(secret_digest(api_secret))
            if cached is not None:
                return cached
        device = await self.device_by_api_secret(api_secret)
        key = DeviceKey.of(device)
        known_devices.put(device.secret_digest, key, ttl)
        return key

    async def uploading_device(
        self, actor: Actor | None, uid: str, api_secret: str | None, ttl: float = 0.0
    ) -> DeviceKey:
        """The device an upload is for: named by uid and proven by its api-secret, or by the
        bearer token of its patient's account."""
        if actor is None:
            key = await self.device_key(api_secret, ttl)
            if key.uid != uid:
                raise NotFound("no such device", code="device_not_found")
            return key
        device = await self.owned_device(actor, uid)
        if device.retired_at is not None:
            raise Conflict("this device has been retired", code="device_retired")
        return DeviceKey.of(device)

    # --- readings -------------------------------------------------------------------------------

    async def ingest(
        self,
        device: DeviceKey,
        source: str,
        parsed: Batch,
        errors: list[ItemError],
        received: int,
        now: datetime | None = None,
    ) -> UploadResult:
        """Store a batch (duplicates ignored), then judge the patient's alerts on it."""
        now = now or utcnow()
        stored = await self.readings_repo.insert(device.patient_id, device.id, source, parsed, now)
        result = UploadResult(received, stored, len(parsed) - stored, errors)
        if stored:
            latest = parsed.latest
            await self.session.execute(_LAST_READING, {"device": device.id, "latest": latest})
            raised = await AlertService(self.session).judge(device.patient_id, now, latest)
            result.alerts = [a.condition for a in raised]
        record(self.session, SYSTEM, "upload", "glucose_device", device.id, patient_id=device.patient_id)
        return result

    async def series(
        self, actor: Actor, patient_id: int, start: datetime | None, end: datetime | None
    ) -> tuple[Patient, SeriesRows]:
        patient = await self.patient(actor, patient_id)
        rows = await self.readings_repo.series(patient.id, start, end)
        record(self.session, actor, "read", "glucose_readings", None, patient_id=patient.id)
        return patient, rows
