"""One photo from bytes to report: decode and check it, count and grade acne, draw the overlay.

Shared by the API, the CLI (`ehospital skin analyze`) and bench/skin.py, so the figures the
bench prints are those of the real path. CPU-bound: the API runs it in a worker thread."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ehospital.skin.model import LESION_TYPES, AcneModel, AcnePrediction
from ehospital.skin.overlay import draw_overlay
from ehospital.skin.photos import Photo, PhotoRejected, load_photo
from ehospital.skin.quality import QualityReport, check_photo
from ehospital.skin.report import needs_referral

NOT_ASSESSABLE = "not_assessable"


@dataclass(frozen=True)
class Analysis:
    """The outcome for one photo; `ok` is False when a check refused it (`reason` says why)."""

    ok: bool
    reason: str | None
    quality: dict[str, Any]
    photo: Photo | None = None
    prediction: AcnePrediction | None = None
    overlay: bytes | None = None
    elapsed_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def referral(self) -> bool:
        p = self.prediction
        return p is not None and needs_referral(p.grade, p.by_type)

    def lesions_normalised(self) -> list[list[float | str]]:
        """Lesions as [x, y, radius, kind, score] in fractions of the photo's width/height
        (radius in fractions of the width), so they fit the stored photo at any resolution."""
        if self.prediction is None or self.photo is None:
            return []
        h, w = self.photo.rgb.shape[:2]
        return [
            [round(d.x / w, 5), round(d.y / h, 5), round(d.radius / w, 5), d.kind, round(d.score, 3)]
            for d in self.prediction.lesions
        ]

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON object for this photo (without the file name)."""
        out: dict[str, Any] = {"ok": self.ok}
        if not self.ok:
            out["reason"] = self.reason
            if self.detail:
                out["detail"] = self.detail
        p = self.prediction
        if p is not None and self.ok:
            out["acne"] = {
                "grade": p.grade,
                "lesions": len(p.lesions),
                "by_type": {kind: int(p.by_type.get(kind, 0)) for kind in LESION_TYPES},
                "grade_probabilities": [round(x, 3) for x in p.grade_probabilities],
            }
        out["referral"] = self.referral if self.ok else False
        out["quality"] = self.quality
        if p is not None:
            out["model"] = p.model_version
        out["elapsed_ms"] = round(self.elapsed_ms, 1)
        return out


def analyze(data: bytes, model: AcneModel, *, overlay: bool = True) -> Analysis:
    """Run every step on one photo's bytes. Never raises for a bad photo: it says why."""
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round((now - since) * 1000, 2)
        return now

    try:
        photo = load_photo(data)
    except PhotoRejected as exc:
        return Analysis(
            ok=False,
            reason=exc.code,
            quality={"ok": False, "reason": exc.code},
            elapsed_ms=(time.perf_counter() - started) * 1000,
            detail=dict(exc.detail),
        )
    t = lap("decode", started)
    quality: QualityReport = check_photo(photo.rgb)
    t = lap("checks", t)
    if not quality.ok:
        return Analysis(
            ok=False,
            reason=quality.reason,
            quality=quality.to_dict(),
            photo=photo,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            timings_ms=timings,
        )
    prediction = model.predict(photo.rgb)
    t = lap("inference", t)
    if not prediction.in_distribution:
        return Analysis(
            ok=False,
            reason=NOT_ASSESSABLE,
            quality={**quality.to_dict(), "ood_distance": round(prediction.ood_distance, 2)},
            photo=photo,
            prediction=prediction,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            timings_ms=timings,
        )
    picture = draw_overlay(photo.rgb, prediction.lesions) if overlay else None
    if overlay:
        lap("overlay", t)
    return Analysis(
        ok=True,
        reason=None,
        quality=quality.to_dict(),
        photo=photo,
        prediction=prediction,
        overlay=picture,
        elapsed_ms=(time.perf_counter() - started) * 1000,
        timings_ms=timings,
    )
