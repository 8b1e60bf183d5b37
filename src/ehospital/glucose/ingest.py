"""Reading uploads parsed item by item: our JSON, FHIR R4 Observations and Nightscout entries.

One bad item never rejects its batch: each parser returns the valid readings and, for the
others, the item's index with a machine-readable code. Values are kept as measured (value and
unit) and in canonical mg/dL; instants are made timezone-aware with the item's own offset, or
the device's when the item has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import numpy.typing as npt

from ehospital.glucose.metrics import MGDL_PER_MMOL, Floats

UNITS = ("mg/dL", "mmol/L")
KINDS = ("cgm", "smbg")
# What meters and sensors can report: below 20 mg/dL (1.1 mmol/L) or above 600 (33.3) they
# show LO / HI instead of a number. CGMs floor at 39-40 mg/dL ("LO"), which is kept as is.
MGDL_RANGE = (20.0, 600.0)
# A device clock a little ahead is tolerated; readings older than this are refused.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_AGE = timedelta(days=400)
MAX_ITEMS = 50_000

# LOINC codes of glucose observations (FHIR): interstitial fluid (CGM) and capillary blood
# by glucometer, in mass and in moles per volume.
LOINC = {
    "99504-3": ("cgm", "mg/dL"),
    "105272-9": ("cgm", "mmol/L"),
    "41653-7": ("smbg", "mg/dL"),
    "14743-9": ("smbg", "mmol/L"),
}
_UCUM_UNITS = {"mg/dL": "mg/dL", "mg/dl": "mg/dL", "mmol/L": "mmol/L", "mmol/l": "mmol/L"}


@dataclass(slots=True)  # not frozen: tens of thousands are made per request, and frozen init is slow
class Parsed:
    """One valid reading."""

    measured_at: datetime  # timezone-aware (UTC, or the offset it was sent with)
    offset_minutes: int
    mgdl: float
    value: float
    unit: str
    kind: str
    epoch: float  # measured_at as POSIX seconds


@dataclass(frozen=True)
class Batch:
    """Valid readings column by column, as they are stored (a bulk upload is tens of thousands
    of readings: columns cost a fraction of an object per reading)."""

    epoch: Floats  # POSIX seconds
    offset: npt.NDArray[np.int32]  # minutes east of UTC where it was measured
    mgdl: Floats
    value: Floats  # as measured
    unit: list[str]
    kind: list[str]

    def __len__(self) -> int:
        return int(self.epoch.size)

    @classmethod
    def of(cls, parsed: Sequence[Parsed]) -> Batch:
        return cls(
            np.array([p.epoch for p in parsed], dtype=np.float64),
            np.array([p.offset_minutes for p in parsed], dtype=np.int32),
            np.array([p.mgdl for p in parsed], dtype=np.float64),
            np.array([p.value for p in parsed], dtype=np.float64),
            [p.unit for p in parsed],
            [p.kind for p in parsed],
        )

    def __add__(self, other: Batch) -> Batch:
        if not len(other):
            return self
        if not len(self):
            return other
        return Batch(
            np.concatenate((self.epoch, other.epoch)),
            np.concatenate((self.offset, other.offset)),
            np.concatenate((self.mgdl, other.mgdl)),
            np.concatenate((self.value, other.value)),
            self.unit + other.unit,
            self.kind + other.kind,
        )

    @property
    def latest(self) -> datetime:
        return datetime.fromtimestamp(float(self.epoch.max()), UTC)


EMPTY = Batch.of([])


@dataclass(frozen=True, slots=True)
class ItemError:
    index: int
    code: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "code": self.code, "message": self.message}


class Rejected(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DeviceDefaults:
    unit: str
    offset_minutes: int
    kind: str  # the kind of reading the device makes (cgm for a CGM, smbg for a meter)


def to_mgdl(value: float, unit: str) -> float:
    return value * MGDL_PER_MMOL if unit == "mmol/L" else value


def _number(raw: Any, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Rejected("invalid_value", f"{what} must be a number")
    value = float(raw)
    if not math.isfinite(value):
        raise Rejected("invalid_value", f"{what} must be a finite number")
    return value


def _checked_value(value: float, unit: str) -> float:
    mgdl = to_mgdl(value, unit)
    low, high = MGDL_RANGE
    if not low - 1e-9 <= mgdl <= high + 1e-9:
        shown = f"{low / MGDL_PER_MMOL:.1f}-{high / MGDL_PER_MMOL:.1f}" if unit == "mmol/L" else "20-600"
        message = f"{value:g} {unit} is outside what meters report ({shown} {unit})"
        raise Rejected("value_out_of_range", message)
    return mgdl


def _unit(raw: Any, default: str) -> str:
    if raw is None:
        return default
    unit = _UCUM_UNITS.get(raw) if isinstance(raw, str) else None
    if unit is None:
        raise Rejected("invalid_unit", "unit must be mg/dL or mmol/L")
    return unit


def _instant(raw: Any, default_offset: int, now: datetime) -> tuple[datetime, int]:
    """An ISO 8601 time with its offset (or the device's when it has none), in UTC."""
    if not isinstance(raw, str) or not 10 <= len(raw) <= 40:
        raise Rejected("invalid_time", "time must be an ISO 8601 date-time, e.g. 2026-11-22T08:05:00+08:00")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise Rejected(
            "invalid_time", "time must be an ISO 8601 date-time, e.g. 2026-11-22T08:05:00+08:00"
        ) from None
    if when.tzinfo is None:
        offset = default_offset
        when = when.replace(tzinfo=timezone(timedelta(minutes=offset)))
    else:
        delta = when.utcoffset()
        assert delta is not None
        offset = int(delta.total_seconds() // 60)
    return _recent(when.astimezone(UTC), now), offset


def _recent(when: datetime, now: datetime) -> datetime:
    if when > now + FUTURE_TOLERANCE:
        raise Rejected("time_in_future", "the reading's time is in the future (check the device clock)")
    if when < now - MAX_AGE:
        raise Rejected("time_too_old", f"readings older than {MAX_AGE.days} days are not accepted")
    return when


Outcome = tuple[list[Parsed], list[ItemError]]
_ITEM_KEYS = frozenset({"time", "value", "unit", "kind"})
_UNIT_SET = frozenset(UNITS)
_KIND_SET = frozenset(KINDS)
_OFFSETS: dict[str, int] = {}  # "+08:00" -> 480, filled as offsets are met


def _offset_suffix(tail: str) -> int | None:
    """Minutes of a "+HH:MM" / "-HH:MM" ending, or None when it is not one."""
    found = _OFFSETS.get(tail)
    if found is None and len(tail) == 6 and tail[0] in "+-" and tail[3] == ":":
        hours, minutes = tail[1:3], tail[4:6]
        if hours.isdigit() and minutes.isdigit() and int(hours) <= 14 and int(minutes) < 60:
            found = (int(hours) * 60 + int(minutes)) * (1 if tail[0] == "+" else -1)
            _OFFSETS[tail] = found
    return found


def parse_items(items: Sequence[Any], device: DeviceDefaults, now: datetime) -> tuple[Batch, list[ItemError]]:
    """Our JSON: `[{"time": ISO 8601, "value": n, "unit"?: "mg/dL"|"mmol/L", "kind"?: "cgm"|"smbg"}]`.

    Items of the usual shape are checked column by column with numpy (times parsed in C); the
    others, and any that fail there, are checked one by one to name what is wrong."""
    at: list[int] = []
    stamps: list[str] = []
    offsets: list[int] = []
    values: list[float | int] = []
    units: list[str] = []
    kinds: list[str] = []
    careful: list[int] = []
    own_unit, own_kind, own_offset = device.unit, device.kind, device.offset_minutes
    for index, item in enumerate(items):
        if type(item) is dict and _ITEM_KEYS.issuperset(item):
            raw_time, value = item.get("time"), item.get("value")
            if (
                type(raw_time) is str
                and (type(value) is float or type(value) is int)
                and 16 <= len(raw_time) <= 35
            ):
                unit, kind = item.get("unit", own_unit), item.get("kind", own_kind)
                if unit in _UNIT_SET and kind in _KIND_SET:
                    if raw_time[-1] == "Z":
                        stamp, offset = raw_time[:-1], 0
                    else:
                        suffix = _offset_suffix(raw_time[-6:])
                        if suffix is None:  # naive (the device's offset), or an offset spelt otherwise
                            if "+" in raw_time or raw_time.count("-") != 2:
                                careful.append(index)
                                continue
                            stamp, offset = raw_time, own_offset
                        else:
                            stamp, offset = raw_time[:-6], suffix
                    at.append(index)
                    stamps.append(stamp)
                    offsets.append(offset)
                    values.append(value)
                    units.append(unit)
                    kinds.append(kind)
                    continue
        careful.append(index)
    batch = EMPTY
    if at:
        try:
            local = np.array(stamps, dtype="datetime64[us]").astype(np.int64)
            measured = np.array(values, dtype=np.float64)
        except (ValueError, OverflowError):  # some time or value numpy cannot read: one by one
            careful = sorted(careful + at)
        else:
            offset_array = np.array(offsets, dtype=np.int32)
            epoch = local / 1e6 - offset_array * 60.0
            mmol = np.array([u == "mmol/L" for u in units], dtype=np.bool_)
            mgdl = np.where(mmol, measured * MGDL_PER_MMOL, measured)
            low, high = MGDL_RANGE
            with np.errstate(invalid="ignore"):
                ok = (
                    (mgdl >= low)
                    & (mgdl <= high)
                    & (epoch >= (now - MAX_AGE).timestamp())
                    & (epoch <= (now + FUTURE_TOLERANCE).timestamp())
                )
            if not ok.all():
                careful = sorted(careful + [at[i] for i in np.flatnonzero(~ok).tolist()])
            keep = np.flatnonzero(ok).tolist()
            batch = Batch(
                epoch[ok],
                offset_array[ok],
                mgdl[ok],
                measured[ok],
                [units[i] for i in keep] if len(keep) < len(units) else units,
                [kinds[i] for i in keep] if len(keep) < len(kinds) else kinds,
            )
    good, bad = _parse_carefully(items, careful, device, now)
    return batch + Batch.of(good), bad


def _parse_carefully(
    items: Sequence[Any], indexes: list[int], device: DeviceDefaults, now: datetime
) -> Outcome:
    good: list[Parsed] = []
    bad: list[ItemError] = []
    for index in indexes:
        item = items[index]
        try:
            if not isinstance(item, dict):
                raise Rejected("invalid_item", "each reading must be a JSON object")
            if not _ITEM_KEYS.issuperset(item):
                extra = item.keys() - _ITEM_KEYS
                raise Rejected("unknown_field", f"unknown field(s): {', '.join(sorted(map(str, extra)))}")
            unit = _unit(item.get("unit"), device.unit)
            checked = _number(item.get("value"), "value")
            mgdl = _checked_value(checked, unit)
            kind = item.get("kind", device.kind)
            if kind not in KINDS:
                raise Rejected("invalid_kind", "kind must be cgm or smbg")
            moment, minutes = _instant(item.get("time"), device.offset_minutes, now)
            good.append(Parsed(moment, minutes, mgdl, checked, unit, kind, moment.timestamp()))
        except Rejected as exc:
            bad.append(ItemError(index, exc.code, exc.message))
    return good, bad


# --- FHIR R4 ------------------------------------------------------------------------------------


def observations_of(body: dict[str, Any]) -> list[Any]:
    """The Observations of a Bundle (any type), or the one Observation given."""
    if body.get("resourceType") == "Observation":
        return [body]
    if body.get("resourceType") != "Bundle":
        raise Rejected("invalid_fhir", "expected a FHIR Bundle or Observation")
    entries = body.get("entry") or []
    if not isinstance(entries, list):
        raise Rejected("invalid_fhir", "Bundle.entry must be a list")
    return [e.get("resource") if isinstance(e, dict) else None for e in entries]


def _loinc(observation: dict[str, Any]) -> tuple[str, str]:
    code = observation.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    for coding in codings if isinstance(codings, list) else ():
        if isinstance(coding, dict) and coding.get("system") == "http://loinc.org":
            found = LOINC.get(str(coding.get("code")))
            if found:
                return found
    raise Rejected("unsupported_code", f"Observation.code must be LOINC {', '.join(LOINC)} (glucose)")


def _effective(observation: dict[str, Any]) -> Any:
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in observation:
            return observation[key]
    period = observation.get("effectivePeriod")
    if isinstance(period, dict):
        return period.get("start")
    return None


def parse_fhir(body: dict[str, Any], device: DeviceDefaults, now: datetime) -> Outcome:
    """Glucose Observations (LOINC 99504-3 / 105272-9 interstitial, 41653-7 / 14743-9 capillary)
    with valueQuantity in mg/dL or mmol/L (UCUM) and an effective time; errors name the entry."""
    good: list[Parsed] = []
    bad: list[ItemError] = []
    for index, resource in enumerate(observations_of(body)):
        try:
            if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
                raise Rejected("not_an_observation", "the entry is not an Observation")
            if resource.get("status") in ("entered-in-error", "cancelled"):
                raise Rejected("not_a_result", f"status {resource.get('status')} carries no reading")
            kind, loinc_unit = _loinc(resource)
            quantity = resource.get("valueQuantity")
            if not isinstance(quantity, dict):
                raise Rejected("invalid_value", "valueQuantity is required")
            unit = _unit(quantity.get("code") or quantity.get("unit") or loinc_unit, loinc_unit)
            if unit != loinc_unit:
                raise Rejected("invalid_unit", f"the LOINC code is measured in {loinc_unit}, not {unit}")
            value = _number(quantity.get("value"), "valueQuantity.value")
            mgdl = _checked_value(value, unit)
            when, offset = _instant(_effective(resource), device.offset_minutes, now)
            good.append(Parsed(when, offset, mgdl, value, unit, kind, when.timestamp()))
        except Rejected as exc:
            bad.append(ItemError(index, exc.code, exc.message))
    return good, bad


# --- Nightscout ---------------------------------------------------------------------------------


def parse_nightscout(
    entries: Sequence[Any], device: DeviceDefaults, now: datetime
) -> tuple[list[Parsed | None], list[ItemError]]:
    """Nightscout entries (`type` sgv or mbg, mg/dL, `date` in epoch ms, `utcOffset` minutes or
    the offset of `dateString`). Returns one slot per entry (None where rejected)."""
    slots: list[Parsed | None] = []
    bad: list[ItemError] = []
    for index, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise Rejected("invalid_item", "each entry must be a JSON object")
            kind_name = entry.get("type", "sgv")
            if kind_name == "sgv":
                kind, field = "cgm", "sgv"
            elif kind_name == "mbg":
                kind, field = "smbg", "mbg"
            else:
                raise Rejected("unsupported_type", f"entries of type {kind_name!r} are not glucose readings")
            value = _number(entry.get(field), field)
            if kind == "cgm" and value < 39:  # Nightscout's codes for sensor states, not glucose
                raise Rejected("sensor_error", f"sgv {value:g} is a sensor status code, not a reading")
            mgdl = _checked_value(value, "mg/dL")
            when, offset = _nightscout_instant(entry, device.offset_minutes, now)
            slots.append(Parsed(when, offset, mgdl, value, "mg/dL", kind, when.timestamp()))
        except Rejected as exc:
            slots.append(None)
            bad.append(ItemError(index, exc.code, exc.message))
    return slots, bad


def _nightscout_instant(entry: dict[str, Any], default_offset: int, now: datetime) -> tuple[datetime, int]:
    stamp = entry.get("date")
    if stamp is None and "dateString" in entry:
        return _instant(entry["dateString"], default_offset, now)
    ms = _number(stamp, "date")
    try:
        when = datetime.fromtimestamp(ms / 1000.0, UTC)
    except (OverflowError, OSError, ValueError):
        raise Rejected("invalid_time", "date must be milliseconds since 1970") from None
    offset = default_offset
    raw_offset = entry.get("utcOffset")
    if isinstance(raw_offset, int) and not isinstance(raw_offset, bool) and -840 <= raw_offset <= 840:
        offset = raw_offset
    elif isinstance(entry.get("dateString"), str):
        try:
            parsed = datetime.fromisoformat(entry["dateString"])
            delta = parsed.utcoffset()
            if delta is not None:
                offset = int(delta.total_seconds() // 60)
        except ValueError:
            pass
    return _recent(when, now), offset
