"""Glucose analytics: consensus CGM metrics (agreeing with the R package iglu), a pure library
usable without the server."""

from ehospital.glucose.metrics import (
    Grid,
    Series,
    all_metrics,
    basic_metrics,
    conga,
    day_by_day,
    mag,
    mage,
    modd,
    sampling_interval_minutes,
)

__all__ = [
    "Grid",
    "Series",
    "all_metrics",
    "basic_metrics",
    "conga",
    "day_by_day",
    "mag",
    "mage",
    "modd",
    "sampling_interval_minutes",
]
