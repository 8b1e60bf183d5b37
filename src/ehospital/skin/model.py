"""The acne model at serving time: onnxruntime, numpy and PIL only (no torch).

The ONNX graph takes photos stretched to a square (float32 RGB 0–255, NCHW) and returns the lesion
density of each type at stride 8, the counts per type (sums of the maps) and the Mahalanobis
distance of the photo's pooled features from the training photos'. Everything else — grade
thresholds, the spread of the count used for grade probabilities, the OOD threshold — is read
from the JSON metadata beside the .onnx file.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
from PIL import Image

LESION_TYPES: tuple[str, ...] = ("comedone", "papule", "pustule", "nodule_cyst")
GRADE_NAMES: tuple[str, ...] = ("mild", "moderate", "severe", "very severe")
DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "acne-v1.onnx"


@dataclass(frozen=True)
class Lesion:
    """A located lesion, in pixels of the image passed to predict()."""

    x: float
    y: float
    radius: float
    kind: str
    score: float


@dataclass(frozen=True)
class AcnePrediction:
    """What the model says about one photo."""

    count: float
    by_type: dict[str, int]
    lesions: tuple[Lesion, ...]
    grade: int
    grade_probabilities: tuple[float, float, float, float]
    ood_distance: float
    in_distribution: bool
    model_version: str


def resize_for_model(rgb: np.ndarray, size: int) -> np.ndarray:
    """An H×W×3 uint8 photo stretched to size×size (bilinear), as in training."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB array, got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError("empty image")
    if rgb.shape[:2] == (size, size):
        return np.ascontiguousarray(rgb)
    resized = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def grade_from_count(count: float, thresholds: tuple[float, float, float]) -> int:
    """Hayashi grade: how many of the (calibrated) thresholds the count exceeds."""
    return sum(count > t for t in thresholds)


def grade_probabilities(
    count: float, thresholds: tuple[float, float, float], sd_intercept: float, sd_slope: float
) -> tuple[float, float, float, float]:
    """P(grade) if the true count were Normal(count, sd), sd = intercept + slope · count."""
    sd = max(1e-6, sd_intercept + sd_slope * max(count, 0.0))
    cdf = [0.0, *(_normal_cdf((t - count) / sd) for t in thresholds), 1.0]
    p = [max(0.0, cdf[i + 1] - cdf[i]) for i in range(4)]
    total = sum(p) or 1.0
    return (p[0] / total, p[1] / total, p[2] / total, p[3] / total)


def round_counts(per_type: np.ndarray, total: int) -> list[int]:
    """Integer counts per type summing to `total` (largest remainder)."""
    values = np.clip(np.asarray(per_type, dtype=np.float64), 0.0, None)
    if values.sum() > 0:
        values = values * (total / values.sum())
    floors = np.floor(values).astype(int)
    short = total - int(floors.sum())
    for i in np.argsort(-(values - floors), kind="stable")[: max(short, 0)]:
        floors[i] += 1
    return [int(v) for v in floors]


def _unit_blob(sigma: float) -> np.ndarray:
    r = max(1, math.ceil(2 * sigma))
    axis = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-(axis**2) / (2 * sigma**2))
    blob = np.outer(g, g)
    return np.asarray(blob / blob.sum())


def find_peaks(density: np.ndarray, n: int, sigma: float = 1.0) -> list[tuple[float, float, float]]:
    """`n` lesions of one density map (cells): (x, y, strength), strongest first.

    Greedy: take the highest cell, refine to the centroid of its 3×3 neighbourhood, remove one
    lesion's worth of density (a unit Gaussian) around it, repeat. A cluster holding the density
    of three lesions so yields three markers.
    """
    work = np.clip(np.asarray(density, dtype=np.float64), 0.0, None)
    h, w = work.shape
    blob = _unit_blob(sigma)
    r = blob.shape[0] // 2
    found: list[tuple[float, float, float]] = []
    for _ in range(n):
        i, j = np.unravel_index(int(np.argmax(work)), work.shape)
        i0, i1, j0, j1 = max(i - 1, 0), min(i + 2, h), max(j - 1, 0), min(j + 2, w)
        window = work[i0:i1, j0:j1]
        mass = float(window.sum())
        if mass > 0:
            ys, xs = np.mgrid[i0:i1, j0:j1]
            y = float((ys * window).sum() / mass)
            x = float((xs * window).sum() / mass)
        else:
            y, x = float(i), float(j)
        found.append((x + 0.5, y + 0.5, min(1.0, max(0.0, mass))))
        b0, b1, c0, c1 = max(i - r, 0), min(i + r + 1, h), max(j - r, 0), min(j + r + 1, w)
        work[b0:b1, c0:c1] -= blob[b0 - i + r : b1 - i + r, c0 - j + r : c1 - j + r]
        np.clip(work, 0.0, None, out=work)
    return found


