"""A Nightscout-compatible endpoint (API v1 entries), so uploaders such as xDrip+ send to us
unchanged: the site URL is ours, the API secret is the device's secret (uploaders send its
SHA-1 in the `api-secret` header), and the readings go to that device's patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from ehospital import __version__
from ehospital.deps import SessionDep
from ehospital.glucose.ingest import MAX_ITEMS, Batch, parse_nightscout
from ehospital.glucose.models import Device, Reading
from ehospital.glucose.router import read_json_body
from ehospital.glucose.service import DeviceKey, GlucoseService, defaults_of
from ehospital.kit.errors import PayloadTooLarge, Unprocessable
from ehospital.kit.models import utcnow

router = APIRouter(tags=["nightscout"])

ApiSecret = Annotated[str | None, Header(alias="api-secret")]
_FIND_OPS = {"$gte": "__ge__", "$gt": "__gt__", "$lte": "__le__", "$lt": "__lt__"}


def _entry(reading: Reading, device_uid: str) -> dict[str, Any]:
    local = reading.measured_at.astimezone(timezone(timedelta(minutes=reading.utc_offset_minutes)))
    ms = round(reading.measured_at.timestamp() * 1000)
    kind, field = ("sgv", "sgv") if reading.kind == "cgm" else ("mbg", "mbg")
    return {
        "_id": f"{device_uid}-{ms}",
        "type": kind,
        field: round(reading.mgdl),
        "date": ms,
        "dateString": local.isoformat(timespec="milliseconds"),
        "sysTime": local.isoformat(timespec="milliseconds"),
        "utcOffset": reading.utc_offset_minutes,
        "device": device_uid,
    }


@router.post("/api/v1/entries")
@router.post("/api/v1/entries.json", include_in_schema=False)
async def post_entries(request: Request, session: SessionDep, api_secret: ApiSecret = None) -> JSONResponse:
    """Nightscout v1: store `sgv` (CGM) and `mbg` (meter) entries in mg/dL. The answer has one
    element per entry, in order: the entry as stored, or `{"index", "error": {code, message}}`
    for one that was rejected (the others are stored regardless)."""
    service = GlucoseService(session)
    device = await service.device_by_api_secret(api_secret)
    body = await read_json_body(request)
    entries = body if isinstance(body, list) else [body] if isinstance(body, dict) else None
    if entries is None:
        raise Unprocessable("expected an entry or an array of entries", code="invalid_upload")
    if len(entries) > MAX_ITEMS:
        raise PayloadTooLarge(f"at most {MAX_ITEMS} entries per upload", code="too_many_readings")
    now = utcnow()
    slots, bad = parse_nightscout(entries, defaults_of(device), now)
    good = Batch.of([p for p in slots if p is not None])
    await service.ingest(DeviceKey.of(device), "nightscout", good, bad, len(entries), now)
    errors = {e.index: e for e in bad}
    answer: list[dict[str, Any]] = []
    for index, parsed in enumerate(slots):
        if parsed is None:
            e = errors[index]
            answer.append({"index": index, "error": {"code": e.code, "message": e.message}})
            continue
        ms = round(parsed.measured_at.timestamp() * 1000)
        kind = "sgv" if parsed.kind == "cgm" else "mbg"
        answer.append({"_id": f"{device.uid}-{ms}", "type": kind, kind: parsed.value, "date": ms})
    return JSONResponse(answer)


@router.get("/api/v1/entries")
@router.get("/api/v1/entries.json", include_in_schema=False)
@router.get("/api/v1/entries/sgv.json", include_in_schema=False)
async def get_entries(request: Request, session: SessionDep, api_secret: ApiSecret = None) -> JSONResponse:
    """Nightscout v1: the newest entries of the device's patient first; `count` (default 10,
    at most 10000), `find[date][$gte|$gt|$lte|$lt]` (epoch ms) and `find[type]` (sgv, mbg)."""
    device = await GlucoseService(session).device_by_api_secret(api_secret)
    params = request.query_params
    try:
        count = int(params.get("count", "10"))
    except ValueError:
        raise Unprocessable("count must be a whole number", code="invalid_count") from None
    if not 1 <= count <= 10_000:
        raise Unprocessable("count must be 1 to 10000", code="invalid_count")
    query = (
        select(Reading, Device.uid)
        .join(Device, Device.id == Reading.device_id)
        .where(Device.patient_id == device.patient_id)  # through the devices' index
    )
    if request.url.path.endswith("/sgv.json"):
        query = query.where(Reading.kind == "cgm")
    for op, method in _FIND_OPS.items():
        raw = params.get(f"find[date][{op}]")
        if raw is None:
            continue
        try:
            bound = datetime.fromtimestamp(float(raw) / 1000.0, UTC)
        except (ValueError, OverflowError, OSError):
            raise Unprocessable(f"find[date][{op}] must be epoch milliseconds", code="invalid_find") from None
        query = query.where(getattr(Reading.measured_at, method)(bound))
    kind = params.get("find[type]")
    if kind is not None:
        if kind not in ("sgv", "mbg"):
            raise Unprocessable("find[type] must be sgv or mbg", code="invalid_find")
        query = query.where(Reading.kind == ("cgm" if kind == "sgv" else "smbg"))
    rows = await session.execute(query.order_by(Reading.measured_at.desc()).limit(count))
    return JSONResponse([_entry(r, uid) for r, uid in rows.all()])


@router.get("/api/v1/status.json")
@router.get("/api/v1/status", include_in_schema=False)
async def status(session: SessionDep, api_secret: ApiSecret = None) -> dict[str, Any]:
    """What Nightscout clients ask when they connect: the server, the unit, and (with a valid
    api-secret) that the secret is accepted."""
    authorized = False
    units = "mmol"
    if api_secret:
        device = await GlucoseService(session).device_by_api_secret(api_secret)
        authorized = True
        units = "mmol" if device.unit == "mmol/L" else "mg/dl"
    now = utcnow()
    return {
        "status": "ok",
        "name": "ehospital",
        "version": __version__,
        "serverTime": now.isoformat(),
        "serverTimeEpoch": round(now.timestamp() * 1000),
        "apiEnabled": True,
        "careportalEnabled": False,
        "settings": {"units": units},
        "authorized": authorized,
    }
