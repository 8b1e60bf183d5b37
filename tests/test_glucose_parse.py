"""The column-by-column reading parser agrees with the one-by-one parser it speeds up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ehospital.glucose.ingest import Batch, DeviceDefaults, _parse_carefully, parse_items

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DEVICE = DeviceDefaults(unit="mmol/L", offset_minutes=480, kind="cgm")

times = st.one_of(
    st.integers(min_value=-500 * 1440, max_value=60).map(
        lambda m: (NOW + timedelta(minutes=m)).astimezone().isoformat()
    ),
    st.tuples(
        st.integers(-3000, 60), st.sampled_from(["+08:00", "-05:30", "+00:00", "Z", "", "+0800", "+8"])
    ).map(
        lambda p: (NOW + timedelta(minutes=p[0])).replace(tzinfo=None).isoformat(timespec="seconds") + p[1]
    ),
    st.sampled_from(["garbage", "2026-13-01T00:00:00+08:00", "2026-11-22T24:00:00Z", "", "2026-11-22"]),
    st.integers(),
)
values = st.one_of(
    st.floats(min_value=0, max_value=50),
    st.floats(min_value=0, max_value=800),
    st.integers(min_value=0, max_value=700),
    st.sampled_from([float("nan"), float("inf"), True, "5.5", None]),
)
items = st.one_of(
    st.fixed_dictionaries(
        {"time": times, "value": values},
        optional={
            "unit": st.sampled_from(["mg/dL", "mmol/L", "mmol"]),
            "kind": st.sampled_from(["cgm", "smbg", "x"]),
        },
    ),
    st.just("not an object"),
    st.fixed_dictionaries({"time": times, "value": values, "colour": st.just("red")}),
)


def _rows(batch: Batch) -> list[tuple[Any, ...]]:
    return sorted(
        zip(
            np.round(batch.epoch, 3).tolist(),
            batch.offset.tolist(),
            np.round(batch.mgdl, 9).tolist(),
            batch.value.tolist(),
            batch.unit,
            batch.kind,
            strict=True,
        )
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(items, max_size=30))
def test_columns_and_one_by_one_agree(batch: list[Any]) -> None:
    fast, fast_errors = parse_items(batch, DEVICE, NOW)
    slow, slow_errors = _parse_carefully(batch, list(range(len(batch))), DEVICE, NOW)
    assert _rows(fast) == _rows(Batch.of(slow))
    assert [(e.index, e.code) for e in fast_errors] == [(e.index, e.code) for e in slow_errors]


def test_offsets_and_units_of_the_usual_shapes() -> None:
    batch, errors = parse_items(
        [
            {"time": "2026-11-22T08:00:00+08:00", "value": 5.5},
            {"time": "2026-11-22T00:05:00Z", "value": 100, "unit": "mg/dL"},
            {"time": "2026-11-22T08:10:00", "value": 6.0},  # naive: the device's +08:00
            {"time": "2026-11-21T19:15:00-05:00", "value": 7, "kind": "smbg"},
        ],
        DEVICE,
        NOW,
    )
    assert errors == []
    start = datetime(2026, 11, 22, 0, 0, tzinfo=UTC).timestamp()
    assert (batch.epoch - start).tolist() == [0.0, 300.0, 600.0, 900.0]
    assert batch.offset.tolist() == [480, 0, 480, -300]
    assert batch.mgdl.tolist() == [99.0, 100.0, 108.0, 126.0]
    assert (batch.unit, batch.kind) == (
        ["mmol/L", "mg/dL", "mmol/L", "mmol/L"],
        ["cgm", "cgm", "cgm", "smbg"],
    )