class AcneModel:
    """The exported acne model with its metadata; `predict` is safe to call from several threads."""

    _cache: ClassVar[dict[Path, AcneModel]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = path
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"acne model {path} or its metadata {meta_path.name} is missing")
        self._meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        self.version: str = str(self._meta["version"])
        self.input_size: int = int(self._meta["input_size"])
        self.size_bytes: int = path.stat().st_size
        grade = self._meta["grade"]
        t1, t2, t3 = (float(t) for t in grade["thresholds"])
        self._thresholds = (t1, t2, t3)
        self._sd = (float(grade["sd_intercept"]), float(grade["sd_slope"]))
        self._ood_threshold = float(self._meta["ood"]["threshold"])
        self._radius_fraction = float(self._meta["lesion_radius_fraction"])
        self._peak_sigma = float(self._meta.get("peak_sigma_cells", 1.0))
        if tuple(self._meta["lesion_types"]) != LESION_TYPES:
            raise ValueError(f"{meta_path}: lesion types {self._meta['lesion_types']} are not {LESION_TYPES}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("EHOSPITAL_SKIN_THREADS", "2"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def load(cls, path: Path | None = None) -> AcneModel:
        """The model at `path` (default: the packaged one), loaded once per path."""
        key = (path or DEFAULT_MODEL).resolve()
        with cls._cache_lock:
            model = cls._cache.get(key)
            if model is None:
                model = cls._cache[key] = cls(key)
            return model

    @property
    def metadata(self) -> dict[str, object]:
        """The model's JSON metadata (training data, thresholds, metrics, licences)."""
        return json.loads(json.dumps(self._meta))  # type: ignore[no-any-return]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw outputs for N×S×S×3 uint8 photos already at the input size: density, counts, OOD distance."""
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        density, counts, ood = self._session.run(["density", "counts", "ood_distance"], {"image": x})
        return np.asarray(density), np.asarray(counts), np.asarray(ood)

    def predict(self, rgb: np.ndarray) -> AcnePrediction:
        """Count, locate and grade the acne lesions of one H×W×3 uint8 RGB photo (any size)."""
        height, width = rgb.shape[:2]
        density, counts, ood = self.run(resize_for_model(rgb, self.input_size)[None])
        return self.interpret(density[0], counts[0], float(ood[0]), width, height)

    def interpret(
        self, density: np.ndarray, counts: np.ndarray, ood: float, width: int, height: int
    ) -> AcnePrediction:
        """The prediction for one photo of width×height from the graph's outputs."""
        total = max(0.0, float(density.sum()))  # the map may dip slightly below zero off the lesions
        rounded = round(total)
        by_type = round_counts(counts, rounded)
        sx = width / density.shape[2]
        sy = height / density.shape[1]
        radius = self._radius_fraction * (width + height) / 2
        lesions: list[Lesion] = []
        for t, kind in enumerate(LESION_TYPES):
            for x, y, score in find_peaks(density[t], by_type[t], self._peak_sigma):
                lesions.append(Lesion(x=x * sx, y=y * sy, radius=radius, kind=kind, score=score))
        lesions.sort(key=lambda lesion: -lesion.score)
        grade = grade_from_count(total, self._thresholds)
        return AcnePrediction(
            count=total,
            by_type=dict(zip(LESION_TYPES, by_type, strict=True)),
            lesions=tuple(lesions),
            grade=grade,
            grade_probabilities=grade_probabilities(total, self._thresholds, *self._sd),
            ood_distance=ood,
            in_distribution=bool(ood <= self._ood_threshold),
            model_version=self.version,
        )
