"""Glucose analytics: consensus CGM metrics (agreeing with the R package iglu), a pure library
usable without the server."""

from ehospital.glucose.metrics import Series, basic_metrics, sampling_interval_minutes

__all__ = ["Series", "basic_metrics", "sampling_interval_minutes"]
